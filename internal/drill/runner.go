package drill

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/startstop"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
)

// Func carries out the drill a request asks for, under drillID, and
// returns its record; an error with an empty record is a drill that never
// began. The Runner's is Run's (With); tests give their own.
type Func func(ctx context.Context, req messages.DrillRequest, drillID string) (messages.Drill, error)

// With is a Func running Run with o, the request's cluster, backup and
// requester, and the drill ID given.
func With(o Options) Func {
	return func(ctx context.Context, req messages.DrillRequest, drillID string) (messages.Drill, error) {
		o := o
		o.Cluster, o.BackupJob, o.DrillID = req.Cluster, req.Backup, drillID
		o.RequestID, o.RequestedBy = req.RequestID, req.RequestedBy
		return Run(ctx, o)
	}
}

// Clusters are the configured clusters that have a drill section: those
// a Runner started with cfg runs the drills of.
func Clusters(cfg *config.Config) []string {
	var out []string
	for _, cl := range cfg.Clusters {
		if cl.Drill != nil {
			out = append(out, cl.Name)
		}
	}
	return out
}

// RunnerConfig tunes a Runner.
type RunnerConfig struct {
	// Clusters are the clusters whose drills this process can run; a
	// request for another is left for a process that can.
	Clusters []string
	// Run carries each drill out.
	Run Func
	// Catalog is where drills are recorded.
	Catalog jetstream.KeyValue
	Logger  zerolog.Logger
	// Heartbeat is how often a drill in hand tells the server it is still
	// being worked on (default 10s): well within the consumer's AckWait,
	// or the request would be delivered to another process meanwhile.
	Heartbeat time.Duration
	// Timeout bounds one drill; it is then torn down and recorded failed
	// (default 30m).
	Timeout time.Duration
	// UnknownDelay is how long a request for a cluster this process does
	// not drill waits before it is delivered again (default 30s).
	UnknownDelay time.Duration
	// MaxDeliver must match the consumer's (default
	// topology.DrillRunnerMaxDeliver): the last delivery of a request no
	// process took is logged as dropped.
	MaxDeliver int
}

// Runner runs the drill requests of the drill-runner consumer, one at a
// time across the fleet. A request's drill ID is derived from its request
// ID, and a drill already recorded under it is not run again: a request
// delivered twice records one drill. A drill is recorded, succeeded or
// failed, before its request is acknowledged; a failed drill is not tried
// again. A drill interrupted by its process's end is not recorded, and is
// delivered again and run from the start (its first step stops the
// scratch nodes).
type Runner struct {
	js   jetstream.JetStream
	cfg  RunnerConfig
	mine map[string]bool
	life startstop.Service

	mu     sync.Mutex
	cc     jetstream.ConsumeContext
	cancel context.CancelFunc
}

// NewRunner makes a runner.
func NewRunner(js jetstream.JetStream, cfg RunnerConfig) *Runner {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.UnknownDelay <= 0 {
		cfg.UnknownDelay = 30 * time.Second
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = topology.DrillRunnerMaxDeliver
	}
	mine := map[string]bool{}
	for _, c := range cfg.Clusters {
		mine[c] = true
	}
	return &Runner{js: js, cfg: cfg, mine: mine, life: startstop.Service{Name: "drill runner"}}
}

// Start binds to the drill-runner consumer. A runner that was stopped can
// be started again.
func (r *Runner) Start(ctx context.Context) error {
	r.life.Lock()
	defer r.life.Unlock()
	if err := r.life.BeginStart(); err != nil {
		return err
	}
	if err := r.start(ctx); err != nil {
		_ = r.stop(context.WithoutCancel(ctx))
		return err
	}
	r.life.EndStart()
	return nil
}

func (r *Runner) start(ctx context.Context) error {
	cons, err := r.js.Consumer(ctx, messages.StreamJobs, topology.ConsumerDrills)
	if err != nil {
		return err
	}
	// A drill in hand runs on a context of its own, so Stop can let it
	// finish while nothing new is fetched.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.mu.Lock()
	r.cancel = cancel
	r.mu.Unlock()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		done, ok := r.life.Admit()
		if !ok {
			_ = m.NakWithDelay(0)
			return
		}
		defer done()
		r.handle(runCtx, m)
	}, jetstream.PullMaxMessages(1))
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cc = cc
	r.mu.Unlock()
	return nil
}

