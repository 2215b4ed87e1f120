package planner

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// CoordinatorConfig tunes a Coordinator.
type CoordinatorConfig struct {
	Options
	// SweepInterval is how often deadlines and stalled effects are checked
	// (default 2s).
	SweepInterval time.Duration
	// StallAfter is how long an unfinished outbox may sit before the sweep
	// carries it out itself (default 5s).
	StallAfter time.Duration
	// BatchSize bounds the events applied to the job records in one go
	// (default 512).
	BatchSize int
}

// Coordinator applies task results to job records and drives every job to a
// terminal phase. Replicas may run side by side: they share one durable
// consumer, and every record change is a compare-and-set.
type Coordinator struct {
	e   *engine
	cfg CoordinatorConfig

	mu       sync.Mutex
	cc       jetstream.ConsumeContext
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	ended    map[string]bool
	started  bool
	inbox    chan jetstream.Msg
	stopping chan struct{}
}

// NewCoordinator makes a coordinator.
func NewCoordinator(js jetstream.JetStream, h *topology.Handles, cfg CoordinatorConfig) *Coordinator {
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 2 * time.Second
	}
	if cfg.StallAfter == 0 {
		cfg.StallAfter = 5 * time.Second
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 512
	}
	return &Coordinator{e: newEngine(js, h, cfg.Options), cfg: cfg, ended: map[string]bool{}}
}

// Start binds to the coordinator consumer and starts the event loop and the
// sweep.
func (c *Coordinator) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("coordinator already started")
	}
	cons, err := c.e.js.Consumer(ctx, messages.StreamEvents, topology.ConsumerCoordinator)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.inbox = make(chan jetstream.Msg, 4*c.cfg.BatchSize)
	c.stopping = make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case c.inbox <- m:
		case <-c.stopping:
		}
	}, jetstream.PullMaxMessages(2*c.cfg.BatchSize))
	if err != nil {
		cancel()
		return err
	}
	c.cc = cc
	c.started = true
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.loop(runCtx) }()
	go func() { defer c.wg.Done(); c.sweepLoop(runCtx) }()
	return nil
}

// Ready reports whether the coordinator is consuming.
func (c *Coordinator) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return errors.New("coordinator not started")
	}
	return nil
}

// Stop stops consuming, finishes the batch in hand and returns. Events not
// yet applied are redelivered to another replica.
func (c *Coordinator) Stop(ctx context.Context) error {
	c.mu.Lock()
	if !c.started {
		c.mu.Unlock()
		return nil
	}
	c.started = false
	c.cc.Stop()
	close(c.stopping)
	cancel := c.cancel
	c.mu.Unlock()
	cancel()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Coordinator) loop(ctx context.Context) {
	for {
		var first jetstream.Msg
		select {
		case <-ctx.Done():
			c.returnInbox()
			return
		case first = <-c.inbox:
		}
		batch := []jetstream.Msg{first}
	fill:
		for len(batch) < c.cfg.BatchSize {
			select {
			case m := <-c.inbox:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		c.process(ctx, batch)
	}
}

// returnInbox hands back events fetched but not applied.
func (c *Coordinator) returnInbox() {
	for {
		select {
		case m := <-c.inbox:
			_ = m.Nak()
		default:
			return
		}
	}
}

type pendingEvent struct {
	msg     jetstream.Msg
	result  *messages.TaskResult
	control *messages.Control
}

func (c *Coordinator) process(ctx context.Context, batch []jetstream.Msg) {
	byJob := map[string][]pendingEvent{}
	var order []string
	for _, m := range batch {
		ev, job, err := decodeEvent(m)
		if err != nil {
			c.e.log.Error().Err(err).Str("subject", m.Subject()).Msg("undecodable event terminated")
			_ = m.TermWithReason(err.Error())
			continue
		}
		if _, ok := byJob[job]; !ok {
			order = append(order, job)
		}
		byJob[job] = append(byJob[job], ev)
	}
	for _, job := range order {
		evs := byJob[job]
		err := c.applyJob(ctx, job, evs)
		for _, ev := range evs {
			switch {
			case err == nil:
				_ = ev.msg.Ack()
			case errors.Is(err, errNoJob):
				_ = ev.msg.TermWithReason("no such job")
			default:
				_ = ev.msg.NakWithDelay(time.Second)
			}
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			c.e.log.Warn().Err(err).Str("job_id", job).Msg("events not applied")
		}
	}
}

func decodeEvent(m jetstream.Msg) (pendingEvent, string, error) {
	ev := pendingEvent{msg: m}
	if strings.HasSuffix(m.Subject(), ".control") {
		var ctl messages.Control
		if err := json.Unmarshal(m.Data(), &ctl); err != nil || ctl.Schema != messages.ControlSchema {
			return ev, "", errors.New("undecodable control message")
		}
		if ctl.Action != "cancel" {
			return ev, "", errors.New("unknown control action " + ctl.Action)
		}
		ev.control = &ctl
		return ev, ctl.JobID, nil
	}
	var r messages.TaskResult
	if err := json.Unmarshal(m.Data(), &r); err != nil || r.Schema != messages.TaskResultSchema {
		return ev, "", errors.New("undecodable task result")
	}
	ev.result = &r
	return ev, r.JobID, nil
}

func (c *Coordinator) applyJob(ctx context.Context, job string, evs []pendingEvent) error {
	unlock := c.e.lock(job)
	defer unlock()
	// Side records first: idempotent puts and deletes that the catalog and
	// retention read later. They happen before the record says the task is
	// done, so the record never points at something missing.
	if err := c.putSnapshotResults(ctx, evs); err != nil {
		return err
	}
	for _, ev := range evs {
		r := ev.result
		if r == nil || r.Outcome != messages.OutcomeSucceeded {
			continue
		}
		switch r.Kind {
		case messages.KindRetention:
			for _, retired := range r.Retired {
				if retired == r.JobID {
					continue
				}
				key := messages.CatalogKey(r.Cluster, retired)
				if err := c.e.h.Catalog.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
					return err
				}
				if err := c.e.h.Manifests.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
					return err
				}
			}
			if len(r.Deleted) > 0 {
				c.e.obs.SnapshotsRetired(r.Cluster, len(r.Deleted))
			}
		}
	}
	now := c.e.now()
	return c.e.mutate(ctx, job, func(rec *record, p *Plan) (bool, []transition) {
		changed := false
		var ts []transition
		for _, ev := range evs {
			if ev.control != nil {
				if t, ok := rec.cancel(p, now, ev.control.By, ev.control.Reason); ok {
					changed = true
					ts = append(ts, t)
				}
				continue
			}
			if rec.apply(p, ev.result, now) {
				changed = true
			}
		}
		return changed, ts
	})
}

