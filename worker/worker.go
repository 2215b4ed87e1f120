package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/internal/startstop"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker/errclass"
)

// ErrShutdown is the cancellation cause of task contexts when the worker
// stops; a task stopped by it is handed back for redelivery, not failed.
var ErrShutdown = errors.New("worker shutting down")

// Config tunes a Worker. Zero values take the defaults in comments.
type Config struct {
	// Name identifies this worker in events (default hostname-pid).
	Name string
	// Kinds to execute (default all).
	Kinds []messages.Kind
	// Concurrency per kind (default 64 flush and clear, 16 others).
	Concurrency map[messages.Kind]int
	// Heartbeat is the InProgress interval (default 10s); keep it well under
	// the consumer's AckWait.
	Heartbeat time.Duration
	// BackoffBase and BackoffMax shape the retry delay of transient errors:
	// base·2^(attempt-1) with jitter, capped (default 1s and 2m).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxDeliver per kind must match the consumers' (default from topology).
	MaxDeliver func(messages.Kind) int
	// AwaitPoll is how often an await task polls snapshot states (default 10s).
	AwaitPoll time.Duration
	// SoftStop is how long Stop lets running tasks finish before it cancels
	// them and hands them back for redelivery (default 30s).
	SoftStop time.Duration
	Logger   zerolog.Logger
	Observer Observer
	Now      func() time.Time
}

func (c Config) concurrency(k messages.Kind) int {
	if n, ok := c.Concurrency[k]; ok && n > 0 {
		return n
	}
	if k == messages.KindFlush || k == messages.KindClear {
		return 64
	}
	return 16
}

// Worker executes tasks.
type Worker struct {
	js      jetstream.JetStream
	jobs    jetstream.KeyValue
	drivers Drivers
	cfg     Config
	log     zerolog.Logger

	life     startstop.Service
	mu       sync.Mutex
	consumes []jetstream.ConsumeContext
	cancel   context.CancelCauseFunc
	// publishFn publishes a result event; tests replace it.
	publishFn func(context.Context, *messages.TaskResult) error
	// restores is the restores bucket, bound on first use.
	restores jetstream.KeyValue
}

// New makes a worker. jobs is the jobs bucket, read to skip tasks of jobs
// that already ended.
func New(js jetstream.JetStream, jobs jetstream.KeyValue, drivers Drivers, cfg Config) *Worker {
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = messages.Kinds
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 2 * time.Minute
	}
	if cfg.MaxDeliver == nil {
		cfg.MaxDeliver = topology.Options{}.MaxDeliverFor
	}
	if cfg.AwaitPoll == 0 {
		cfg.AwaitPoll = 10 * time.Second
	}
	if cfg.SoftStop == 0 {
		cfg.SoftStop = 30 * time.Second
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Worker{js: js, jobs: jobs, drivers: drivers, cfg: cfg,
		log: cfg.Logger.With().Str("worker", cfg.Name).Logger(), life: startstop.Service{Name: "worker"}}
	w.publishFn = w.publish
	return w
}

// Start binds to each kind's durable consumer and begins pulling. Tasks run
// until Stop or StopAndCancel; a stopped worker can be started again.
func (w *Worker) Start(ctx context.Context) error {
	w.life.Lock()
	defer w.life.Unlock()
	if err := w.life.BeginStart(); err != nil {
		return err
	}
	if err := w.start(ctx); err != nil {
		_ = w.stopAndCancel(context.WithoutCancel(ctx))
		return err
	}
	w.life.EndStart()
	return nil
}

func (w *Worker) start(ctx context.Context) error {
	// Task contexts descend from a context of their own, not the caller's, so
	// Stop can let running tasks finish while nothing new is fetched.
	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	w.mu.Lock()
	w.cancel = cancel
	w.mu.Unlock()
	for _, kind := range w.cfg.Kinds {
		cons, err := w.js.Consumer(ctx, messages.StreamTasks, topology.TaskConsumer(kind))
		if err != nil {
			return fmt.Errorf("bind %s consumer: %w", kind, err)
		}
		n := w.cfg.concurrency(kind)
		sem := make(chan struct{}, n)
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			sem <- struct{}{}
			done, ok := w.life.Admit()
			if !ok {
				<-sem
				// Fetched after Stop began: hand it straight back.
				_ = msg.NakWithDelay(0)
				return
			}
			go func() {
				defer func() { <-sem; done() }()
				w.handle(runCtx, kind, msg)
			}()
		}, jetstream.PullMaxMessages(n), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				w.log.Debug().Err(err).Str("task_kind", string(kind)).Msg("consume")
			}
		}))
		if err != nil {
			return fmt.Errorf("consume %s: %w", kind, err)
		}
		w.mu.Lock()
		w.consumes = append(w.consumes, cc)
		w.mu.Unlock()
	}
	return nil
}

