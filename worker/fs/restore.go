package fs

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

var _ worker.VolumeRestorer = (*Driver)(nil)

// partialSuffix names the directory a restore copies into before it
// renames it into place.
const partialSuffix = ".partial"

// lockSuffix names the lock file beside a restored directory.
const lockSuffix = ".lock"

// RestoreVolume restores snapshot v.SnapshotID into the directory v.Path:
// the fs driver's CreateVolume. The copy goes to v.Path+".partial" first and
// is renamed into place whole, so v.Path exists only once complete: a rerun
// finds it there and copies nothing (Again), and a copy a crash interrupted
// is removed and made again. v.Path names the restore (its ID is part of the
// path the planner chose), so nothing else ever puts a directory there.
func (d *Driver) RestoreVolume(ctx context.Context, _ string, v messages.VolumeRestore) (messages.RestoreReport, error) {
	rep := messages.RestoreReport{Path: v.Path, VolumeID: v.SnapshotID}
	if v.Path == "" || !filepath.IsAbs(v.Path) || filepath.Clean(v.Path) != v.Path {
		return rep, errclass.Permanent(fmt.Errorf("fs: restore of %s: %q is not a clean absolute directory", v.SnapshotID, v.Path))
	}
	if err := os.MkdirAll(filepath.Dir(v.Path), 0o755); err != nil {
		return rep, fmt.Errorf("fs: restore of %s: %w", v.SnapshotID, err)
	}
	// Two executions of one task (a redelivery while a stalled first
	// one still runs) take turns: the second finds the first's result.
	unlock, err := lockFile(ctx, v.Path+lockSuffix)
	if err != nil {
		return rep, fmt.Errorf("fs: restore of %s: %w", v.SnapshotID, err)
	}
	defer unlock()
	if _, err := os.Stat(v.Path); err == nil {
		rep.Again = true
		return rep, nil
	} else if !errors.Is(err, iofs.ErrNotExist) {
		return rep, fmt.Errorf("fs: restore of %s: %w", v.SnapshotID, err)
	}
	s, err := d.Get(ctx, v.SnapshotID)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return rep, errclass.Permanent(fmt.Errorf("fs: restore: snapshot %s is gone from the store", v.SnapshotID))
		}
		return rep, err
	}
	if s.State != worker.StateCompleted {
		return rep, errclass.Permanent(fmt.Errorf("fs: restore: snapshot %s is %s, not completed", v.SnapshotID, s.State))
	}
	tmp := v.Path + partialSuffix
	if err := os.RemoveAll(tmp); err != nil {
		return rep, fmt.Errorf("fs: restore of %s: remove an interrupted copy: %w", v.SnapshotID, err)
	}
	if err := d.RestoreContext(ctx, v.SnapshotID, tmp); err != nil {
		return rep, err
	}
	if err := syncDir(tmp); err != nil {
		return rep, fmt.Errorf("fs: restore of %s: %w", v.SnapshotID, err)
	}
	if err := os.Rename(tmp, v.Path); err != nil {
		return rep, fmt.Errorf("fs: restore of %s: %w", v.SnapshotID, err)
	}
	if err := syncDir(filepath.Dir(v.Path)); err != nil {
		return rep, fmt.Errorf("fs: restore of %s: %w", v.SnapshotID, err)
	}
	size, files := treeSize(v.Path)
	rep.Bytes, rep.Files = size, files
	return rep, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func treeSize(root string) (int64, int) {
	var n int64
	var files int
	_ = filepath.WalkDir(root, func(_ string, e iofs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if info, err := e.Info(); err == nil {
				n += info.Size()
				files++
			}
		}
		return nil
	})
	return n, files
}
