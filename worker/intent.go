package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// An intent is a flush's record, in the jobs bucket under
// messages.IntentKey, that it is about to run nodetool snapshot on a node.
// It is created (KV Create: once) right before nodetool runs, after the
// node's executor is ready, so:
//
//   - a flush that finds its tag already on the node tells a redelivery of
//     its own job (an intent existed before this attempt: an earlier one got
//     as far as running nodetool) from someone else's snapshot (this attempt
//     created the intent): the latter fails the node, and the intent is
//     marked foreign;
//   - the job's clean-up clears a node's tag only when the intent says the
//     job ran nodetool there: a node the job never reached has nothing to
//     clear, and a foreign tag is never cleared.
//
// The intent lives as long as the job's record (the bucket's TTL).
type intent struct {
	State   intentState `json:"state"`
	Attempt int         `json:"attempt"`
	Worker  string      `json:"worker,omitempty"`
	At      time.Time   `json:"at"`
}

type intentState string

const (
	// intentRan: nodetool snapshot ran, or is running, for the job.
	intentRan intentState = "ran"
	// intentForeign: the tag was on the node before the job's flush ran
	// nodetool; it is not the job's.
	intentForeign intentState = "foreign"
)

// intentTimeout bounds one read or write of an intent: a bucket that does
// not answer fails the task (to be retried), never holds it.
const intentTimeout = 10 * time.Second

// beginIntent records that this attempt is about to run nodetool. It
// returns the intent an earlier attempt left, if any, and the revision of
// the key either way.
func (w *Worker) beginIntent(ctx context.Context, key string, attempt int) (*intent, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, intentTimeout)
	defer cancel()
	data, err := json.Marshal(intent{State: intentRan, Attempt: attempt, Worker: w.cfg.Name, At: w.cfg.Now()})
	if err != nil {
		return nil, 0, err
	}
	rev, err := w.jobs.Create(ctx, key, data)
	if err == nil {
		return nil, rev, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, 0, fmt.Errorf("record flush intent %s: %w", key, err)
	}
	earlier, rev, err := w.getIntent(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if earlier == nil {
		// Deleted between the two calls (a withdrawn intent): try again.
		return w.beginIntent(ctx, key, attempt)
	}
	return earlier, rev, nil
}

// readIntent returns the node's intent, nil when there is none.
func (w *Worker) readIntent(ctx context.Context, key string) (*intent, error) {
	ctx, cancel := context.WithTimeout(ctx, intentTimeout)
	defer cancel()
	in, _, err := w.getIntent(ctx, key)
	return in, err
}

func (w *Worker) getIntent(ctx context.Context, key string) (*intent, uint64, error) {
	e, err := w.jobs.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read flush intent %s: %w", key, err)
	}
	var in intent
	if err := json.Unmarshal(e.Value(), &in); err != nil {
		return nil, 0, fmt.Errorf("flush intent %s: %w", key, err)
	}
	return &in, e.Revision(), nil
}

// markForeign records that the tag on the node is not the job's. It tries
// until it is stored or ctx ends: until then, a later attempt would count
// the tag as the job's own.
func (w *Worker) markForeign(ctx context.Context, key string, rev uint64, attempt int) error {
	data, err := json.Marshal(intent{State: intentForeign, Attempt: attempt, Worker: w.cfg.Name, At: w.cfg.Now()})
	if err != nil {
		return err
	}
	for {
		uctx, cancel := context.WithTimeout(ctx, intentTimeout)
		_, err = w.jobs.Update(uctx, key, data, rev)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// Another attempt of the flush wrote it since; it found the
			// same foreign tag, or its own nodetool run made one.
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mark flush intent %s foreign: %w", key, err)
		case <-time.After(time.Second):
		}
	}
}

// withdrawIntent removes an intent whose nodetool run left the node as it
// was, so the job's clean-up has nothing to do there. Best effort: a
// clean-up that finds it runs a clearsnapshot that clears nothing.
func (w *Worker) withdrawIntent(ctx context.Context, key string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), intentTimeout)
	defer cancel()
	_ = w.jobs.Delete(ctx, key, jetstream.LastRevision(rev))
}
