package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drill"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/observability"
	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
	"github.com/quiesce/quiesce/worker/ssh"
)

// roleOptions tune the roles of one process.
type roleOptions struct {
	concurrency map[messages.Kind]int
	kinds       []messages.Kind
	softStop    time.Duration
	awaitPoll   time.Duration
	sweep       time.Duration
	name        string
}

// node is the set of roles one process runs.
type node struct {
	log         zerolog.Logger
	h           *topology.Handles
	planner     *planner.Planner
	coordinator *planner.Coordinator
	worker      *worker.Worker
	// drills runs drill requests, in a worker process whose configuration
	// has a cluster with a drill section.
	drills  *drill.Runner
	drivers *drivers.Registry
	// presence keeps this process's entry in the replicas bucket.
	presence *topology.Presence
	// stopWatch ends the drill watch and waits for it.
	stopWatch func()
}

func startRoles(ctx context.Context, cfg *config.Config, js jetstream.JetStream, roles []string, log zerolog.Logger,
	metrics *observability.Metrics, o roleOptions) (*node, error) {
	if err := cfg.RequireClusters(); err != nil {
		return nil, withCode(ExitRejected, fmt.Errorf("config: %w: a %s started with it would run beside the fleet knowing nothing to back up; "+
			"give it the fleet's configuration", err, strings.Join(roles, ", ")))
	}
	h, err := topology.Ensure(ctx, js, topologyOptions(cfg))
	if err != nil {
		return nil, withCode(ExitError, fmt.Errorf("topology: %w", err))
	}
	n := &node{log: log, h: h}
	// The process announces itself before any role starts, so a planner
	// deciding whether another replica knows a cluster counts this one.
	self := messages.Replica{Name: o.name, Roles: roles, Clusters: cfg.ClusterNames(), Policies: cfg.PolicyNames(),
		Config: cfg.Fingerprint()}
	if self.Name == "" {
		host, _ := os.Hostname()
		self.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if slices.Contains(roles, messages.RoleWorker) {
		self.Kinds = o.kinds
		if len(self.Kinds) == 0 {
			self.Kinds = messages.Kinds
		}
	}
	n.presence, err = topology.StartPresence(ctx, h.Replicas, self, topology.DefaultReplicaTTL)
	if n.presence == nil {
		return nil, withCode(ExitError, err)
	}
	if err != nil {
		log.Warn().Err(err).Msg("replica not announced yet; retrying")
	}
	log.Info().Str("config", self.Config).Strs("clusters", self.Clusters).Str("replica", n.presence.Replica().ID).Msg("configuration")
	if metrics != nil {
		// Every cluster's series exist from the start, with its stale-backup
		// threshold, and the last backup times survive a restart, so the
		// stale and never-backed-up alerts see every cluster.
		for _, cl := range cfg.Clusters {
			metrics.InitCluster(cl.Name, cl.MaxAge())
		}
		// The series of what this process observes exist at zero, so the
		// alerts' increase() and rate() and the dashboard's see the first
		// event after a start, and a healthy fleet shows 0 errors rather
		// than no data.
		if slices.Contains(roles, "planner") {
			metrics.InitRejections(planner.RejectReasons...)
		}
		if slices.Contains(roles, "coordinator") {
			for _, cl := range cfg.Clusters {
				metrics.InitJobHistograms(cl.Name)
			}
		}
		if slices.Contains(roles, "worker") {
			metrics.InitTaskHistograms()
			metrics.InitSSHErrors(ssh.Codes...)
		}
		if drivers.UsesEC2(cfg) && (slices.Contains(roles, "worker") || slices.Contains(roles, "planner")) {
			metrics.InitEC2Errors(ebs.Operations, ebs.CodeRequestLimitExceeded)
		}
		// Every cluster's drill threshold is exported (the dashboard shows
		// it beside the age); the stale-drill alert needs a drill to have
		// succeeded once, and a cluster with a drill section that never
		// had one is alerted as never drilled.
		for _, cl := range cfg.Clusters {
			metrics.SetDrillMaxAge(cl.Name, drillMaxAge(cl.Drill))
			if cl.Drill != nil {
				metrics.SetDrillConfigured(cl.Name)
			}
		}
		if slices.Contains(roles, "coordinator") {
			if _, err := metrics.LoadLastSuccess(ctx, h.Catalog); err != nil {
				log.Warn().Err(err).Msg("last backup times not loaded from the catalog")
			}
			// Drills run as commands of their own (quiesce drill) or in
			// worker processes (drill schedules); their records in the
			// catalog keep the drill gauge current.
			wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := metrics.WatchDrills(wctx, h.Catalog); err != nil {
					log.Warn().Err(err).Msg("drill results not watched")
				}
			}()
			n.stopWatch = func() { cancel(); <-done }
		}
	}
	var pobs planner.Observer = planner.NopObserver{}
	var wobs worker.Observer = worker.NopObserver{}
	hooks := drivers.Hooks{}
	if metrics != nil {
		pobs, wobs = metrics, metrics
		hooks = drivers.Hooks{EC2Error: metrics.EC2Error, SSHError: metrics.SSHError}
	}
	env := drivers.Env{Ctx: ctx, Log: log, Hooks: hooks}
	if slices.Contains(roles, "worker") && drivers.NeedsHostKeys(cfg) {
		// Pins are shared by the whole fleet through a KV bucket, so every
		// worker trusts the same first key.
		ks, err := ssh.OpenKVKeyStore(ctx, js, cfg.Replicas())
		if err != nil {
			n.stop(ctx)
			return nil, withCode(ExitError, err)
		}
		env.HostKeys = ks
	}
	// Every EC2 call of this process, as of every process of the fleet, is
	// paced by the budgets in the shared bucket.
	var paceObs pace.Observer
	if metrics != nil {
		paceObs = metrics.Pace()
	}
	pacer, err := pace.New(h.Pace, pace.Options{Limit: drivers.PaceLimits(cfg), Observer: paceObs})
	if err != nil {
		n.stop(ctx)
		return nil, withCode(ExitError, err)
	}
	env.Pacer = pacer
	n.drivers = drivers.New(cfg, env)
	popts := planner.Options{Logger: log, Observer: pobs}
	if slices.Contains(roles, "coordinator") {
		n.coordinator = planner.NewCoordinator(js, h, planner.CoordinatorConfig{Options: popts, SweepInterval: o.sweep})
		if err := n.coordinator.Start(ctx); err != nil {
			n.stop(ctx)
			return nil, withCode(ExitError, fmt.Errorf("coordinator: %w", err))
		}
	}
	if slices.Contains(roles, "worker") {
		n.worker = worker.New(js, h.Jobs, n.drivers, worker.Config{
			Name: o.name, Kinds: o.kinds, Concurrency: o.concurrency, Logger: log, Observer: wobs, AwaitPoll: o.awaitPoll,
			SoftStop: o.softStop, Leases: h.Leases,
		})
		if err := n.worker.Start(ctx); err != nil {
			n.stop(ctx)
			return nil, withCode(ExitError, fmt.Errorf("worker: %w", err))
		}
		// A worker of a pool restricted by --kinds runs no drills: the
		// full workers of the fleet do.
		if clusters := drill.Clusters(cfg); len(clusters) > 0 && len(o.kinds) == 0 {
			dlog := log.With().Str("component", "drill-runner").Logger()
			n.drills = drill.NewRunner(js, drill.RunnerConfig{Clusters: clusters, Catalog: h.Catalog, Logger: dlog,
				Heartbeat: topologyOptions(cfg).AckWait / 3,
				Run:       drill.With(drill.Options{Config: cfg, Drivers: n.drivers, Handles: h, Log: &dlog})})
			if err := n.drills.Start(ctx); err != nil {
				n.stop(ctx)
				return nil, withCode(ExitError, fmt.Errorf("drill runner: %w", err))
			}
		}
	}
	if slices.Contains(roles, "planner") {
		n.planner = planner.NewPlanner(js, h, planner.PlannerConfig{Options: popts, Inventory: drivers.Inventory(cfg),
			Discoverer: n.drivers, SyncSchedules: true, DrillSchedules: drivers.DrillSchedules(cfg)})
		if err := n.planner.Start(ctx); err != nil {
			n.stop(ctx)
			return nil, withCode(ExitError, fmt.Errorf("planner: %w", err))
		}
	}
	return n, nil
}

