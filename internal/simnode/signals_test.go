package simnode

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// busyNodeEnv makes the test binary a process that works under a node's
// lock for a while, as a nodetool snapshot does.
const busyNodeEnv = "SIMNODE_TEST_BUSY_NODE"

// busyNode prints "ready", waits for a line on stdin, takes the node's
// lock, prints "locked", works for 300 ms and writes root/done, then lets
// the lock go.
func busyNode(root string) int {
	FinishWorkOnSignals()
	n, err := Open(root)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	unlock, err := n.lock(nil)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("locked")
	time.Sleep(300 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(root, "done"), nil, 0o644); err != nil {
		return 1
	}
	unlock()
	return 0
}

// A nodetool process asked to stop while it works on the node finishes
// that work first, as Cassandra does when its client goes away; asked
// before it started, it stops at once.
func TestFinishWorkOnSignals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		locked   bool
		wantDone bool
	}{
		{name: "stopped while working", locked: true, wantDone: true},
		{name: "stopped before", locked: false, wantDone: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "n1")
			_, err := Create(root, Options{})
			require.NoError(t, err)
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), busyNodeEnv+"="+root)
			stdin, err := cmd.StdinPipe()
			require.NoError(t, err)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			out := bufio.NewReader(stdout)
			line, err := out.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "ready\n", line)
			if tc.locked {
				_, err = stdin.Write([]byte("go\n"))
				require.NoError(t, err)
				line, err = out.ReadString('\n')
				require.NoError(t, err)
				require.Equal(t, "locked\n", line)
			}
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			err = cmd.Wait()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "exit: %v", err)
			require.Equal(t, 128+int(syscall.SIGTERM), ee.ExitCode())
			_, err = os.Stat(filepath.Join(root, "done"))
			require.Equal(t, tc.wantDone, err == nil, "work finished: %v", err)
		})
	}
}
