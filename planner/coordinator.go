package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/internal/startstop"
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
	e    *engine
	rs   *restores
	cfg  CoordinatorConfig
	life startstop.Service

	mu       sync.Mutex
	cc       jetstream.ConsumeContext
	cancel   context.CancelFunc
	ended    map[string]bool
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
	e := newEngine(js, h, cfg.Options)
	return &Coordinator{e: e, rs: newRestores(e), cfg: cfg, ended: map[string]bool{},
		life: startstop.Service{Name: "coordinator"}}
}

// Start binds to the coordinator consumer and starts the event loop and the
// sweep. A coordinator that was stopped can be started again.
func (c *Coordinator) Start(ctx context.Context) error {
	c.life.Lock()
	defer c.life.Unlock()
	if err := c.life.BeginStart(); err != nil {
		return err
	}
	if err := c.start(ctx); err != nil {
		_ = c.stop(context.WithoutCancel(ctx))
		return err
	}
	c.life.EndStart()
	return nil
}

func (c *Coordinator) start(ctx context.Context) error {
	cons, err := c.e.js.Consumer(ctx, messages.StreamEvents, topology.ConsumerCoordinator)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	inbox := make(chan jetstream.Msg, 4*c.cfg.BatchSize)
	stopping := make(chan struct{})
	c.mu.Lock()
	c.cancel, c.stopping = cancel, stopping
	c.mu.Unlock()
	for _, run := range []func(context.Context, chan jetstream.Msg){c.loop, c.sweepLoop} {
		done, ok := c.life.Admit()
		if !ok {
			return errors.New("coordinator stopped while starting")
		}
		go func() { defer done(); run(runCtx, inbox) }()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case inbox <- m:
		case <-stopping:
		}
	}, jetstream.PullMaxMessages(2*c.cfg.BatchSize))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cc = cc
	c.mu.Unlock()
	return nil
}

// Ready reports whether the coordinator is consuming.
func (c *Coordinator) Ready() error { return c.life.Ready() }

// Stop stops consuming, finishes the batch in hand and returns. Events not
// yet applied are redelivered to another replica.
func (c *Coordinator) Stop(ctx context.Context) error {
	c.life.Lock()
	defer c.life.Unlock()
	return c.stop(ctx)
}

func (c *Coordinator) stop(ctx context.Context) error {
	if !c.life.BeginStop() {
		return nil
	}
	c.mu.Lock()
	cc, cancel, stopping := c.cc, c.cancel, c.stopping
	c.cc, c.cancel, c.stopping = nil, nil, nil
	c.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
	if stopping != nil {
		close(stopping)
	}
	if cancel != nil {
		cancel()
	}
	err := c.life.Wait(ctx)
	if err != nil {
		_ = c.life.Wait(context.WithoutCancel(ctx))
	}
	c.life.EndStop()
	return err
}

