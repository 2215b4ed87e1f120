package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

// ErrLeaseLost means this execution of a task no longer holds the task's
// lease: it stalled (a pause, SIGSTOP, a partition) long enough for the
// lease to lapse, and another execution may have taken the task. It must
// create nothing; the runtime then neither acknowledges nor fails the
// delivery, which belongs to the other execution now.
var ErrLeaseLost = errors.New("task lease lost: another execution may have the task")

// errLeaseHeld is the transient error of a delivery whose task another
// execution, still alive, holds the lease of.
var errLeaseHeld = errors.New("task lease held by another execution")

// errControlPlane marks a failure of quiesce's own NATS (the lease bucket
// not answering), not of the task: decide hands such a task back instead of
// spending its deliveries.
var errControlPlane = errors.New("NATS did not answer")

// LeaseStore is the part of a JetStream KV bucket a lease needs. The
// bucket's TTL is the lease's lifetime: a key not renewed within it
// disappears, and the lease with it.
type LeaseStore interface {
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Status(ctx context.Context) (jetstream.KeyValueStatus, error)
}

var _ LeaseStore = (jetstream.KeyValue)(nil)

// leased reports whether tasks of kind take a lease: the kinds that create
// something that has no idempotency token of its own (an EBS snapshot).
// Restore tasks that create volumes belong here too.
func leased(kind messages.Kind) bool {
	return kind == messages.KindSnapshot
}

// leaser hands out leases on tasks, one key per task ID in a bucket whose
// TTL is the lease's lifetime.
//
// At most one execution of a task holds its lease, and it creates only
// while it holds it: the key is taken with Create, renewed with Update on
// the revision this execution last wrote, and checked (Fence) immediately
// before every create call. A renewal sent at time s keeps the key alive on
// the server until at least s+TTL, so the holder counts its lease valid
// until s+TTL-margin by its own monotonic clock, never later: an execution
// that stalled past that (a GC pause, SIGSTOP, a slow network) finds its
// lease lapsed when it resumes, whether or not another took it meanwhile,
// and creates nothing. The margin leaves a create call sent just before the
// end of the lease time to reach the provider, and the provider time to
// show it, before another execution can look for it. What remains is a
// stall between the last check and the call's bytes leaving the process:
// EC2 takes no token that could fence it.
type leaser struct {
	store  LeaseStore
	ttl    time.Duration
	holder string
	// now is the monotonic clock validity is measured on.
	now func() time.Time
}

// margin is how much of the lease time a holder gives up.
func (l *leaser) margin() time.Duration { return l.ttl / 4 }

// leaseValue is what a lease key holds, for an operator reading the bucket.
type leaseValue struct {
	Worker  string    `json:"worker"`
	Attempt int       `json:"attempt"`
	Since   time.Time `json:"since"`
}

// lease is one execution's hold on one task.
type lease struct {
	l     *leaser
	key   string
	value []byte

	mu         sync.Mutex
	rev        uint64
	validUntil time.Time
	lost       bool

	stop chan struct{}
	done chan struct{}
}

