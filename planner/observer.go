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
	// BarrierFailed: the flush barrier failed, and why.
	BarrierFailed(cluster string, why BarrierFailure)
	// BackupSucceeded: a backup of cluster finished at t; partial when the
	// policy let it leave out nodes that did not flush.
	BackupSucceeded(cluster string, t time.Time, partial bool)
	// RequestRejected: a JobRequest was refused; reason is one of
	// RejectReasons.
	RequestRejected(reason string)
	// RequestHandedBack: a request named a cluster this planner's
	// configuration lacks and was left for a planner that has it.
	RequestHandedBack()
	// SnapshotsRetired: retention deleted n snapshots of cluster.
	SnapshotsRetired(cluster string, n int)
}

// BarrierFailure says why a job's flush barrier failed: a bounded set, used
// as a metric label.
type BarrierFailure string

// Why a flush barrier fails.
const (
	// BarrierNodeFailed: a node failed its flush.
	BarrierNodeFailed BarrierFailure = "failed"
	// BarrierDeadline: the flush phase (or the job) ran out of time.
	BarrierDeadline BarrierFailure = "deadline"
	// BarrierCancelled: an operator cancelled the job during the flush.
	BarrierCancelled BarrierFailure = "cancelled"
)

// Why a request is rejected: a bounded set, used as a metric label.
const (
	// RejectMalformed: the message is not a JobRequest.
	RejectMalformed = "malformed"
	// RejectInvalid: a field is missing or fails validation, or the
	// deadline has passed.
	RejectInvalid = "invalid"
	// RejectUnknownCluster: the cluster is not in the inventory.
	RejectUnknownCluster = "unknown_cluster"
	// RejectUnknownPolicy: the cluster has no such policy.
	RejectUnknownPolicy = "unknown_policy"
	// RejectInvalidPlan: the cluster's nodes and volumes make no valid plan.
	RejectInvalidPlan = "invalid_plan"
)

// RejectReasons lists every reason RequestRejected reports.
var RejectReasons = []string{RejectMalformed, RejectInvalid, RejectUnknownCluster, RejectUnknownPolicy, RejectInvalidPlan}

// NopObserver discards every measurement.
type NopObserver struct{}

var _ Observer = NopObserver{}

func (NopObserver) JobStarted(string)                                                   {}
func (NopObserver) JobFinished(string, messages.Phase, time.Duration)                   {}
func (NopObserver) PhaseFinished(string, messages.Phase, time.Duration)                 {}
func (NopObserver) BarrierReleased(string, time.Duration, time.Duration, time.Duration) {}
func (NopObserver) BarrierFailed(string, BarrierFailure)                                {}
func (NopObserver) BackupSucceeded(string, time.Time, bool)                             {}
func (NopObserver) RequestRejected(string)                                              {}
func (NopObserver) RequestHandedBack()                                                  {}
func (NopObserver) SnapshotsRetired(string, int)                                        {}