// ready is the readiness check: every role bound to its consumer.
func (n *node) ready() error {
	var errs []error
	if n.planner != nil {
		errs = append(errs, n.planner.Ready())
	}
	if n.coordinator != nil {
		errs = append(errs, n.coordinator.Ready())
	}
	if n.worker != nil {
		errs = append(errs, n.worker.Ready())
	}
	if n.drills != nil {
		errs = append(errs, n.drills.Ready())
	}
	return errors.Join(errs...)
}

// stop shuts the roles down in order: take no new jobs, let running tasks
// finish (up to the soft-stop timeout, then cancel them so they are
// redelivered), then stop applying events.
func (n *node) stop(ctx context.Context) {
	if n.stopWatch != nil {
		n.stopWatch()
	}
	if n.planner != nil {
		_ = n.planner.Stop(ctx)
	}
	if n.drills != nil {
		_ = n.drills.Stop(ctx)
	}
	if n.worker != nil {
		_ = n.worker.Stop(ctx)
	}
	if n.coordinator != nil {
		_ = n.coordinator.Stop(ctx)
	}
	if n.drivers != nil {
		_ = n.drivers.Close()
	}
	if n.presence != nil {
		_ = n.presence.Stop(ctx)
	}
}

func roleCmd(g *globals, use, short string, roles []string) *cobra.Command {
	var (
		concurrency int
		softStop    time.Duration
		kinds       []string
		name        string
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return withCode(ExitRejected, err)
			}
			log = log.With().Str("role", use).Logger()
			var ks []messages.Kind
			for _, k := range kinds {
				if !messages.Kind(k).Valid() {
					return withCode(ExitRejected, fmt.Errorf("--kinds: unknown task kind %q", k))
				}
				ks = append(ks, messages.Kind(k))
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			nc, js, err := g.connect(cfg, use)
			if err != nil {
				return err
			}
			defer nc.Close()
			reg := observability.NewRegistry()
			metrics, err := observability.NewMetrics(reg)
			if err != nil {
				return withCode(ExitError, err)
			}
			if slices.Contains(roles, "worker") || slices.Contains(roles, "coordinator") {
				if err := reg.Register(observability.NewBacklogCollector(ctx, js, observability.BacklogOptions{})); err != nil {
					return withCode(ExitError, err)
				}
			}
			conc := map[messages.Kind]int{}
			if concurrency > 0 {
				for _, k := range messages.Kinds {
					conc[k] = concurrency
				}
			}
			n, err := startRoles(ctx, cfg, js, roles, log, metrics, roleOptions{concurrency: conc, kinds: ks, softStop: softStop, name: name})
			if err != nil {
				return err
			}
			ready := func() error {
				if nc.Status() != nats.CONNECTED {
					return fmt.Errorf("NATS connection is %s", nc.Status())
				}
				return n.ready()
			}
			drift, err := observability.NewConfigDrift(reg, n.h.Replicas, n.presence.Replica(), log)
			if err != nil {
				n.stop(ctx)
				return withCode(ExitError, err)
			}
			go drift.Run(ctx, topology.DefaultReplicaTTL/3)
			serveErr := make(chan error, 1)
			if g.metricsAddr != "" {
				go func() { serveErr <- observability.Serve(ctx, g.metricsAddr, reg, ready, drift.Detail) }()
			}
			log.Info().Strs("roles", roles).Str("nats", g.url(cfg)).Str("metrics_addr", g.metricsAddr).Msg("quiesce started")
			var failed error
			select {
			case <-ctx.Done():
			case err := <-serveErr:
				if err != nil && ctx.Err() == nil {
					log.Error().Err(err).Msg("metrics server stopped")
					// A failure, not a stop: a supervisor (systemd's
					// Restart=on-failure, Kubernetes) starts the process again.
					failed = withCode(ExitError, fmt.Errorf("metrics server: %w", err))
				}
			}
			log.Info().Msg("shutting down")
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), softStop+30*time.Second)
			defer cancel()
			n.stop(sctx)
			_ = nc.Drain()
			log.Info().Msg("stopped")
			return failed
		},
	}
	cmd.Flags().StringVar(&g.metricsAddr, "metrics-addr", ":9464", "listen address for /metrics, /healthz and /readyz (empty: off)")
	if slices.Contains(roles, "worker") {
		cmd.Flags().IntVar(&concurrency, "concurrency", 0, "tasks run at once per kind (default: 256 flush, 64 clear, 16 others)")
		cmd.Flags().StringSliceVar(&kinds, "kinds", nil, "task kinds to execute (default all)")
		cmd.Flags().StringVar(&name, "name", "", "worker name in events (default host-pid)")
	}
	cmd.Flags().DurationVar(&softStop, "soft-stop", 30*time.Second, "on SIGTERM, how long running tasks may finish before they are cancelled")
	return cmd
}

// drillMaxAge is how old a cluster's last successful drill may grow before
// the stale-drill alert fires: the drill section's max_age, default 8 days
// (a weekly drill, and a day to notice it failed).
func drillMaxAge(d *config.Drill) time.Duration {
	if d != nil && d.MaxAge > 0 {
		return time.Duration(d.MaxAge)
	}
	return 8 * 24 * time.Hour
}