// Ready reports whether the runner is consuming.
func (r *Runner) Ready() error { return r.life.Ready() }

// Stop stops fetching and waits for the drill in hand. If ctx ends first,
// the drill is cancelled (torn down, not recorded, delivered again) and
// Stop returns ctx's error.
func (r *Runner) Stop(ctx context.Context) error {
	r.life.Lock()
	defer r.life.Unlock()
	return r.stop(ctx)
}

func (r *Runner) stop(ctx context.Context) error {
	if !r.life.BeginStop() {
		return nil
	}
	r.mu.Lock()
	cc, cancel := r.cc, r.cancel
	r.cc, r.cancel = nil, nil
	r.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
	err := r.life.Wait(ctx)
	if cancel != nil {
		cancel()
	}
	if err != nil {
		_ = r.life.Wait(context.WithoutCancel(ctx))
	}
	r.life.EndStop()
	return err
}

func (r *Runner) handle(ctx context.Context, m jetstream.Msg) {
	req, err := messages.DecodeDrillRequest(m.Data())
	if err != nil {
		r.cfg.Logger.Error().Err(err).Msg("drill request refused")
		_ = m.TermWithReason("invalid drill request")
		return
	}
	if id, ok := planner.ScheduledRequestID(req.RequestID, m); ok {
		req.RequestID = id
	}
	id := req.DrillID()
	log := r.cfg.Logger.With().Str("cluster", req.Cluster).Str("request_id", req.RequestID).Str("drill_id", id).Logger()
	if !r.mine[req.Cluster] {
		if meta, err := m.Metadata(); err == nil && int(meta.NumDelivered) >= r.cfg.MaxDeliver {
			log.Error().Msg("drill request dropped: no process that took it has the cluster's drill in its configuration")
		} else {
			log.Warn().Msg("drill request for a cluster without a drill in this configuration; left for a process that has it")
		}
		_ = m.NakWithDelay(r.cfg.UnknownDelay)
		return
	}
	key := messages.DrillKey(req.Cluster, id)
	switch _, err := r.cfg.Catalog.Get(ctx, key); {
	case err == nil:
		log.Info().Msg("drill already recorded; request acknowledged")
		_ = m.Ack()
		return
	case !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted):
		log.Warn().Err(err).Msg("catalog not read; drill request delivered again later")
		_ = m.NakWithDelay(r.cfg.Heartbeat)
		return
	}
	log.Info().Str("requested_by", req.RequestedBy).Str("backup_job", req.Backup).Msg("drill starting")
	rec, err := r.run(ctx, m, req, id)
	if ctx.Err() != nil && (err != nil || rec.Outcome != messages.DrillSucceeded) {
		log.Warn().Msg("drill interrupted by the process's stop; not recorded, it runs again from the start")
		_ = m.NakWithDelay(0)
		return
	}
	if err != nil {
		now := time.Now().UTC()
		rec = messages.Drill{Schema: messages.DrillSchema, Source: req.Cluster, Outcome: messages.DrillFailed, Error: err.Error(),
			Began: now, Ended: now}
	}
	rec.DrillID, rec.RequestID, rec.RequestedBy = id, req.RequestID, req.RequestedBy
	if err := Record(ctx, r.cfg.Catalog, rec); err != nil {
		log.Error().Err(err).Msg("drill not recorded; the request is delivered again")
		_ = m.NakWithDelay(r.cfg.Heartbeat)
		return
	}
	ev := log.Info()
	if rec.Outcome != messages.DrillSucceeded {
		ev = log.Error().Str("error", rec.Error)
	}
	ev.Str("outcome", rec.Outcome).Str("backup_job", rec.BackupJob).Int64("took_ms", rec.Ended.Sub(rec.Began).Milliseconds()).Msg("drill recorded")
	if err := m.Ack(); err != nil {
		log.Warn().Err(err).Msg("drill request not acknowledged; a redelivery finds the drill recorded")
	}
}

// run carries the drill out, telling the server all the while that the
// request is in hand.
func (r *Runner) run(ctx context.Context, m jetstream.Msg, req messages.DrillRequest, id string) (messages.Drill, error) {
	hbCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	})
	defer func() { stop(); wg.Wait() }()
	dctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	return r.cfg.Run(dctx, req, id)
}