// putSnapshotResults stores each successful snapshot result under its task
// ID, several at a time: the puts are independent and idempotent, and a
// batch of hundreds one after another costs a round trip each.
func (c *Coordinator) putSnapshotResults(ctx context.Context, evs []pendingEvent) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, effectConcurrency)
	for _, ev := range evs {
		r := ev.result
		if r == nil || r.Outcome != messages.OutcomeSucceeded || r.Kind != messages.KindSnapshot {
			continue
		}
		data, _ := json.Marshal(r.Snapshots)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := c.e.h.Jobs.Put(ctx, resultKey(r.TaskID), data); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func (c *Coordinator) sweepLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.SweepInterval)
	defer t.Stop()
	for {
		c.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep enforces deadlines and finishes effects a crashed process left in a
// record's outbox. It is what makes every job reach a terminal phase even
// when no further event will ever arrive for it.
func (c *Coordinator) sweep(ctx context.Context) {
	lister, err := c.e.h.Jobs.ListKeysFiltered(ctx, "*")
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoKeysFound) && ctx.Err() == nil {
			c.e.log.Warn().Err(err).Msg("sweep: list jobs")
		}
		return
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	now := c.e.now()
	for _, job := range keys {
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		ended := c.ended[job]
		c.mu.Unlock()
		if ended {
			continue
		}
		rec, _, err := c.e.load(ctx, job)
		if err != nil {
			continue
		}
		if rec.Phase.Terminal() && len(rec.Outbox) == 0 {
			c.mu.Lock()
			c.ended[job] = true
			c.mu.Unlock()
			c.e.forget(job)
			continue
		}
		expired := !rec.Phase.Terminal() &&
			((!rec.PhaseDeadline.IsZero() && !now.Before(rec.PhaseDeadline)) ||
				(!rec.Deadline.IsZero() && !now.Before(rec.Deadline)))
		stalled := len(rec.Outbox) > 0 && now.Sub(rec.UpdatedAt) >= c.cfg.StallAfter
		if !expired && !stalled {
			continue
		}
		unlock := c.e.lock(job)
		err = c.e.mutate(ctx, job, func(r *record, p *Plan) (bool, []transition) {
			if t, ok := r.expire(p, c.e.now()); ok {
				return true, []transition{t}
			}
			return false, nil
		})
		unlock()
		if err != nil && ctx.Err() == nil {
			c.e.log.Warn().Err(err).Str("job_id", job).Msg("sweep")
		}
	}
}
