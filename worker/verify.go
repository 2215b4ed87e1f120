package worker

import (
	"context"
	"fmt"
	"sort"

	"github.com/quiesce/quiesce/messages"
)

// CopyLister is implemented by snapshotters that keep copies of a job's
// snapshots in other regions: it lists them by region.
type CopyLister interface {
	CopyRegions() []string
	FindCopies(ctx context.Context, region string, filter map[string]string) ([]Snapshot, error)
}

// BackupCheck is what VerifyBackup found about one snapshot of a backup.
type BackupCheck struct {
	SnapshotID string
	VolumeID   string
	Node       string
	// Problems is empty when the snapshot is there, completed, tagged as
	// the backup's, and copied to every copy region.
	Problems []string
}

// VerifyBackup checks that every snapshot of backup b still exists, is
// completed, carries the managed, cluster and job tags, and, when the
// snapshotter keeps copies, that each has a completed copy in every copy
// region. b must be the full record.
func VerifyBackup(ctx context.Context, snap Snapshotter, b messages.Backup) ([]BackupCheck, error) {
	found, err := snap.Find(ctx, map[string]string{messages.TagJob: b.JobID})
	if err != nil {
		return nil, fmt.Errorf("find the snapshots of %s: %w", b.JobID, err)
	}
	byID := map[string]Snapshot{}
	for _, s := range found {
		byID[s.ID] = s
	}
	copies := map[string]map[string]Snapshot{} // region → source snapshot → copy
	cl, hasCopies := snap.(CopyLister)
	if hasCopies {
		for _, region := range cl.CopyRegions() {
			cs, err := cl.FindCopies(ctx, region, map[string]string{messages.TagJob: b.JobID, messages.TagManaged: "true"})
			if err != nil {
				return nil, fmt.Errorf("find the copies of %s in %s: %w", b.JobID, region, err)
			}
			copies[region] = map[string]Snapshot{}
			for _, c := range cs {
				copies[region][c.Tags[TagCopyOf]] = c
			}
		}
	}
	var out []BackupCheck
	for _, ref := range b.Snapshots {
		c := BackupCheck{SnapshotID: ref.SnapshotID, VolumeID: ref.VolumeID, Node: ref.Node}
		s, ok := byID[ref.SnapshotID]
		if !ok {
			c.Problems = append(c.Problems, "missing: no snapshot with this ID carries the backup's job tag (deleted, or its tags removed)")
		} else {
			if s.State != StateCompleted {
				c.Problems = append(c.Problems, fmt.Sprintf("state %s, not completed %s", s.State, s.StateMessage))
			}
			for k, want := range map[string]string{messages.TagManaged: "true", messages.TagCluster: b.Cluster, messages.TagJob: b.JobID} {
				if got := s.Tags[k]; got != want {
					c.Problems = append(c.Problems, fmt.Sprintf("tag %s is %q, want %q", k, got, want))
				}
			}
		}
		regions := make([]string, 0, len(copies))
		for r := range copies {
			regions = append(regions, r)
		}
		sort.Strings(regions)
		for _, region := range regions {
			cp, ok := copies[region][ref.SnapshotID]
			switch {
			case !ok:
				c.Problems = append(c.Problems, "no copy in "+region)
			case cp.State != StateCompleted:
				c.Problems = append(c.Problems, fmt.Sprintf("copy %s in %s is %s", cp.ID, region, cp.State))
			}
		}
		sort.Strings(c.Problems)
		out = append(out, c)
	}
	return out, nil
}

// TagCopyOf marks a cross-region copy with the snapshot it was copied from.
const TagCopyOf = "quiesce:copy-of"
