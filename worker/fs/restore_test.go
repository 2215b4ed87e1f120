package fs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

// A volume restored into a directory holds what the volume held at the
// snapshot, later changes to the volume not included; a second run finds it
// and copies nothing.
func TestRestoreVolumeIntoDirectory(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	vol := b.volume(t, "v1")
	snaps, err := b.driver.Create(t.Context(), req("c1-000000000001.snapshot.v1", vol))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(vol.Path, "ks", "t-1", "Data.db"), []byte("after the snapshot"), 0o644))

	dst := filepath.Join(b.base, "node", ".quiesce-restore", "r1", "vol-v1")
	vr := messages.VolumeRestore{SnapshotID: snaps[0].ID, SourceVolume: vol.ID, Path: dst}
	rep, err := b.driver.RestoreVolume(t.Context(), "t1", vr)
	require.NoError(t, err)
	require.False(t, rep.Again)
	require.Equal(t, dst, rep.Path)
	data, err := os.ReadFile(filepath.Join(dst, "ks", "t-1", "Data.db"))
	require.NoError(t, err)
	require.Equal(t, "rows of v1", string(data))
	require.NoDirExists(t, dst+partialSuffix)

	copies := b.driver.Copies()
	rep, err = b.driver.RestoreVolume(t.Context(), "t1", vr)
	require.NoError(t, err)
	require.True(t, rep.Again)
	require.Equal(t, copies, b.driver.Copies())
}

// A copy a crash interrupted is never taken for the restored volume: it is
// removed and made again.
func TestRestoreVolumeAfterInterruptedCopy(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	vol := b.volume(t, "v1")
	snaps, err := b.driver.Create(t.Context(), req("c1-000000000001.snapshot.v1", vol))
	require.NoError(t, err)
	dst := filepath.Join(b.base, "restore", "vol-v1")
	require.NoError(t, os.MkdirAll(filepath.Join(dst+partialSuffix, "ks"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dst+partialSuffix, "ks", "half"), []byte("x"), 0o644))
	rep, err := b.driver.RestoreVolume(t.Context(), "t1", messages.VolumeRestore{SnapshotID: snaps[0].ID, Path: dst})
	require.NoError(t, err)
	require.False(t, rep.Again)
	require.NoFileExists(t, filepath.Join(dst, "ks", "half"))
	require.FileExists(t, filepath.Join(dst, "top.txt"))
}

func TestRestoreVolumeRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	_, err := b.driver.RestoreVolume(t.Context(), "t1", messages.VolumeRestore{SnapshotID: "snap-00000000000000000", Path: "relative/dir"})
	require.True(t, errclass.IsPermanent(err))
	_, err = b.driver.RestoreVolume(t.Context(), "t1", messages.VolumeRestore{SnapshotID: "snap-0000000000000000a", Path: filepath.Join(b.base, "x")})
	require.True(t, errclass.IsPermanent(err), "%v", err)
	require.Contains(t, err.Error(), "gone from the store")
	require.NoDirExists(t, filepath.Join(b.base, "x"))
}

// Executions of one task side by side make one whole copy.
func TestRestoreVolumeConcurrentExecutions(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	vol := b.volume(t, "v1")
	snaps, err := b.driver.Create(t.Context(), req("c1-000000000001.snapshot.v1", vol))
	require.NoError(t, err)
	dst := filepath.Join(b.base, "restore", "vol-v1")
	errs := make(chan error, 4)
	again := make(chan bool, 4)
	for range 4 {
		go func() {
			rep, err := b.driver.RestoreVolume(t.Context(), "t1", messages.VolumeRestore{SnapshotID: snaps[0].ID, Path: dst})
			errs <- err
			again <- rep.Again
		}()
	}
	fresh := 0
	for range 4 {
		require.NoError(t, <-errs)
		if !<-again {
			fresh++
		}
	}
	require.Equal(t, 1, fresh, "one execution copied, the others found its copy")
	data, err := os.ReadFile(filepath.Join(dst, "ks", "t-1", "Data.db"))
	require.NoError(t, err)
	require.Equal(t, "rows of v1", string(data))
}