// acquire takes the task's lease. A lease another execution left behind
// (it died or stalled) lapses within the TTL, so acquire waits up to a
// little more than that for it; a lease still being renewed after that
// belongs to a live execution, and the delivery is retried later.
func (l *leaser) acquire(ctx context.Context, taskID string, attempt int) (*lease, error) {
	value, err := json.Marshal(leaseValue{Worker: l.holder, Attempt: attempt, Since: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	giveUp := l.now().Add(l.ttl + l.ttl/2)
	for {
		sent := l.now()
		cctx, cancel := context.WithTimeout(ctx, l.ttl/2)
		rev, err := l.store.Create(cctx, taskID, value)
		cancel()
		if err == nil {
			ls := &lease{l: l, key: taskID, value: value, rev: rev, validUntil: sent.Add(l.ttl - l.margin()),
				stop: make(chan struct{}), done: make(chan struct{})}
			go ls.renew()
			return ls, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			return nil, fmt.Errorf("take the task's lease: %w: %w", errControlPlane, err)
		}
		if !l.now().Before(giveUp) {
			return nil, errclass.RetryAfter(fmt.Errorf("%w: %s", errLeaseHeld, l.holderOf(ctx, taskID)), l.ttl)
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(l.ttl / 4):
		}
	}
}

// holderOf names the worker holding a task's lease, for the log. Like
// every call of the lease, it is bounded by a fraction of the TTL, not by
// the task's deadline: a request the server never answers (it stopped
// mid-request) would otherwise hold the task, heartbeating, until then.
func (l *leaser) holderOf(ctx context.Context, taskID string) string {
	ctx, cancel := context.WithTimeout(ctx, l.ttl/2)
	defer cancel()
	e, err := l.store.Get(ctx, taskID)
	if err != nil {
		return "unknown worker"
	}
	var v leaseValue
	if json.Unmarshal(e.Value(), &v) != nil || v.Worker == "" {
		return "unknown worker"
	}
	return fmt.Sprintf("worker %s (attempt %d, since %s)", v.Worker, v.Attempt, v.Since.Format(time.RFC3339))
}

// renew keeps the lease alive every quarter of its TTL until release. A
// renewal the server refuses (another execution wrote the key, or it
// lapsed) loses the lease for good; one that fails otherwise is tried
// again, and the lease runs out on its own if none succeeds in time.
func (ls *lease) renew() {
	defer close(ls.done)
	t := time.NewTicker(ls.l.ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-ls.stop:
			return
		case <-t.C:
		}
		// The lease lives until release (ls.stop), not as long as any
		// caller's context: each renewal is bounded by its own timeout.
		ctx, cancel := context.WithTimeout(context.Background(), ls.l.ttl/4)
		err := ls.extend(ctx)
		cancel()
		if errors.Is(err, ErrLeaseLost) {
			return
		}
	}
}

// extend renews the lease once.
func (ls *lease) extend(ctx context.Context) error {
	ls.mu.Lock()
	if ls.lost {
		ls.mu.Unlock()
		return ErrLeaseLost
	}
	rev := ls.rev
	ls.mu.Unlock()
	sent := ls.l.now()
	next, err := ls.l.store.Update(ctx, ls.key, ls.value, rev)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	switch {
	case err == nil:
		ls.rev = next
		ls.validUntil = sent.Add(ls.l.ttl - ls.l.margin())
		return nil
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		ls.lost = true
		return ErrLeaseLost
	}
	return err
}

// Fence returns nil while this execution holds the lease, renewing it first
// when less than half its time is left; else ErrLeaseLost. Drivers call it
// immediately before they create.
func (ls *lease) Fence(ctx context.Context) error {
	ls.mu.Lock()
	lost, left := ls.lost, ls.validUntil.Sub(ls.l.now())
	ls.mu.Unlock()
	if lost {
		return ErrLeaseLost
	}
	if left < (ls.l.ttl-ls.l.margin())/2 {
		rctx, cancel := context.WithTimeout(ctx, max(left, 0)+ls.l.ttl/4)
		err := ls.extend(rctx)
		cancel()
		if errors.Is(err, ErrLeaseLost) {
			return err
		}
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.lost || !ls.l.now().Before(ls.validUntil) {
		ls.lost = true
		return ErrLeaseLost
	}
	return nil
}

// release stops renewing and gives the lease up, so a later delivery of the
// task need not wait for it to lapse. A lease lost meanwhile is left to
// whoever holds it.
func (ls *lease) release(ctx context.Context) {
	close(ls.stop)
	<-ls.done
	ls.mu.Lock()
	lost, rev := ls.lost, ls.rev
	ls.mu.Unlock()
	if lost {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ls.l.ttl/4)
	defer cancel()
	_ = ls.l.store.Delete(dctx, ls.key, jetstream.LastRevision(rev))
}
