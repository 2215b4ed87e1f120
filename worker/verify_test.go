package worker_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
)

func TestVerifyBackup(t *testing.T) {
	t.Parallel()
	snap := fakes.NewSnapshotter()
	tags := map[string]string{messages.TagManaged: "true", messages.TagCluster: "c1", messages.TagJob: "c1-0123456789ab"}
	snap.Put(worker.Snapshot{ID: "snap-1", VolumeID: "vol-1", State: worker.StateCompleted, Tags: tags})
	snap.Put(worker.Snapshot{ID: "snap-2", VolumeID: "vol-2", State: worker.StatePending, Tags: tags})
	untagged := map[string]string{messages.TagJob: "c1-0123456789ab", messages.TagCluster: "c1"}
	snap.Put(worker.Snapshot{ID: "snap-3", VolumeID: "vol-3", State: worker.StateCompleted, Tags: untagged})
	b := messages.Backup{JobID: "c1-0123456789ab", Cluster: "c1", Snapshots: []messages.SnapshotRef{
		{SnapshotID: "snap-1", VolumeID: "vol-1"}, {SnapshotID: "snap-2", VolumeID: "vol-2"},
		{SnapshotID: "snap-3", VolumeID: "vol-3"}, {SnapshotID: "snap-4", VolumeID: "vol-4"},
	}}
	checks, err := worker.VerifyBackup(t.Context(), snap, b)
	require.NoError(t, err)
	require.Len(t, checks, 4)
	require.Empty(t, checks[0].Problems)
	require.Equal(t, []string{"state pending, not completed "}, checks[1].Problems)
	require.Equal(t, []string{`tag quiesce:managed is "", want "true"`}, checks[2].Problems)
	require.Len(t, checks[3].Problems, 1)
	require.Contains(t, checks[3].Problems[0], "missing")
}
