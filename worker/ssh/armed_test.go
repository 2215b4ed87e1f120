package ssh_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// An armed command runs only once fired: its session and shell are started
// and hold it until then, and it then reads its input as any command does.
func TestArmedCommandRunsWhenFired(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{})
	mark := filepath.Join(t.TempDir(), "ran")
	ready, fire := make(chan struct{}), make(chan struct{})
	type result struct {
		out nodetool.Output
		err error
	}
	got := make(chan result, 1)
	go func() {
		out, err := e.RunArmed(testCtx(t), b.node, nodetool.Command{Argv: []string{"sh", "-c", `touch "$1"; echo fired`, "sh", mark}},
			func() { close(ready) }, fire)
		got <- result{out, err}
	}()
	<-ready
	require.EqualValues(t, 1, b.srv.Sessions(), "the session is open")
	require.NoFileExists(t, mark, "nothing ran before the fire")
	close(fire)
	r := <-got
	require.NoError(t, r.err)
	require.Equal(t, "fired\n", string(r.out.Stdout))
	require.FileExists(t, mark)
}

// An armed command withdrawn before its fire never runs.
func TestArmedCommandWithdrawnNeverRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{})
	mark := filepath.Join(t.TempDir(), "ran")
	ctx, cancel := context.WithCancel(testCtx(t))
	ready := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		_, err := e.RunArmed(ctx, b.node, nodetool.Command{Argv: []string{"touch", mark}}, func() { close(ready) }, make(chan struct{}))
		got <- err
	}()
	<-ready
	cancel()
	err := <-got
	require.Error(t, err)
	require.Equal(t, ssh.CodeCancelled, errclass.Code(err))
	_, statErr := os.Stat(mark)
	require.ErrorIs(t, statErr, os.ErrNotExist, "the command never ran")
	// The connection is still there for the next command.
	_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)
	require.EqualValues(t, 1, b.srv.Handshakes())
}
