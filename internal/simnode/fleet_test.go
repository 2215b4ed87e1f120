package simnode

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, cancel
}

func TestFleet(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	a, err := Create(filepath.Join(base, "a"), Options{Name: "node-a"})
	require.NoError(t, err)
	b, err := Create(filepath.Join(base, "b"), Options{Name: "node-b"})
	require.NoError(t, err)
	f := NewFleet(a, b)
	require.Equal(t, []string{"node-a", "node-b"}, f.Names())
	ctx := t.Context()
	na := messages.Node{Name: "node-a"}

	writeRows(t, a, "app", "users", 0, 4)
	require.NoError(t, f.Snapshot(ctx, na, "j1", nil))
	err = f.Snapshot(ctx, na, "j1", nil)
	require.ErrorIs(t, err, worker.ErrSnapshotExists, "an existing tag is refused, as nodetool refuses it")
	require.True(t, errclass.IsPermanent(err))
	require.True(t, errclass.IsNotRun(f.Snapshot(ctx, na, "j9", []string{"nope"})), "an unknown keyspace changes nothing")
	rows, err := SnapshotRows(a.DataDirs()[0], "j1")
	require.NoError(t, err)
	require.Len(t, rows, 4)
	require.NoError(t, f.ClearSnapshot(ctx, na, "j1"))
	require.NoError(t, f.ClearSnapshot(ctx, na, "j1"))

	err = f.Snapshot(ctx, messages.Node{Name: "ghost"}, "j1", nil)
	require.True(t, errclass.IsPermanent(err))
	require.True(t, errclass.IsPermanent(f.Snapshot(ctx, na, "bad tag", nil)))
	require.True(t, errclass.IsPermanent(f.ClearSnapshot(ctx, na, "")))

	require.NoError(t, SetFaults(b.Root(), Faults{SnapshotError: "Unable to flush", SnapshotFailTimes: 1}))
	nb := messages.Node{Name: "node-b"}
	err = f.Snapshot(ctx, nb, "j2", nil)
	require.True(t, errclass.IsPermanent(err))
	require.Equal(t, "error: Unable to flush\n", errclass.Stderr(err))
	require.Equal(t, "exit", errclass.Code(err))
	require.ErrorContains(t, err, "nodetool snapshot on node-b: Unable to flush")
	require.NoError(t, f.Snapshot(ctx, nb, "j2", nil))

	require.NoError(t, SetFaults(b.Root(), Faults{ClearDelay: Duration(time.Hour)}))
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err = f.ClearSnapshot(cctx, nb, "j2")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, errclass.IsPermanent(err), "a stopped call is not nodetool's verdict")
}

func TestWriterProvesSnapshot(t *testing.T) {
	t.Parallel()
	n := newNode(t, Options{})
	w := &Writer{Node: n, Interval: time.Millisecond, Record: true}
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	require.Eventually(t, func() bool { return w.Count() >= 20 }, 10*time.Second, time.Millisecond)
	require.NoError(t, n.Snapshot("proof", nil))
	require.Eventually(t, func() bool { return w.Count() >= 40 }, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	events, err := Events(n.Root())
	require.NoError(t, err)
	require.Len(t, events, 1)
	before := w.AckedBefore(events[0].Time)
	require.GreaterOrEqual(t, len(before), 20)
	got, err := SnapshotRows(n.DataDirs()[0], "proof")
	require.NoError(t, err)
	require.Subset(t, got, before)
	require.Less(t, len(got), int(w.Count()), "rows after the snapshot are not in it")
	for _, r := range got {
		require.Regexp(t, `^node1\|app\.(events|users)\|\d+$`, r)
	}
}
