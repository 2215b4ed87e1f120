package fs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// The fs driver describes a volume as a directory and what its snapshot
// copied.
func TestDescribeVolumes(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	va, vb := b.volume(t, "a"), b.volume(t, "b")
	snaps, err := b.driver.Create(t.Context(), req("job.snapshot.node-1", va, vb))
	require.NoError(t, err)
	vols, err := b.driver.DescribeVolumes(t.Context(), snaps)
	require.NoError(t, err)
	require.Len(t, vols, 2)
	require.Equal(t, "vol-a", vols[0].VolumeID)
	require.Equal(t, "node-1", vols[0].Node)
	require.Equal(t, va.Path, vols[0].MountPoint)
	require.Positive(t, vols[0].SizeBytes)
	require.Equal(t, messages.VolumeFacts{VolumeID: "vol-b", Node: "node-1", MountPoint: vb.Path, SizeBytes: vols[1].SizeBytes}, vols[1])

	snaps[0].ID = "../etc"
	_, err = b.driver.DescribeVolumes(t.Context(), snaps)
	require.Error(t, err)
}
