package proc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProcessStopsContinuesKillsAndRestarts(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "p.log")
	// Prints a line every 20 ms: the log grows only while it runs.
	p := Start(t, Spec{Name: "ticker", Argv: []string{"/bin/sh", "-c", "while :; do echo tick; sleep 0.02; done"}, Log: log})
	size := func() int64 {
		st, err := os.Stat(log)
		require.NoError(t, err)
		return st.Size()
	}
	require.Eventually(t, func() bool { return strings.Contains(p.Tail(100), "tick") }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, p.Stop())
	require.True(t, p.Stopped())
	time.Sleep(200 * time.Millisecond) // a tick in flight lands
	frozen := size()
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, frozen, size(), "a stopped process writes nothing")
	require.NoError(t, p.Cont())
	require.Eventually(t, func() bool { return size() > frozen }, 10*time.Second, 10*time.Millisecond)

	p.Kill()
	require.False(t, p.Running())
	require.ErrorIs(t, p.Stop(), ErrNotRunning)
	require.NoError(t, p.Restart())
	require.True(t, p.Running())
	require.Equal(t, 2, p.Starts())
	require.Contains(t, p.Tail(1<<20), "==== ticker start 2")
}

func TestRestartOnFailure(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "second")
	// Fails on its first run, then stays up.
	script := "if [ -e " + marker + " ]; then exec sleep 60; fi; touch " + marker + "; exit 3"
	p := Start(t, Spec{Name: "flaky", Argv: []string{"/bin/sh", "-c", script}, Log: filepath.Join(dir, "flaky.log"),
		RestartOnFailure: 50 * time.Millisecond})
	require.Eventually(t, func() bool { return p.Starts() == 2 && p.Running() }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, p.Failures())
	p.Kill()
	time.Sleep(200 * time.Millisecond)
	require.False(t, p.Running(), "a killed process is not restarted")
	require.Equal(t, 2, p.Starts())
}
