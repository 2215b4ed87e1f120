package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// The words every view of a job (status, watch, submit, jobs) uses for the
// same counts, so they never disagree.

// snapshotsText is the snapshot tasks of a job: none before the barrier
// released them, then how many of them are done.
func snapshotsText(j messages.Job) string {
	p := j.Progress
	if j.BarrierAt.IsZero() && p.SnapshotTasks == 0 {
		if j.Phase.Terminal() {
			return "none: barrier not reached"
		}
		return "not released yet"
	}
	s := fmt.Sprintf("%d/%d", p.Snapshotted, p.SnapshotTasks)
	if p.SnapshotFail > 0 {
		s += fmt.Sprintf(" (%d failed)", p.SnapshotFail)
	}
	return s
}

// clearedText is how many nodes' tags were cleared of those queued.
func clearedText(j messages.Job) string {
	p := j.Progress
	s := fmt.Sprintf("%d/%d", p.Cleared, p.ClearTasks)
	if p.ClearFailed > 0 {
		s += fmt.Sprintf(" (%d failed)", p.ClearFailed)
	}
	return s
}

// cleanupText says where a job's clean-up stands: empty while the job runs,
// and once a job succeeded or ended without anything to clean up.
func cleanupText(j messages.Job) string {
	p := j.Progress
	switch {
	case !j.Phase.Terminal():
		return ""
	case p.CleanupPending > 0:
		s := fmt.Sprintf("running: %d %s pending", p.CleanupPending, plural(p.CleanupPending, "task", "tasks"))
		if p.Retrying > 0 {
			s += fmt.Sprintf(", %d retrying", p.Retrying)
		}
		return s
	case j.Phase != messages.PhaseSucceeded && (p.ClearTasks > 0 || p.CleanupTasks > 0):
		return "ended"
	}
	return ""
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// retryText describes one task that will be tried again, with when,
// relative to now.
func retryText(jobID string, r messages.Retry, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: attempt %d", taskName(jobID, r), r.Attempt)
	if r.MaxAttempts > 0 {
		fmt.Fprintf(&b, " of %d", r.MaxAttempts)
	}
	fmt.Fprintf(&b, " failed at %s", r.FailedAt.UTC().Format(time.RFC3339))
	if r.Error != "" {
		fmt.Fprintf(&b, ": %s", r.Error)
	}
	if r.NextAttemptAt.After(now) {
		fmt.Fprintf(&b, "; next attempt %s (in %s)", r.NextAttemptAt.UTC().Format(time.RFC3339), roughly(r.NextAttemptAt.Sub(now)))
	} else {
		fmt.Fprintf(&b, "; next attempt due since %s", r.NextAttemptAt.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// taskName names a task for an operator: its kind and target, and whether
// it is a repeat (a clear queued again for a flush that landed late).
func taskName(jobID string, r messages.Retry) string {
	name := string(r.Kind) + " " + r.Target
	if r.TaskID != messages.TaskID(jobID, r.Kind, r.Target) && r.Kind == messages.KindClear {
		name += " (repeated)"
	}
	return name
}

// roughly rounds a wait to what an operator needs.
func roughly(d time.Duration) string {
	if d < time.Second {
		return "under a second"
	}
	return d.Round(time.Second).String()
}

// cleanupEnd is the last thing submit, watch and cancel say about a job
// that ended: whether its clean-up ended, and if not, how to follow it.
// Empty for a job that had nothing to clean up.
func cleanupEnd(j messages.Job, now time.Time) string {
	if !j.Phase.Terminal() {
		return ""
	}
	p := j.Progress
	if p.CleanupPending == 0 {
		if j.Phase == messages.PhaseSucceeded || (p.ClearTasks == 0 && p.CleanupTasks == 0) {
			return ""
		}
		s := fmt.Sprintf("clean-up ended: tags cleared %s", clearedText(j))
		if p.CleanupTasks > 0 {
			s += fmt.Sprintf(", snapshot clean-up tasks %d/%d", p.CleanupsDone, p.CleanupTasks)
		}
		return s
	}
	var b strings.Builder
	fmt.Fprintf(&b, "clean-up goes on: %d %s pending (tags cleared %s)", p.CleanupPending,
		plural(p.CleanupPending, "task", "tasks"), clearedText(j))
	for _, r := range j.Retrying {
		fmt.Fprintf(&b, "\n  retrying %s", retryText(j.ID, r, now))
	}
	fmt.Fprintf(&b, "\nfollow it with: quiesce watch %s   (or: quiesce status %s)", j.ID, j.ID)
	return b.String()
}
