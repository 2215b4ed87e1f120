package ebs

import (
	"context"
	"errors"
	"fmt"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

// ErrNotCompleted is returned by CopyJob while some of the job's snapshots
// are still pending: EC2 copies only completed snapshots.
var ErrNotCompleted = errors.New("snapshot not completed yet")

// CopyRegions are the regions the cluster's snapshots are copied to.
func (d *Driver) CopyRegions() []string { return d.cfg.CopyRegions }

// CopyJob copies every snapshot of a job, from its own region, to each of
// the cluster's copy regions (config ebs.copy_regions) but its own, and
// returns the copies. It is idempotent:
// a copy made earlier is found by its TagCopyOf tag and not made again. While
// any of the job's snapshots is pending it copies nothing and returns a
// transient ErrNotCompleted; a snapshot in the error state is a permanent
// failure.
func (d *Driver) CopyJob(ctx context.Context, jobID string) ([]worker.Snapshot, error) {
	regions := d.CopyRegions()
	if len(regions) == 0 {
		return nil, nil
	}
	p, snaps, err := d.JobProgress(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	if !p.Done() {
		return nil, fmt.Errorf("job %s: %d of %d snapshots pending: %w", jobID, p.Pending, p.Total, ErrNotCompleted)
	}
	var copies []worker.Snapshot
	for _, region := range regions {
		for _, s := range snaps {
			if s.Region == region {
				// A data centre in a copy region: the snapshot is there.
				continue
			}
			c, err := d.copyFrom(ctx, d.regionLocation(s.Region), s.ID, region)
			if err != nil {
				return copies, err
			}
			copies = append(copies, c)
		}
	}
	return copies, nil
}

// DeleteCopies deletes a job's snapshot copies in every copy region, with the
// guards of Delete: only snapshots carrying quiesce:managed=true, a copy
// already gone is success, and a copy in use is kept and reported in the
// returned error (worker.ErrSnapshotInUse) after the others are deleted.
func (d *Driver) DeleteCopies(ctx context.Context, jobID string) (deleted []string, err error) {
	var kept []error
	for _, region := range d.CopyRegions() {
		got, err := d.DeleteCopiesIn(ctx, jobID, region)
		deleted = append(deleted, got...)
		switch {
		case errors.Is(err, worker.ErrSnapshotInUse):
			kept = append(kept, err)
		case err != nil:
			return deleted, err
		}
	}
	if len(kept) > 0 {
		return deleted, errclass.Permanent(errors.Join(kept...))
	}
	return deleted, nil
}

var _ worker.CopyTrimmer = (*Driver)(nil)

// DeleteCopiesIn deletes a job's snapshot copies in one region, in that
// region, with DeleteCopies' guards; the job's other copies and its
// originals (a data centre's in that region included) are left alone.
func (d *Driver) DeleteCopiesIn(ctx context.Context, jobID, region string) (deleted []string, err error) {
	var kept []error
	client := d.c.region(region)
	copies, err := d.find(ctx, client, map[string]string{messages.TagJob: jobID, messages.TagManaged: "true"})
	if err != nil {
		return deleted, err
	}
	for _, s := range copies {
		if s.Tags[TagCopyOf] == "" {
			// An original of a data centre in this region, not a copy.
			continue
		}
		err := d.deleteIn(ctx, region, s.ID)
		switch {
		case err == nil:
			deleted = append(deleted, s.ID)
		case errors.Is(err, worker.ErrSnapshotGone):
		case errors.Is(err, worker.ErrSnapshotInUse):
			kept = append(kept, err)
		default:
			return deleted, err
		}
	}
	if len(kept) > 0 {
		return deleted, errclass.Permanent(errors.Join(kept...))
	}
	return deleted, nil
}

var _ worker.CopyLister = (*Driver)(nil)

// FindCopies returns the snapshots in region carrying every tag in filter:
// a job's copies there.
func (d *Driver) FindCopies(ctx context.Context, region string, filter map[string]string) ([]worker.Snapshot, error) {
	return d.find(ctx, d.c.region(region), filter)
}
