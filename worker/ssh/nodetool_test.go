package ssh_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/simnode"
	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// simNode creates a simulated node; the test binary is its nodetool (see
// TestMain), found through the environment the client sets.
func simNode(t *testing.T) (*simnode.Node, []string, map[string]string) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	node, err := simnode.Create(t.TempDir(), simnode.Options{Keyspaces: map[string][]string{"shop": {"orders", "customers"}}})
	require.NoError(t, err)
	return node, []string{exe}, map[string]string{simnode.RootEnv: node.Root()}
}

func nodetoolClient(t *testing.T, r nodetool.Runner) (*nodetool.Client, *simnode.Node) {
	t.Helper()
	node, base, env := simNode(t)
	return nodetool.New(r, nodetool.Settings{Base: base, Env: env}), node
}

func TestNodetoolOverSSH(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{})
	c, sim := nodetoolClient(t, e)
	ctx := testCtx(t)

	v, err := c.Version(ctx, b.node)
	require.NoError(t, err)
	require.Equal(t, sim.Info().Version, v)

	require.NoError(t, c.Snapshot(ctx, b.node, "quiesce-job-1", []string{"shop"}))
	simTags, err := sim.Tags()
	require.NoError(t, err)
	require.Equal(t, []string{"quiesce-job-1"}, simTags)
	// The tag is there now: nodetool refuses it again, and says so; whose
	// it is, the flush task knows.
	require.ErrorIs(t, c.Snapshot(ctx, b.node, "quiesce-job-1", nil), worker.ErrSnapshotExists)
	tags, err := c.Tags(ctx, b.node)
	require.NoError(t, err)
	require.Equal(t, []string{"quiesce-job-1"}, tags)

	status, err := c.Status(ctx, b.node, "")
	require.NoError(t, err)
	require.Len(t, status, 1)
	require.True(t, status[0].UpNormal())
	info, err := c.Info(ctx, b.node, false)
	require.NoError(t, err)
	require.Equal(t, sim.Info().DC, info.Datacenter)
	require.Equal(t, sim.Info().HostID, info.HostID)
	require.Equal(t, info.HostID, status[0].HostID)

	require.NoError(t, c.ClearSnapshot(ctx, b.node, "quiesce-job-1"))
	simTags, err = sim.Tags()
	require.NoError(t, err)
	require.Empty(t, simTags)

	// Bad values never reach the node.
	require.True(t, errclass.IsPermanent(c.Snapshot(ctx, b.node, "bad tag; rm -rf /", nil)))
	require.True(t, errclass.IsPermanent(c.Snapshot(ctx, b.node, "ok", []string{"$(id)"})))

	// A nodetool error is permanent and carries nodetool's words.
	_, err = c.Runner.Run(ctx, b.node, nodetool.Command{Argv: append(c.Base, "bogus"), Env: c.Env})
	require.Error(t, err)
	require.Contains(t, err.Error(), "Found unexpected parameters")
	require.True(t, errclass.IsPermanent(c.ClearSnapshot(ctx, b.node, "bad tag")))
}

// cancelSnapshot starts a snapshot that the node holds for a minute, cancels
// it once nodetool runs, and checks that no nodetool is left on the node.
func cancelSnapshot(t *testing.T, r nodetool.Runner, node messages.Node) {
	t.Helper()
	c, sim := nodetoolClient(t, r)
	require.NoError(t, simnode.SetFaults(sim.Root(), simnode.Faults{SnapshotDelay: simnode.Duration(time.Minute)}))
	tag := fmt.Sprintf("quiesce-cancel-%d", time.Now().UnixNano())
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Snapshot(ctx, node, tag, nil) }()
	require.Eventually(t, func() bool { return running(t, tag) }, 10*time.Second, 20*time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		require.Equal(t, ssh.CodeCancelled, errclass.Code(err))
		require.False(t, errclass.IsPermanent(err))
	case <-time.After(20 * time.Second):
		t.Fatal("Snapshot did not return after cancellation")
	}
	require.Eventually(t, func() bool { return !running(t, tag) }, 10*time.Second, 20*time.Millisecond,
		"nodetool snapshot -t %s outlived its cancelled task", tag)
	tags, err := sim.Tags()
	require.NoError(t, err)
	require.Empty(t, tags)
}

func TestNodetoolCancelledSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	cancelSnapshot(t, b.executor(t, ssh.Options{}), b.node)
}

func TestNodetoolSnapshotFailureIsPermanent(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	c, sim := nodetoolClient(t, b.executor(t, ssh.Options{}))
	require.NoError(t, simnode.SetFaults(sim.Root(), simnode.Faults{SnapshotError: "Insufficient disk space to flush"}))
	err := c.Snapshot(testCtx(t), b.node, "quiesce-fail", nil)
	require.Error(t, err)
	require.True(t, errclass.IsPermanent(err))
	require.Equal(t, "exit", errclass.Code(err))
	require.Contains(t, errclass.Stderr(err), "Insufficient disk space")
}