// Ready reports whether the worker is bound to its consumers.
func (w *Worker) Ready() error { return w.life.Ready() }

// beginStop stops fetching; it reports false when there is nothing to stop.
func (w *Worker) beginStop() (context.CancelCauseFunc, bool) {
	if !w.life.BeginStop() {
		return nil, false
	}
	w.mu.Lock()
	consumes, cancel := w.consumes, w.cancel
	w.consumes, w.cancel = nil, nil
	w.mu.Unlock()
	for _, cc := range consumes {
		cc.Stop()
	}
	if cancel == nil {
		cancel = func(error) {}
	}
	return cancel, true
}

// Stop stops fetching and lets running tasks finish for the configured
// soft-stop time. Then, or when ctx ends first, running tasks are cancelled
// with ErrShutdown and handed back for redelivery; Stop returns once they
// have returned, with ctx's error if ctx ended.
func (w *Worker) Stop(ctx context.Context) error {
	w.life.Lock()
	defer w.life.Unlock()
	cancel, ok := w.beginStop()
	if !ok {
		return nil
	}
	soft, cancelSoft := context.WithTimeout(ctx, w.cfg.SoftStop)
	defer cancelSoft()
	waitErr := w.life.Wait(soft)
	cancel(ErrShutdown)
	if waitErr != nil {
		w.log.Warn().Str("soft_stop", w.cfg.SoftStop.String()).Msg("running tasks cancelled and handed back for redelivery")
		_ = w.life.Wait(context.WithoutCancel(ctx))
	}
	w.life.EndStop()
	return ctx.Err()
}

// StopAndCancel stops fetching, cancels running tasks at once and waits for
// them to hand their messages back.
func (w *Worker) StopAndCancel(ctx context.Context) error {
	w.life.Lock()
	defer w.life.Unlock()
	return w.stopAndCancel(ctx)
}

func (w *Worker) stopAndCancel(ctx context.Context) error {
	cancel, ok := w.beginStop()
	if !ok {
		return nil
	}
	cancel(ErrShutdown)
	err := w.life.Wait(ctx)
	if err != nil {
		_ = w.life.Wait(context.WithoutCancel(ctx))
	}
	w.life.EndStop()
	return err
}

// outcome is the runtime's decision about one delivery.
type outcome string

const (
	outcomeSucceeded outcome = "succeeded"
	outcomeFailed    outcome = "failed"
	outcomeRetry     outcome = "retry"
	outcomeSkipped   outcome = "skipped"
	outcomeReturned  outcome = "returned"
)

type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

func (w *Worker) handle(ctx context.Context, kind messages.Kind, msg jetstream.Msg) {
	start := w.cfg.Now()
	meta, err := msg.Metadata()
	attempt := 1
	if err == nil {
		attempt = int(meta.NumDelivered)
	}
	var task messages.Task
	if err := json.Unmarshal(msg.Data(), &task); err != nil || task.Schema != messages.TaskSchema || task.Kind != kind {
		w.log.Error().Err(err).Str("subject", msg.Subject()).Msg("undecodable task terminated")
		_ = msg.TermWithReason("undecodable task")
		w.cfg.Observer.TaskStarted(kind)
		w.cfg.Observer.TaskFinished(kind, string(outcomeFailed), 0, "undecodable")
		return
	}
	log := w.log.With().Str("task_id", task.ID).Str("task_kind", string(kind)).
		Str("job_id", task.JobID).Str("cluster", task.Cluster).Int("attempt", attempt).Logger()
	w.cfg.Observer.TaskStarted(kind)
	if attempt > 1 {
		w.cfg.Observer.TaskRedelivered(kind)
	}

	taskCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if !task.Deadline.IsZero() {
		var c2 context.CancelFunc
		taskCtx, c2 = context.WithDeadlineCause(taskCtx, task.Deadline, errDeadline)
		defer c2()
	}
	stopBeat := w.heartbeat(msg)
	res, herr := w.run(taskCtx, log, task, attempt)
	stopBeat()

	result := messages.TaskResult{
		Schema: messages.TaskResultSchema, TaskID: task.ID, JobID: task.JobID, Kind: kind,
		Cluster: task.Cluster, Target: task.Target, Attempt: attempt, Worker: w.cfg.Name,
		StartedAt: start, FinishedAt: w.cfg.Now(),
	}
	if res != nil {
		result.Snapshots, result.Deleted, result.Retired, result.Retained, result.Warnings = res.Snapshots, res.Deleted, res.Retired, res.Retained, res.Warnings
		result.Listing, result.Flush, result.Clear, result.Restore = res.Listing, res.Flush, res.Clear, res.Restore
	}
	dur := result.FinishedAt.Sub(start)
	deadlineHit := errors.Is(context.Cause(taskCtx), errDeadline)
	out, code := w.decide(ctx, log, msg, &result, herr, attempt, kind, deadlineHit)
	w.cfg.Observer.TaskFinished(kind, string(out), dur, code)
}

