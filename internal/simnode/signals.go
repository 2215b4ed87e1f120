package simnode

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// FinishWorkOnSignals makes this process finish what a simulated node is in
// the middle of (a snapshot, a clear, a flush: any work under the node's
// lock) before a SIGTERM, SIGHUP or SIGINT ends it, and carry on when its
// output goes away (SIGPIPE). That is how Cassandra behaves: nodetool is a
// JMX client, the work runs in the server, and a client killed because its
// SSH session dropped does not leave half a snapshot behind. The simulated
// node's nodetool is client and node in one process, so a process that
// serves as nodetool calls this first. SIGKILL still stops it part-way, as a
// crash of the node would.
//
// It changes how the whole process handles those signals: only a process
// entry point calls it, never a library or a test binary running tests.
func FinishWorkOnSignals() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	go func() {
		for sig := range ch {
			s, ok := sig.(syscall.Signal)
			if !ok || s == syscall.SIGPIPE {
				continue // the output is lost; the work goes on
			}
			guard.mu.Lock()
			if guard.busy == 0 {
				os.Exit(128 + int(s))
			}
			guard.pending = s
			guard.mu.Unlock()
		}
	}()
}

// guard counts the work under way under a node's lock, and holds back a
// stop signal until it is done.
var guard struct {
	mu      sync.Mutex
	busy    int
	pending syscall.Signal
}

func workBegins() {
	guard.mu.Lock()
	defer guard.mu.Unlock()
	guard.busy++
}

// workEnds exits, once no work is under way, for a stop signal held back.
func workEnds() {
	guard.mu.Lock()
	defer guard.mu.Unlock()
	guard.busy--
	if guard.busy == 0 && guard.pending != 0 {
		os.Exit(128 + int(guard.pending))
	}
}
