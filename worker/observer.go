package worker

import (
	"time"

	"github.com/quiesce/quiesce/messages"
)

// Observer receives the worker runtime's measurements; observability
// implements it with Prometheus. Labels are bounded: kind, outcome, code.
type Observer interface {
	// TaskStarted: a delivery of a task began (in flight +1).
	TaskStarted(kind messages.Kind)
	// TaskFinished: a delivery ended (in flight -1). outcome is one of
	// "succeeded", "failed" (terminal failure reported), "retry" (delayed
	// redelivery), "skipped" (job already terminal), "returned" (handed
	// back: the worker is stopping, or the task's cluster is not in its
	// configuration, code "unknown_cluster"), "abandoned" (its lease lapsed
	// while it stalled). code is the error's errclass.Code, or its class,
	// or "".
	TaskFinished(kind messages.Kind, outcome string, d time.Duration, code string)
	// TaskRedelivered: a task arrived with a delivery count above one.
	TaskRedelivered(kind messages.Kind)
	// SnapshotStates: an await task saw this many of a cluster's job
	// snapshots pending and in error.
	SnapshotStates(cluster string, pending, errored int)
	// SnapshotRetaken: a snapshot task found one of its snapshots in error
	// and deleted it, to take the volume again.
	SnapshotRetaken(cluster string)
}

// NopObserver discards every measurement.
type NopObserver struct{}

var _ Observer = NopObserver{}

func (NopObserver) TaskStarted(messages.Kind)                                 {}
func (NopObserver) TaskFinished(messages.Kind, string, time.Duration, string) {}
func (NopObserver) TaskRedelivered(messages.Kind)                             {}
func (NopObserver) SnapshotStates(string, int, int)                           {}
func (NopObserver) SnapshotRetaken(string)                                    {}
