package stack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker"
)

const (
	// attemptTimeout bounds one attempt to bind a role to its consumers: a
	// worker binds six, one request each, which on a loaded machine took
	// more than 5 s.
	attemptTimeout = 20 * time.Second
	// retryPause is the wait between two attempts.
	retryPause = 100 * time.Millisecond
	// stopTimeout bounds the stop of one role at cleanup.
	stopTimeout = 10 * time.Second
)

// Config says how to run each role. Zero values take the defaults in
// comments.
type Config struct {
	// Planner configures every planner. Planner.Config, the configuration
	// requests are planned from, is required.
	Planner planner.PlannerConfig
	// Coordinator configures every coordinator.
	Coordinator planner.CoordinatorConfig
	// Worker configures every worker. Its MaxDeliver defaults to the
	// environment's topology options, so workers and consumers agree on
	// the last delivery.
	Worker worker.Config
	// Drivers run the workers' tasks; StartWorker may give one worker
	// others.
	Drivers worker.Drivers
	// Workers is how many workers Start starts (default 1).
	Workers int
	// Now, when set, is the clock of every role.
	Now func() time.Time
	// Dial opens the connection one role runs on (default: the
	// environment's URL, reconnecting without end, as testenv.Env.Connect
	// does).
	Dial func() (*nats.Conn, error)
	// Retry is how long starting a role is retried (default: one attempt).
	// Right after a server of a cluster stops, binding a consumer fails
	// until its stream has a leader again.
	Retry time.Duration
}

// Stack is the set of roles started for one test.
type Stack struct {
	t   testenv.TB
	cfg Config

	mu           sync.Mutex
	planners     []*Planner
	coordinators []*Coordinator
	workers      []*Worker
	conns        []*nats.Conn
}

// New returns a stack that runs nothing yet on env's server. Every role
// started through it is stopped at t's cleanup, in order.
func New(t testenv.TB, env *testenv.Env, cfg Config) *Stack {
	t.Helper()
	if cfg.Worker.MaxDeliver == nil {
		cfg.Worker.MaxDeliver = env.Opts.MaxDeliverFor
	}
	if cfg.Now != nil {
		cfg.Planner.Now = cfg.Now
		cfg.Coordinator.Now = cfg.Now
		cfg.Worker.Now = cfg.Now
	}
	if cfg.Dial == nil {
		url := env.URL
		cfg.Dial = func() (*nats.Conn, error) {
			return nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		}
	}
	s := &Stack{t: t, cfg: cfg}
	t.Cleanup(s.stop)
	return s
}

// Start starts a planner, a coordinator and cfg.Workers workers on env's
// server, and fails the test if one does not start. Call it from the test's
// goroutine.
func Start(t testenv.TB, env *testenv.Env, cfg Config) *Stack {
	t.Helper()
	s := New(t, env, cfg)
	if _, err := s.StartPlanner(); err != nil {
		t.Fatalf("%v", err)
	}
	if _, err := s.StartCoordinator(); err != nil {
		t.Fatalf("%v", err)
	}
	n := cfg.Workers
	if n == 0 {
		n = 1
	}
	for range n {
		if _, err := s.StartWorker(nil); err != nil {
			t.Fatalf("%v", err)
		}
	}
	return s
}

// Planner is a planner the stack started, on a connection of its own.
type Planner struct {
	*planner.Planner
	nc *nats.Conn
}

// Kill closes the planner's connection abruptly, as a crashed process's
// connection would close, then stops it.
func (p *Planner) Kill(ctx context.Context) error {
	p.nc.Close()
	return p.Stop(ctx)
}

// Coordinator is a coordinator the stack started, on a connection of its
// own.
type Coordinator struct {
	*planner.Coordinator
	nc *nats.Conn
}

// Kill closes the coordinator's connection abruptly, as a crashed process's
// connection would close, then stops it.
func (c *Coordinator) Kill(ctx context.Context) error {
	c.nc.Close()
	return c.Stop(ctx)
}

// Worker is a worker the stack started, on a connection of its own.
type Worker struct {
	*worker.Worker
	nc *nats.Conn
}

// Kill closes the worker's connection abruptly, as a crashed process's
// connection would close, so nothing it held is acknowledged, then cancels
// its running tasks and waits for them to return.
func (w *Worker) Kill(ctx context.Context) error {
	w.nc.Close()
	return w.StopAndCancel(ctx)
}

// StartPlanner starts one more planner. It reports failure as an error, so
// it may be called off the test's goroutine.
func (s *Stack) StartPlanner() (*Planner, error) {
	if len(s.cfg.Planner.Inventory.Clusters) == 0 {
		return nil, errors.New("stack: Config.Planner.Inventory needs a cluster")
	}
	var p *planner.Planner
	nc, err := s.start("planner", func(ctx context.Context, js jetstream.JetStream) error {
		h, err := testenv.Handles(ctx, js)
		if err != nil {
			return err
		}
		p = planner.NewPlanner(js, h, s.cfg.Planner)
		return p.Start(ctx)
	})
	if err != nil {
		return nil, err
	}
	r := &Planner{Planner: p, nc: nc}
	s.mu.Lock()
	s.planners = append(s.planners, r)
	s.mu.Unlock()
	return r, nil
}

