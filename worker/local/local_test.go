package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/nodetool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var node = messages.Node{Name: "n1"}

func TestRunCapturesOutputAndExitCode(t *testing.T) {
	t.Parallel()
	r := &local.Runner{}
	out, err := r.Run(context.Background(), node, nodetool.Command{Argv: []string{"sh", "-c", "echo out; echo err >&2"}})
	require.NoError(t, err)
	require.Equal(t, "out\n", string(out.Stdout))
	require.Equal(t, "err\n", string(out.Stderr))

	_, err = r.Run(context.Background(), node, nodetool.Command{Argv: []string{"sh", "-c", "echo 'error: Keyspace x does not exist' >&2; exit 1"}})
	var ee *nodetool.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.ExitCode)
	require.Contains(t, err.Error(), "Keyspace x does not exist")
	require.Contains(t, errclass.Stderr(err), "Keyspace x")
}

func TestRunPassesEnvAndNoShell(t *testing.T) {
	t.Parallel()
	r := &local.Runner{}
	// An argument full of shell syntax reaches the program as one word.
	out, err := r.Run(context.Background(), node, nodetool.Command{
		Argv: []string{"printf", "%s|%s", "$(id); rm -rf /", "$QUIESCE_X"},
		Env:  map[string]string{"QUIESCE_X": "y"},
	})
	require.NoError(t, err)
	require.Equal(t, "$(id); rm -rf /|$QUIESCE_X", string(out.Stdout))
}

func TestMissingProgramIsPermanent(t *testing.T) {
	t.Parallel()
	_, err := (&local.Runner{}).Run(context.Background(), node, nodetool.Command{Argv: []string{"/nonexistent/nodetool"}})
	require.Error(t, err)
	require.True(t, errclass.IsPermanent(err))
	require.True(t, errclass.IsNotRun(err), "nothing ran on the node")
}

func TestCancelKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("pgrep"); err != nil {
		t.Skip("pgrep not found: apt-get install procps")
	}
	marker := fmt.Sprintf("quiesce-local-cancel-%d-%d", os.Getpid(), time.Now().UnixNano())
	script := filepath.Join(t.TempDir(), "s.sh")
	// A child that ignores SIGTERM: only the group kill after WaitDelay ends it.
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nsh -c 'trap \"\" TERM; sleep 60' "+marker+" &\nsleep 60\n"), 0o755))
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &local.Runner{WaitDelay: 200 * time.Millisecond}
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, node, nodetool.Command{Argv: []string{"/bin/sh", script}})
		done <- err
	}()
	require.Eventually(t, func() bool { return exec.Command("pgrep", "-f", marker).Run() == nil }, 5*time.Second, 10*time.Millisecond)
	stop := errors.New("task cancelled")
	cancel(stop)
	select {
	case err := <-done:
		require.ErrorIs(t, err, stop)
	case <-time.After(20 * time.Second):
		// A child left alive keeps the output pipe open and Run waiting.
		_ = exec.Command("pkill", "-f", marker).Run()
		t.Fatal("Run did not return after cancellation: a process of the command outlived it")
	}
	require.Eventually(t, func() bool { return exec.Command("pgrep", "-f", marker).Run() != nil }, 5*time.Second, 20*time.Millisecond,
		"no process of the command outlives its cancellation")
}

func TestOutputIsBounded(t *testing.T) {
	t.Parallel()
	out, err := (&local.Runner{}).Run(context.Background(), node, nodetool.Command{Argv: []string{"head", "-c", "3000000", "/dev/zero"}})
	require.NoError(t, err)
	require.Equal(t, local.MaxOutput, len(out.Stdout))
}

// A held command starts only when fired: until then its shell waits, and
// nothing of the command has run; firing costs one write.
func TestRunArmedHoldsTheCommandUntilFired(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	r := &local.Runner{}
	ready, fire := make(chan struct{}), make(chan struct{})
	type result struct {
		out nodetool.Output
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := r.RunArmed(context.Background(), node, nodetool.Command{Argv: []string{"sh", "-c", `touch "$1"; echo started; exit 3`, "sh", marker}},
			func() { close(ready) }, fire)
		done <- result{out, err}
	}()
	<-ready
	time.Sleep(100 * time.Millisecond)
	require.NoFileExists(t, marker, "nothing runs before the fire")
	close(fire)
	res := <-done
	require.FileExists(t, marker)
	require.Equal(t, "started\n", string(res.out.Stdout))
	var ee *nodetool.ExitError
	require.ErrorAs(t, res.err, &ee, "the command's own exit status, as Run reports it")
	require.Equal(t, 3, ee.ExitCode)
}

// A held command whose context ends before the fire is withdrawn: its shell
// exits and the command never runs.
func TestRunArmedWithdrawnNeverRuns(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	r := &local.Runner{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := r.RunArmed(ctx, node, nodetool.Command{Argv: []string{"touch", marker}}, func() { close(ready) }, make(chan struct{}))
		done <- err
	}()
	<-ready
	cancel()
	select {
	case err := <-done:
		require.ErrorContains(t, err, "withdrawn before it started")
	case <-time.After(10 * time.Second):
		t.Fatal("the withdrawn command's shell did not exit")
	}
	time.Sleep(100 * time.Millisecond)
	require.NoFileExists(t, marker)
}

// A program that cannot be started is refused when the command is armed, as
// Run refuses it: nothing was done, and trying again will not help.
func TestRunArmedMissingProgramIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	r := &local.Runner{}
	missing := filepath.Join(t.TempDir(), "no-such-nodetool")
	_, err := r.RunArmed(context.Background(), node, nodetool.Command{Argv: []string{missing, "snapshot"}},
		func() { t.Error("a command that cannot start is never ready") }, make(chan struct{}))
	require.ErrorContains(t, err, "no-such-nodetool: no such file or directory")
	require.True(t, errclass.IsNotRun(err))
	require.True(t, errclass.IsPermanent(err))
}
