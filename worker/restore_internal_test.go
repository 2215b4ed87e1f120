package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// attachingSnapshotter is a snapshotter whose restored volumes are attached
// to nodes: it says where each is and records what was released.
type attachingSnapshotter struct {
	Snapshotter
	devices  map[string][]string // by restore-volume task ID
	released []string
}

func (s *attachingSnapshotter) AttachedVolume(_ context.Context, taskID, region string) (string, []string, error) {
	d, ok := s.devices[taskID]
	if !ok {
		return "", nil, fmt.Errorf("no volume made by %s: %w", taskID, ErrVolumeGone)
	}
	return "vol-new", d, nil
}

func (s *attachingSnapshotter) ReleaseVolume(_ context.Context, taskID, _ string) error {
	s.released = append(s.released, taskID)
	return nil
}

type snapshotterOnly struct{ s Snapshotter }

func (d snapshotterOnly) NodeTool(string) (NodeTool, error)       { return nil, errors.New("none") }
func (d snapshotterOnly) Snapshotter(string) (Snapshotter, error) { return d.s, nil }

// preparingRestorer records the spec its Prepare was given.
type preparingRestorer struct {
	NodeRestorer
	got  messages.NodeRestore
	fail error
}

func (r *preparingRestorer) Prepare(_ context.Context, _ messages.Node, spec messages.NodeRestore) (messages.RestoreReport, error) {
	r.got = spec
	return messages.RestoreReport{Step: messages.StepPrepared}, r.fail
}

// A node's prepare is told where the volumes restored for it are, and the
// volumes are released only once the node's files are in place.
func TestPrepareFindsAttachedVolumesAndReleasesThemAfter(t *testing.T) {
	t.Parallel()
	const rid = "c1-r0123456789ab"
	task := messages.TaskID(rid, messages.KindRestoreVolume, "snap-1")
	snap := &attachingSnapshotter{devices: map[string][]string{task: {"/dev/disk/by-id/nvme-x", "/dev/sdr"}}}
	w := &Worker{drivers: snapshotterOnly{snap}}
	spec := messages.NodeRestore{RestoreID: rid, Sources: []messages.RestoreSource{
		{DataDir: "/var/lib/cassandra/data", From: "/var/lib/.quiesce-restore/x/data", Mount: "/var/lib/.quiesce-restore/x", Snapshot: "snap-1"}}}
	node := messages.Node{Name: "n1"}
	tk := messages.Task{ID: messages.TaskID(rid, messages.KindRestorePrepare, "n1"), JobID: rid, Kind: messages.KindRestorePrepare,
		Cluster: "c1", Node: &node, Restore: &messages.RestoreTask{Node: &spec}}

	nr := &preparingRestorer{fail: errors.New("disk full")}
	_, err := w.prepare(t.Context(), tk, nr)
	require.ErrorContains(t, err, "disk full")
	require.Equal(t, []string{"/dev/disk/by-id/nvme-x", "/dev/sdr"}, nr.got.Sources[0].Devices)
	require.Empty(t, snap.released, "a node not prepared keeps its volume")
	require.Empty(t, spec.Sources[0].Devices, "the task's own spec is left as it was")

	nr.fail = nil
	_, err = w.prepare(t.Context(), tk, nr)
	require.NoError(t, err)
	require.Equal(t, []string{task}, snap.released)

	// The attempt that released the volume died before its result: the
	// next finds the volume gone and leaves it to the node's progress.
	delete(snap.devices, task)
	_, err = w.prepare(t.Context(), tk, nr)
	require.NoError(t, err)
	require.Empty(t, nr.got.Sources[0].Devices)

	// A snapshotter that attaches nothing cannot serve such a source.
	w = &Worker{drivers: snapshotterOnly{snap.Snapshotter}}
	_, err = w.prepare(t.Context(), tk, nr)
	require.ErrorContains(t, err, "attaches no volumes")
}