// StartCoordinator starts one more coordinator. It reports failure as an
// error, so it may be called off the test's goroutine.
func (s *Stack) StartCoordinator() (*Coordinator, error) {
	var c *planner.Coordinator
	nc, err := s.start("coordinator", func(ctx context.Context, js jetstream.JetStream) error {
		h, err := testenv.Handles(ctx, js)
		if err != nil {
			return err
		}
		c = planner.NewCoordinator(js, h, s.cfg.Coordinator)
		return c.Start(ctx)
	})
	if err != nil {
		return nil, err
	}
	r := &Coordinator{Coordinator: c, nc: nc}
	s.mu.Lock()
	s.coordinators = append(s.coordinators, r)
	s.mu.Unlock()
	return r, nil
}

// StartWorker starts one more worker running its tasks with drivers, or
// with Config.Drivers when drivers is nil. It reports failure as an error,
// so it may be called off the test's goroutine.
func (s *Stack) StartWorker(drivers worker.Drivers) (*Worker, error) {
	if drivers == nil {
		drivers = s.cfg.Drivers
	}
	if drivers == nil {
		return nil, errors.New("stack: a worker needs drivers (Config.Drivers)")
	}
	var w *worker.Worker
	nc, err := s.start("worker", func(ctx context.Context, js jetstream.JetStream) error {
		h, err := testenv.Handles(ctx, js)
		if err != nil {
			return err
		}
		cfg := s.cfg.Worker
		if cfg.Leases == nil && h.Leases != nil {
			// Snapshot tasks take their leases, as in production.
			cfg.Leases = h.Leases
		}
		w = worker.New(js, h.Jobs, drivers, cfg)
		if err := w.Start(ctx); err != nil {
			// A worker bound to some kinds before it failed holds their
			// consumers; let them go before the next attempt.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptTimeout)
			defer cancel()
			_ = w.StopAndCancel(sctx)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r := &Worker{Worker: w, nc: nc}
	s.mu.Lock()
	s.workers = append(s.workers, r)
	s.mu.Unlock()
	return r, nil
}

// start opens a connection for one role and runs bind on it until it
// succeeds or Config.Retry has passed. The connection is closed at cleanup,
// after every role has stopped, or at once when the role did not start.
func (s *Stack) start(role string, bind func(context.Context, jetstream.JetStream) error) (*nats.Conn, error) {
	nc, err := s.cfg.Dial()
	if err != nil {
		return nil, fmt.Errorf("stack: connect %s: %w", role, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("stack: %s: jetstream: %w", role, err)
	}
	deadline := time.Now().Add(s.cfg.Retry)
	for {
		ctx, cancel := context.WithTimeout(s.t.Context(), attemptTimeout)
		err = bind(ctx, js)
		cancel()
		if err == nil {
			s.mu.Lock()
			s.conns = append(s.conns, nc)
			s.mu.Unlock()
			return nc, nil
		}
		if !time.Now().Before(deadline) || s.t.Context().Err() != nil {
			nc.Close()
			return nil, fmt.Errorf("stack: start %s: %w", role, err)
		}
		time.Sleep(retryPause)
	}
}

// Ready joins the Ready errors of every role the stack started: nil when
// all of them run.
func (s *Stack) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, p := range s.planners {
		errs = append(errs, p.Ready())
	}
	for _, c := range s.coordinators {
		errs = append(errs, c.Ready())
	}
	for _, w := range s.workers {
		errs = append(errs, w.Ready())
	}
	return errors.Join(errs...)
}

// stop stops every role in shutdown order, then closes the connections.
// Stopping a role that was killed is a no-op.
func (s *Stack) stop() {
	s.mu.Lock()
	planners, coordinators, workers, conns := s.planners, s.coordinators, s.workers, s.conns
	s.mu.Unlock()
	// The test's context has ended by now; each stop gets its own bound.
	base := context.WithoutCancel(s.t.Context())
	halt := func(role string, stop func(context.Context) error) {
		ctx, cancel := context.WithTimeout(base, stopTimeout)
		defer cancel()
		if err := stop(ctx); err != nil {
			s.t.Logf("stack: stop %s: %v", role, err)
		}
	}
	for _, p := range planners {
		halt("planner", p.Stop)
	}
	for _, w := range workers {
		halt("worker", w.StopAndCancel)
	}
	for _, c := range coordinators {
		halt("coordinator", c.Stop)
	}
	for _, nc := range conns {
		nc.Close()
	}
}
