package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/topology"
)

// Options are shared by the Planner and the Coordinator.
type Options struct {
	Logger   zerolog.Logger
	Observer Observer
	Now      func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// engine loads and stores job records by compare-and-set and carries out
// their outbox effects. Both the planner and the coordinator use it, so any
// replica of either can finish what another began.
type engine struct {
	js  jetstream.JetStream
	h   *topology.Handles
	log zerolog.Logger
	obs Observer
	now func() time.Time

	mu    sync.Mutex
	plans map[string]*Plan
	locks map[string]*jobLock
}

type jobLock struct {
	mu   sync.Mutex
	refs int
}

func newEngine(js jetstream.JetStream, h *topology.Handles, o Options) *engine {
	o = o.withDefaults()
	return &engine{js: js, h: h, log: o.Logger, obs: o.Observer, now: o.Now,
		plans: map[string]*Plan{}, locks: map[string]*jobLock{}}
}

// lock serializes work on one job inside this process; other processes are
// kept honest by compare-and-set.
func (e *engine) lock(job string) func() {
	e.mu.Lock()
	l := e.locks[job]
	if l == nil {
		l = &jobLock{}
		e.locks[job] = l
	}
	l.refs++
	e.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		e.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(e.locks, job)
		}
		e.mu.Unlock()
	}
}

var errNoJob = errors.New("no such job")

func (e *engine) load(ctx context.Context, job string) (*record, uint64, error) {
	entry, err := e.h.Jobs.Get(ctx, job)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%w: %s", errNoJob, job)
	}
	if err != nil {
		return nil, 0, err
	}
	var r record
	if err := json.Unmarshal(entry.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("job %s record: %w", job, err)
	}
	return &r, entry.Revision(), nil
}

func (e *engine) plan(ctx context.Context, job string) (*Plan, error) {
	e.mu.Lock()
	p := e.plans[job]
	e.mu.Unlock()
	if p != nil {
		return p, nil
	}
	data, err := e.h.Plans.GetBytes(ctx, job)
	if err != nil {
		return nil, fmt.Errorf("job %s plan: %w", job, err)
	}
	p = &Plan{}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("job %s plan: %w", job, err)
	}
	p.index()
	e.cachePlan(p)
	return p, nil
}

func (e *engine) cachePlan(p *Plan) {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Plans of finished jobs are dropped as the cache grows; they are
	// reloaded from the object store if a late event needs one.
	if len(e.plans) > 256 {
		for k := range e.plans {
			delete(e.plans, k)
			if len(e.plans) <= 128 {
				break
			}
		}
	}
	e.plans[p.JobID] = p
}

func (e *engine) forget(job string) {
	e.mu.Lock()
	delete(e.plans, job)
	e.mu.Unlock()
}

// mutate applies fn to the job's record and stores it by compare-and-set,
// retrying on conflict with a fresh read; then it reports the transitions
// and carries out the outbox. fn returns false when it changed nothing.
func (e *engine) mutate(ctx context.Context, job string, fn func(r *record, p *Plan) (bool, []transition)) error {
	p, err := e.plan(ctx, job)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		r, rev, err := e.load(ctx, job)
		if err != nil {
			return err
		}
		changed, ts := fn(r, p)
		if !changed {
			if len(r.Outbox) > 0 {
				return e.drain(ctx, p, r, rev)
			}
			return nil
		}
		ts = append(ts, r.advance(p, e.now())...)
		newRev, err := e.store(ctx, r, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			if attempt > 50 {
				return fmt.Errorf("job %s: too many concurrent updates: %w", job, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		e.report(ctx, p, r, ts)
		return e.drain(ctx, p, r, newRev)
	}
}

func (e *engine) store(ctx context.Context, r *record, rev uint64) (uint64, error) {
	r.UpdatedAt = e.now()
	data, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	return e.h.Jobs.Update(ctx, r.ID, data, rev)
}

// drain carries out the record's outbox, then removes what it did by
// compare-and-set. Effects are idempotent (task IDs are message IDs), so a
// second replica draining the same outbox only repeats harmless publishes.
func (e *engine) drain(ctx context.Context, p *Plan, r *record, rev uint64) error {
	for round := 0; len(r.Outbox) > 0 && round < 10; round++ {
		done, err := e.effects(ctx, p, r, slices.Clone(r.Outbox))
		if err != nil {
			return err
		}
		for attempt := 0; ; attempt++ {
			r.Outbox = slices.DeleteFunc(r.Outbox, func(fx effect) bool { _, ok := done[fx]; return ok })
			ts := r.complete(p, done, e.now())
			ts = append(ts, r.advance(p, e.now())...)
			newRev, err := e.store(ctx, r, rev)
			if err == nil {
				rev = newRev
				e.report(ctx, p, r, ts)
				break
			}
			if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) || attempt > 50 {
				return err
			}
			if r, rev, err = e.load(ctx, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// effectConcurrency bounds the effects of one outbox carried out at once.
const effectConcurrency = 64

// effects carries out an outbox's effects side by side: they are
// independent and idempotent, and most are task publishes, each waiting for
// its own ack; one at a time, a batch of per-node clears cost one round
// trip each. It only reads r.
func (e *engine) effects(ctx context.Context, p *Plan, r *record, fxs []effect) (map[effect]effectResult, error) {
	vals := make([]effectResult, len(fxs))
	errs := make([]error, len(fxs))
	if len(fxs) == 1 {
		vals[0], errs[0] = e.effect(ctx, p, r, fxs[0])
	} else {
		var wg sync.WaitGroup
		sem := make(chan struct{}, effectConcurrency)
		for k, fx := range fxs {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				vals[k], errs[k] = e.effect(ctx, p, r, fx)
			}()
		}
		wg.Wait()
	}
	done := make(map[effect]effectResult, len(fxs))
	for k, fx := range fxs {
		if errs[k] != nil {
			return nil, fmt.Errorf("job %s effect %s: %w", r.ID, fx, errs[k])
		}
		done[fx] = vals[k]
	}
	return done, nil
}
