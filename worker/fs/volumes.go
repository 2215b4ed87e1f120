package fs

import (
	"context"
	"fmt"
	"sort"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
)

var _ worker.VolumeDescriber = (*Driver)(nil)

// DescribeVolumes says what it can of the volumes of snaps: each is a
// directory (its mount point, for the catalog) and the bytes its snapshot
// copied. A directory has no AZ, type or encryption.
func (d *Driver) DescribeVolumes(ctx context.Context, snaps []worker.Snapshot) ([]messages.VolumeFacts, error) {
	byVol := map[string]messages.VolumeFacts{}
	for _, s := range snaps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !idPattern.MatchString(s.ID) {
			return nil, fmt.Errorf("fs: %q is not a snapshot ID of this driver", s.ID)
		}
		m, err := d.readMeta(s.ID)
		if err != nil {
			return nil, fmt.Errorf("fs: describe volume of %s: %w", s.ID, err)
		}
		f := byVol[m.VolumeID]
		f.VolumeID, f.Node, f.MountPoint = m.VolumeID, m.Node, m.VolumePath
		f.SizeBytes = max(f.SizeBytes, m.Size)
		byVol[m.VolumeID] = f
	}
	out := make([]messages.VolumeFacts, 0, len(byVol))
	for _, f := range byVol {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VolumeID < out[j].VolumeID })
	return out, nil
}