func (c *Coordinator) loop(ctx context.Context, inbox chan jetstream.Msg) {
	for {
		var first jetstream.Msg
		select {
		case <-ctx.Done():
			returnInbox(inbox)
			return
		case first = <-inbox:
		}
		batch := []jetstream.Msg{first}
	fill:
		for len(batch) < c.cfg.BatchSize {
			select {
			case m := <-inbox:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		c.process(ctx, batch)
	}
}

// returnInbox hands back events fetched but not applied.
func returnInbox(inbox chan jetstream.Msg) {
	for {
		select {
		case m := <-inbox:
			_ = m.Nak()
		default:
			return
		}
	}
}

type pendingEvent struct {
	msg     jetstream.Msg
	result  *messages.TaskResult
	retry   *messages.TaskRetry
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
	// An agent's result or retry carries its node after the subject.
	base, _, _ := messages.SplitAgentSubject(m.Subject())
	if strings.HasSuffix(base, ".retry") {
		var rt messages.TaskRetry
		if err := json.Unmarshal(m.Data(), &rt); err != nil || rt.Schema != messages.TaskRetrySchema {
			return ev, "", errors.New("undecodable task retry")
		}
		ev.retry = &rt
		return ev, rt.JobID, nil
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
	if messages.IsRestoreID(job) {
		return c.applyRestore(ctx, job, evs)
	}
	if p, err := c.e.plan(ctx, job); err == nil && p.Agent {
		evs = c.fromTheirAgents(p, evs)
	}
	// Side records first: idempotent puts and deletes that the catalog and
	// retention read later. They happen before the record says the task is
	// done, so the record never points at something missing.
	if err := c.putInlineListings(ctx, evs); err != nil {
		return err
	}
	if err := c.putHookRuns(ctx, evs); err != nil {
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
			for _, t := range r.Trimmed {
				if t.JobID == r.JobID {
					continue
				}
				if err := markTrimmed(ctx, c.e.h.Catalog, r.Cluster, t); err != nil {
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
			if ev.retry != nil {
				if rec.applyRetry(p, ev.retry) {
					changed = true
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

// fromTheirAgents keeps the events of an agent cluster's job that may speak
// for their task: a node task's result or retry only from that node's
// agent. The others are dropped (acknowledged, never applied), whatever
// their body says.
func (c *Coordinator) fromTheirAgents(p *Plan, evs []pendingEvent) []pendingEvent {
	kept := evs[:0:0]
	for _, ev := range evs {
		var kind messages.Kind
		var target string
		switch {
		case ev.result != nil:
			kind, target = ev.result.Kind, ev.result.Target
		case ev.retry != nil:
			kind, target = ev.retry.Kind, ev.retry.Target
		default:
			kept = append(kept, ev)
			continue
		}
		if p.fromAgentOf(ev.msg.Subject(), kind, target) {
			kept = append(kept, ev)
			continue
		}
		c.e.log.Warn().Str("job_id", p.JobID).Str("subject", ev.msg.Subject()).Str("task_kind", string(kind)).
			Str("target", target).Msg("event for a node task not published by that node's agent: dropped")
		_ = ev.msg.Ack()
	}
	return kept
}

// putInlineListings stores the snapshots an await task of the previous
// release reported inline, where the catalog reads its listing, so jobs in
// flight during an upgrade are catalogued like the others.
func (c *Coordinator) putInlineListings(ctx context.Context, evs []pendingEvent) error {
	for _, ev := range evs {
		r := ev.result
		if r == nil || r.Kind != messages.KindAwait || r.Outcome != messages.OutcomeSucceeded || r.Listing != "" {
			continue
		}
		data, err := json.Marshal(r.Snapshots)
		if err != nil {
			return err
		}
		name := messages.SnapshotListing(r.JobID)
		if _, err := c.e.h.Plans.PutBytes(ctx, name, data); err != nil {
			return fmt.Errorf("store snapshot listing: %w", err)
		}
		r.Listing = name
	}
	return nil
}

// putHookRuns keeps each hook task's last result beside the job's record,
// output included, for quiesce status.
func (c *Coordinator) putHookRuns(ctx context.Context, evs []pendingEvent) error {
	for _, ev := range evs {
		r := ev.result
		if r == nil || r.Kind != messages.KindHook {
			continue
		}
		run := messages.HookRun{TaskID: r.TaskID, Outcome: r.Outcome, Error: r.Error, Class: r.ErrorClass,
			ExitCode: r.ExitCode, Output: r.Output, Attempt: r.Attempt, Worker: r.Worker, FinishedAt: r.FinishedAt}
		if p, err := c.e.plan(ctx, r.JobID); err == nil {
			if j, ok := p.hookIndex[r.Target]; ok {
				h := p.Policy.Hooks[p.hooks[j].hook]
				run.Hook, run.Point = h.Name, h.Point
				if i := p.hooks[j].node; i >= 0 {
					run.Node = p.Nodes[i].Name
				}
			}
		}
		data, err := json.Marshal(run)
		if err != nil {
			return err
		}
		if _, err := c.e.h.Jobs.Put(ctx, messages.HookRunKey(r.JobID, r.Target), data); err != nil {
			return fmt.Errorf("store hook run: %w", err)
		}
	}
	return nil
}

func (c *Coordinator) sweepLoop(ctx context.Context, _ chan jetstream.Msg) {
	t := time.NewTicker(c.cfg.SweepInterval)
	defer t.Stop()
	for {
		c.sweep(ctx)
		c.sweepRestores(ctx)
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
		expired := rec.expired(now)
		stalled := len(rec.Outbox) > 0 && now.Sub(rec.UpdatedAt) >= c.cfg.StallAfter
		if !expired && !stalled {
			continue
		}
		note := ""
		if expired {
			note = c.noWorkerNote(ctx, rec.Cluster)
		}
		unlock := c.e.lock(job)
		err = c.e.mutate(ctx, job, func(r *record, p *Plan) (bool, []transition) {
			if t, ok := r.expire(p, c.e.now(), note); ok {
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

// noWorkerNote says, for a job failing at its deadline, that no running
// worker has its cluster in its configuration, when the replicas bucket says
// so: then every one of its tasks was handed back until the deadline, and the
// job's error should say why rather than only which nodes it waited on.
func (c *Coordinator) noWorkerNote(ctx context.Context, cluster string) string {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	reps, err := topology.LiveReplicas(rctx, c.e.h.Replicas)
	if err != nil {
		return ""
	}
	workers := 0
	for _, r := range reps {
		if slices.Contains(r.Roles, messages.RoleWorker) {
			workers++
			if r.Knows(messages.RoleWorker, cluster) {
				return ""
			}
		}
	}
	if workers == 0 {
		return ""
	}
	return fmt.Sprintf("no running worker has cluster %q in its configuration (%d running); its tasks were handed back until the deadline", cluster, workers)
}
