// Package planner turns JobRequests into jobs and drives them to a terminal
// phase: the Planner validates a request, resolves its cluster and publishes
// the flush tasks; the Coordinator applies task results to the job record by
// compare-and-set, holds the flush barrier, releases snapshot, clear, await and
// retention tasks, enforces deadlines and writes the catalog.
package planner

import (
	"time"

	"github.com/quiesce/quiesce/messages"
)

// Observer receives the planner's and coordinator's measurements. The
// observability package implements it with Prometheus; the core never imports
// a metrics library. Label values are bounded (cluster, phase, reason class).
type Observer interface {
	// JobStarted: a request became a job.
	JobStarted(cluster string)
	// JobFinished: a job reached terminal phase after d.
	JobFinished(cluster string, phase messages.Phase, d time.Duration)
	// PhaseFinished: a job left phase after spending d in it.
	PhaseFinished(cluster string, phase messages.Phase, d time.Duration)
	// BarrierReleased: the last flush succeeded and the snapshot tasks were
	// released. wait runs from the first flush task published to the release,
	// release from the last flush result applied to the release, spread from
	// the first node's flush to the last's.
	BarrierReleased(cluster string, wait, release, spread time.Duration)
	// BarrierFailed: the flush barrier failed (a node failed or timed out).
	BarrierFailed(cluster string, reason string)
	// BackupSucceeded: a backup of cluster finished at t.
	BackupSucceeded(cluster string, t time.Time)
	// RequestRejected: a JobRequest was refused; reason is a short class
	// ("malformed", "invalid", "unknown_cluster", "unknown_policy", ...).
	RequestRejected(reason string)
	// SnapshotsRetired: retention deleted n snapshots of cluster.
	SnapshotsRetired(cluster string, n int)
}

// NopObserver discards every measurement.
type NopObserver struct{}

var _ Observer = NopObserver{}

func (NopObserver) JobStarted(string)                                                   {}
func (NopObserver) JobFinished(string, messages.Phase, time.Duration)                   {}
func (NopObserver) PhaseFinished(string, messages.Phase, time.Duration)                 {}
func (NopObserver) BarrierReleased(string, time.Duration, time.Duration, time.Duration) {}
func (NopObserver) BarrierFailed(string, string)                                        {}
func (NopObserver) BackupSucceeded(string, time.Time)                                   {}
func (NopObserver) RequestRejected(string)                                              {}
func (NopObserver) SnapshotsRetired(string, int)                                        {}