var errDeadline = errors.New("task deadline passed")

// errSkip is returned by a handler for a task whose job already ended.
var errSkip = errors.New("job already ended")

// decide is the one place that turns a handler's error into an ack, a
// terminate or a delayed nak, and publishes the task's result event.
func (w *Worker) decide(ctx context.Context, log zerolog.Logger, msg jetstream.Msg, result *messages.TaskResult, herr error, attempt int, kind messages.Kind, deadlineHit bool) (outcome, string) {
	code := errclass.Code(herr)
	var pe *panicError
	isPanic := errors.As(herr, &pe)
	if isPanic {
		log.Error().Str("stack", string(pe.stack)).Interface("panic", pe.value).Msg("task panicked")
		code = "panic"
	}
	switch {
	case herr == nil:
		result.Outcome = messages.OutcomeSucceeded
		if err := w.publishFn(ctx, result); err != nil {
			log.Warn().Err(err).Msg("result not published; task returned for redelivery")
			_ = msg.NakWithDelay(w.cfg.BackoffBase)
			return outcomeRetry, "publish"
		}
		if err := msg.DoubleAck(ctx); err != nil {
			log.Warn().Err(err).Msg("ack failed; the task may run again")
		}
		log.Debug().Msg("task succeeded")
		return outcomeSucceeded, ""
	case errors.Is(herr, errSkip):
		_ = msg.Ack()
		log.Info().Msg("task skipped: its job already ended")
		return outcomeSkipped, ""
	case errors.Is(context.Cause(ctx), ErrShutdown):
		// The worker is stopping, not the task failing: hand it back.
		_ = msg.NakWithDelay(0)
		return outcomeReturned, "shutdown"
	}

	result.Outcome = messages.OutcomeFailed
	result.Error = herr.Error()
	result.Stderr = truncate(errclass.Stderr(herr), 4096)
	maxDeliver := w.cfg.MaxDeliver(kind)
	switch {
	case errclass.IsPermanent(herr):
		result.ErrorClass = messages.ClassPermanent
	case deadlineHit:
		result.ErrorClass = messages.ClassDeadline
	case maxDeliver > 0 && attempt >= maxDeliver:
		result.ErrorClass = messages.ClassExhausted
		if isPanic {
			result.ErrorClass = messages.ClassPanic
		}
	default:
		delay := w.backoff(attempt)
		if d, ok := errclass.Delay(herr); ok && d > delay {
			delay = d
		}
		log.Warn().Err(herr).Dur("retry_in", delay).Msg("task failed; will retry")
		_ = msg.NakWithDelay(delay)
		if code == "" {
			code = "transient"
		}
		return outcomeRetry, code
	}
	if code == "" {
		code = string(result.ErrorClass)
	}
	if err := w.publishFn(ctx, result); err != nil {
		log.Warn().Err(err).Msg("failure not published; task returned for redelivery")
		_ = msg.NakWithDelay(w.cfg.BackoffBase)
		return outcomeRetry, "publish"
	}
	_ = msg.TermWithReason(string(result.ErrorClass) + ": " + truncate(result.Error, 200))
	log.Error().Err(herr).Str("error_class", string(result.ErrorClass)).Str("stderr", result.Stderr).Msg("task failed")
	return outcomeFailed, code
}

func (w *Worker) backoff(attempt int) time.Duration {
	d := w.cfg.BackoffBase << min(attempt-1, 20)
	if d > w.cfg.BackoffMax || d <= 0 {
		d = w.cfg.BackoffMax
	}
	// Full jitter in [d/2, d): spreads a thundering herd of retries.
	return d/2 + rand.N(d/2+1)
}

func (w *Worker) publish(ctx context.Context, r *messages.TaskResult) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	id := r.TaskID + "." + string(r.Outcome)
	if r.Kind == messages.KindFlush && r.Outcome == messages.OutcomeSucceeded && r.Attempt > 1 {
		// A flush that ran again may have re-created a tag already
		// cleared; its success must reach the coordinator, not be dropped
		// as a duplicate of the first.
		id += "." + strconv.Itoa(r.Attempt)
	}
	_, err = w.js.Publish(pctx, messages.SubjectTaskEvent(r.JobID, r.Kind), data, jetstream.WithMsgID(id))
	return err
}

// heartbeat tells the server the task is still being worked on, so a long
// snapshot is not redelivered to a second worker while the first runs.
func (w *Worker) heartbeat(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(w.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// run executes the task's handler, turning a panic into an error.
func (w *Worker) run(ctx context.Context, log zerolog.Logger, task messages.Task, attempt int) (res *taskOutput, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return w.dispatch(ctx, log, task, attempt)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
