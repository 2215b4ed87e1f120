package cassandra

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ServiceScripts are the paths of shell scripts that start, stop and find
// running a node's JVM outside the test process, as a service manager
// would: what a quiesce cluster's cassandra_service runs through its
// executor. A node run by them is not the harness's (Running, Start, Stop
// and Cluster.WaitUN do not see it); its nodetool, directories and logs are
// the same.
type ServiceScripts struct {
	// Start launches the JVM detached, its pid in run/cassandra.pid, and
	// returns at once; it does nothing when the JVM runs. With
	// QUIESCE_INITIAL_TOKEN in its environment the node starts with
	// -Dcassandra.initial_token set to it.
	Start string
	// Stop sends SIGTERM and waits up to 60 s for the JVM to exit, then
	// sends SIGKILL.
	Stop string
	// IsRunning exits 0 when the JVM runs, 1 when not.
	IsRunning string
}

// WriteServiceScripts writes the node's service scripts into its bin
// directory. A JVM they started still running when the test ends is killed.
func (n *Node) WriteServiceScripts(t testing.TB) ServiceScripts {
	t.Helper()
	if err := n.writeConfig(); err != nil {
		t.Fatalf("cassandra: node %s: %v", n.addr, err)
	}
	bin := filepath.Join(n.dir, "bin")
	pidFile := filepath.Join(n.dir, "run", "cassandra.pid")
	s := ServiceScripts{Start: filepath.Join(bin, "cassandra-start"), Stop: filepath.Join(bin, "cassandra-stop"),
		IsRunning: filepath.Join(bin, "cassandra-running")}
	var argv strings.Builder
	argv.WriteString(shellQuote(n.c.java))
	argv.WriteString(` ${QUIESCE_INITIAL_TOKEN:+"-Dcassandra.initial_token=$QUIESCE_INITIAL_TOKEN"}`)
	for _, w := range n.serverArgv() {
		argv.WriteString(" " + shellQuote(w))
	}
	head := fmt.Sprintf("#!/bin/sh\n# Cassandra node %s, written by the quiesce test harness.\nset -eu\npid=%s\n", n.addr, shellQuote(pidFile))
	running := `[ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null`
	scripts := map[string]string{
		s.IsRunning: head + running + "\n",
		s.Start: head + "if " + running + "; then exit 0; fi\n" +
			fmt.Sprintf("mkdir -p %s\ncd %s\n", shellQuote(filepath.Dir(pidFile)), shellQuote(n.dir)) +
			"setsid " + argv.String() + " >>" + shellQuote(filepath.Join(n.LogDir(), "console.log")) + " 2>&1 </dev/null &\n" +
			"echo $! > \"$pid\"\n",
		s.Stop: head + "if ! " + running + "; then exit 0; fi\np=$(cat \"$pid\")\nkill -TERM \"$p\"\n" +
			"i=0\nwhile kill -0 \"$p\" 2>/dev/null; do\n\ti=$((i + 1))\n\tif [ $i -gt 600 ]; then kill -KILL \"$p\"; fi\n\tsleep 0.1\ndone\n",
	}
	for path, body := range scripts {
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatalf("cassandra: node %s: %v", n.addr, err)
		}
	}
	t.Cleanup(func() {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			return
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			n.c.logf("cassandra: node %s (service scripts) killed", n.addr)
		}
	})
	return s
}
