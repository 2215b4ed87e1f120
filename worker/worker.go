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
	// Concurrency per kind (default 256 flush, 64 clear, 16 others). A
	// flush waiting for its fire time holds one slot and one idle SSH
	// connection, so one worker can hold a whole cluster of 256 nodes armed.
	Concurrency map[messages.Kind]int
	// Heartbeat is the InProgress interval (default 10s). A consumer whose
	// AckWait is shorter than three heartbeats gets one every third of it.
	Heartbeat time.Duration
	// BackoffBase and BackoffMax shape the retry delay of transient errors:
	// base·2^(attempt-1) with jitter, capped (default 1s and 2m).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxDeliver per kind must match the consumers' (default: read from
	// each consumer when the worker binds to it).
	MaxDeliver func(messages.Kind) int
	// AwaitPoll is how often an await task polls snapshot states (default 10s).
	AwaitPoll time.Duration
	// SoftStop is how long Stop lets running tasks finish before it cancels
	// them and hands them back for redelivery (default 30s).
	SoftStop time.Duration
	// Agent makes this worker the agent of one node: it takes only that
	// node's flush, clear and hook tasks, from the node's own consumer
	// (topology.EnsureAgent), and publishes its results on subjects naming
	// the node (messages.AgentSubject). Kinds and Concurrency are ignored.
	Agent *Agent
	// Leases is the bucket of task leases (topology.Handles.Leases). With
	// it, a snapshot task creates only while its execution holds the task's
	// lease, so one stalled past its ack wait never creates a second
	// snapshot beside its redelivery's. Its TTL is the lease's lifetime.
	Leases   LeaseStore
	Logger   zerolog.Logger
	Observer Observer
	Now      func() time.Time
}

// Agent names the node an agent worker serves.
type Agent struct {
	Cluster string
	Node    string
	// Concurrency bounds the node's tasks run at once (default 4).
	Concurrency int
}

// agentKinds are the kinds an agent takes.
func agentKind(k messages.Kind) bool {
	return k == messages.KindFlush || k == messages.KindClear || k == messages.KindHook
}

// DefaultFlushConcurrency is how many flushes a worker runs at once unless
// configured: every node of a cluster this large can be connected and
// waiting for the fire time on one worker.
const DefaultFlushConcurrency = 256

func (c Config) concurrency(k messages.Kind) int {
	if n, ok := c.Concurrency[k]; ok && n > 0 {
		return n
	}
	switch k {
	case messages.KindFlush:
		return DefaultFlushConcurrency
	case messages.KindClear:
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
	// limits are each kind's heartbeat and delivery limit, from its
	// consumer's configuration.
	limits map[messages.Kind]limits
	// leases hands out task leases, once Start read the bucket's TTL.
	leases *leaser
	// publishFn publishes a result event, publishRetryFn a retry event;
	// tests replace them.
	publishFn      func(context.Context, *messages.TaskResult) error
	publishRetryFn func(context.Context, *messages.TaskRetry) error
	// restores is the restores bucket, bound on first use.
	restores jetstream.KeyValue
	// phases shares the reads of a job's phase among its tasks.
	phases phaseReads
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
	w.publishRetryFn = w.publishRetry
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
	if w.cfg.Leases != nil {
		st, err := w.cfg.Leases.Status(ctx)
		if err != nil {
			return fmt.Errorf("lease bucket: %w", err)
		}
		if st.TTL() <= 0 {
			return fmt.Errorf("lease bucket %s has no TTL: a lease would never lapse", st.Bucket())
		}
		w.mu.Lock()
		w.leases = &leaser{store: w.cfg.Leases, ttl: st.TTL(), holder: w.cfg.Name, now: time.Now}
		w.mu.Unlock()
	}
	type binding struct {
		consumer string
		kind     messages.Kind // "" for an agent's consumer: every node kind
		n        int
	}
	var bindings []binding
	if a := w.cfg.Agent; a != nil {
		bindings = append(bindings, binding{consumer: topology.AgentConsumer(a.Cluster, a.Node), n: max(a.Concurrency, 1)})
		if a.Concurrency == 0 {
			bindings[0].n = 4
		}
	} else {
		for _, kind := range w.cfg.Kinds {
			bindings = append(bindings, binding{consumer: topology.TaskConsumer(kind), kind: kind, n: w.cfg.concurrency(kind)})
		}
	}
	for _, b := range bindings {
		kind := b.kind
		cons, err := w.js.Consumer(ctx, messages.StreamTasks, b.consumer)
		if err != nil {
			return fmt.Errorf("bind consumer %s: %w", b.consumer, err)
		}
		info := cons.CachedInfo()
		if kind == "" {
			for _, k := range []messages.Kind{messages.KindFlush, messages.KindClear, messages.KindHook} {
				w.setLimits(k, info)
			}
		} else {
			w.setLimits(kind, info)
		}
		n := b.n
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

// limits are what the runtime takes from a kind's consumer.
type limits struct {
	heartbeat  time.Duration
	maxDeliver int
}

// setLimits keeps the heartbeat and delivery limit that fit the consumer:
// a heartbeat at most a third of its AckWait, so one lost InProgress never
// lets a running task be redelivered.
func (w *Worker) setLimits(kind messages.Kind, info *jetstream.ConsumerInfo) {
	l := limits{heartbeat: w.cfg.Heartbeat}
	if info != nil {
		if third := info.Config.AckWait / 3; third > 0 && third < l.heartbeat {
			l.heartbeat = third
		}
		l.maxDeliver = info.Config.MaxDeliver
	}
	if w.cfg.MaxDeliver != nil {
		l.maxDeliver = w.cfg.MaxDeliver(kind)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limits == nil {
		w.limits = map[messages.Kind]limits{}
	}
	w.limits[kind] = l
}

func (w *Worker) limitsOf(kind messages.Kind) limits {
	w.mu.Lock()
	defer w.mu.Unlock()
	if l, ok := w.limits[kind]; ok {
		return l
	}
	l := limits{heartbeat: w.cfg.Heartbeat, maxDeliver: topology.Options{}.MaxDeliverFor(kind)}
	if w.cfg.MaxDeliver != nil {
		l.maxDeliver = w.cfg.MaxDeliver(kind)
	}
	return l
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
		w.log.Warn().Int64("soft_stop_ms", w.cfg.SoftStop.Milliseconds()).Msg("running tasks cancelled and handed back for redelivery")
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
	// outcomeAbandoned: the execution lost the task's lease; the delivery
	// is another execution's now, and is left alone.
	outcomeAbandoned outcome = "abandoned"
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
	err = json.Unmarshal(msg.Data(), &task)
	if kind == "" && err == nil {
		kind = task.Kind
	}
	if err != nil || task.Schema != messages.TaskSchema || task.Kind != kind {
		w.log.Error().Err(err).Str("subject", msg.Subject()).Msg("undecodable task terminated")
		_ = msg.TermWithReason("undecodable task")
		w.cfg.Observer.TaskStarted(kind)
		w.cfg.Observer.TaskFinished(kind, string(outcomeFailed), 0, "undecodable")
		return
	}
	if a := w.cfg.Agent; a != nil && (!agentKind(task.Kind) || task.Cluster != a.Cluster || task.Node == nil || task.Node.Name != a.Node) {
		// Only a publisher that broke the topology's rules puts another
		// node's task on this node's subject: never run it.
		w.log.Error().Str("subject", msg.Subject()).Str("task_id", task.ID).Msg("task not for this agent's node terminated")
		_ = msg.TermWithReason("not a task of this agent's node")
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
	stopBeat := w.heartbeat(msg, w.limitsOf(kind).heartbeat)
	var (
		res   *taskOutput
		herr  error
		fence func(context.Context) error
		hold  *lease
	)
	if ls := w.leaser(); ls != nil && leased(kind) {
		// Before the task looks for its earlier work: looking and creating
		// both happen under the lease.
		hold, herr = ls.acquire(taskCtx, task.ID, attempt)
		if hold != nil {
			fence = hold.Fence
		}
	}
	if herr == nil {
		res, herr = w.run(taskCtx, log, task, attempt, fence)
	}
	if hold != nil {
		hold.release(ctx)
	}
	stopBeat()

	result := messages.TaskResult{
		Schema: messages.TaskResultSchema, TaskID: task.ID, JobID: task.JobID, Kind: kind,
		Cluster: task.Cluster, Target: task.Target, Attempt: attempt, Worker: w.cfg.Name,
		StartedAt: start, FinishedAt: w.cfg.Now(),
	}
	if res != nil {
		result.Snapshots, result.Deleted, result.Retired, result.Retained, result.Warnings = res.Snapshots, res.Deleted, res.Retired, res.Retained, res.Warnings
		result.Listing, result.Flush, result.Clear = res.Listing, res.Flush, res.Clear
		result.Trimmed = res.Trimmed
		result.Output, result.ExitCode = res.Output, res.ExitCode
		result.Restore = res.Restore
	}
	dur := result.FinishedAt.Sub(start)
	deadlineHit := errors.Is(context.Cause(taskCtx), errDeadline)
	out, code := w.decide(ctx, log, msg, &result, herr, attempt, kind, deadlineHit)
	w.cfg.Observer.TaskFinished(kind, string(out), dur, code)
}

var errDeadline = errors.New("task deadline passed")

func (w *Worker) leaser() *leaser {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leases
}

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
		// The result is stored, so the ack is sent without waiting for
		// the server to confirm it. A lost ack, as likely either way, runs
		// the task again, which every kind tolerates: a flush finds its
		// intent and its tag (the coordinator counts the node once), a
		// snapshot finds its snapshots by task tag, a clear clears an
		// absent tag, and a hook's command runs again as on any
		// redelivery. A confirmation would only keep the task's slot for
		// one more round trip.
		if err := msg.Ack(); err != nil {
			log.Warn().Err(err).Msg("ack not sent; the task may run again")
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
	case errors.Is(herr, ErrLeaseLost):
		// Stalled past the lease: the delivery was, or will be, handed to
		// another execution, which an ack, a nak or a failure from here
		// would disturb. Left alone, it is redelivered if no one has it.
		log.Warn().Msg("task lease lost while stalled; created nothing, leaving the task to its other execution")
		return outcomeAbandoned, "lease_lost"
	case errors.Is(herr, ErrUnknownCluster):
		return w.handBack(ctx, log, msg, result, kind, "unknown_cluster",
			"cluster not in this worker's configuration; task left for a worker that has it")
	case errors.Is(herr, errControlPlane) && !deadlineHit:
		// quiesce's own NATS did not answer (a server restarting, a
		// partition): nothing is wrong with the task, so it costs none of
		// its deliveries. The job's deadlines bound how long it goes on.
		return w.handBack(ctx, log, msg, result, kind, "control_plane",
			"NATS did not answer the task's own bookkeeping; task handed back for a later attempt")
	}

	result.Outcome = messages.OutcomeFailed
	// A driver's error or a node's stderr may be of any length; the event,
	// and the job record after it, keep a bounded part.
	result.Error = messages.Bound(herr.Error(), maxResultError)
	result.Stderr = messages.Bound(errclass.Stderr(herr), maxResultStderr)
	maxDeliver := w.limitsOf(kind).maxDeliver
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
		retry := messages.TaskRetry{
			Schema: messages.TaskRetrySchema, TaskID: result.TaskID, JobID: result.JobID, Kind: kind,
			Cluster: result.Cluster, Target: result.Target, Attempt: attempt, MaxAttempts: max(maxDeliver, 0),
			Error: messages.Bound(herr.Error(), 1000), Code: code, Worker: w.cfg.Name,
			FailedAt: result.FinishedAt, NextAttemptAt: result.FinishedAt.Add(delay),
		}
		// Reported before the task is handed back, so the report is not
		// overtaken by the next attempt's result; a report that cannot be
		// published costs only the operator's view of the retry.
		if err := w.publishRetryFn(ctx, &retry); err != nil {
			log.Debug().Err(err).Msg("retry not reported")
		}
		log.Warn().Err(herr).Int64("retry_in_ms", delay.Milliseconds()).Time("next_attempt_at", retry.NextAttemptAt).
			Msg("task failed; will retry")
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
	_ = msg.TermWithReason(string(result.ErrorClass) + ": " + messages.Bound(result.Error, 200))
	log.Error().Err(herr).Str("error_class", string(result.ErrorClass)).Str("stderr", result.Stderr).Msg("task failed")
	return outcomeFailed, code
}

// maxHandbacksAfterEnd bounds the copies made of a clean-up task (a clear,
// a clean-up) of an ended job whose cluster no worker that saw it knows.
const maxHandbacksAfterEnd = 10

// handBack returns a task of a cluster this worker's configuration lacks for
// a worker that has it: never a failure, and never counted against the
// task's retries (topology.HandBack copies it before its deliveries run
// out). A task that would create something for a job that already ended is
// dropped; one that cleans up after it is handed back a bounded number of
// times. If no worker has the cluster, the job fails at its phase deadline,
// and the coordinator says why.
func (w *Worker) handBack(ctx context.Context, log zerolog.Logger, msg jetstream.Msg, result *messages.TaskResult, kind messages.Kind, code, why string) (outcome, string) {
	if w.jobEnded(ctx, result.JobID) {
		cleanup := kind == messages.KindClear || kind == messages.KindCleanup || kind == messages.KindRetention
		if !cleanup || topology.Handbacks(msg) >= maxHandbacksAfterEnd {
			_ = msg.Ack()
			log.Error().Str("cluster", result.Cluster).Str("code", code).Int("handbacks", topology.Handbacks(msg)).
				Msg("task dropped: its job ended, and no worker could take it (" + why + ")")
			return outcomeSkipped, code
		}
	}
	delay := topology.HandbackDelay(msg, w.cfg.BackoffBase, w.cfg.BackoffMax)
	copied, err := topology.HandBack(ctx, w.js, msg, w.limitsOf(kind).maxDeliver, delay, nil)
	ev := log.Warn()
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Str("cluster", result.Cluster).Str("code", code).Bool("copied", copied).Int64("retry_in_ms", delay.Milliseconds()).
		Msg(why)
	return outcomeReturned, code
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
	_, err = w.js.Publish(pctx, w.eventSubject(messages.SubjectTaskEvent(r.JobID, r.Kind)), data, jetstream.WithMsgID(id))
	return err
}

// eventSubject is where this worker publishes an event: an agent names its
// node after the subject, which its NATS permissions allow for its own node
// only.
func (w *Worker) eventSubject(subject string) string {
	if a := w.cfg.Agent; a != nil {
		return messages.AgentSubject(subject, a.Node)
	}
	return subject
}

// retryReportTimeout bounds the publish of a retry event, which delays the
// task's hand-back.
const retryReportTimeout = 2 * time.Second

func (w *Worker) publishRetry(ctx context.Context, r *messages.TaskRetry) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), retryReportTimeout)
	defer cancel()
	id := r.TaskID + ".retry." + strconv.Itoa(r.Attempt)
	_, err = w.js.Publish(pctx, w.eventSubject(messages.SubjectTaskRetry(r.JobID, r.Kind)), data, jetstream.WithMsgID(id))
	return err
}

// heartbeat tells the server the task is still being worked on, so a long
// snapshot is not redelivered to a second worker while the first runs.
func (w *Worker) heartbeat(msg jetstream.Msg, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
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
func (w *Worker) run(ctx context.Context, log zerolog.Logger, task messages.Task, attempt int, fence func(context.Context) error) (res *taskOutput, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return w.dispatch(ctx, log, task, attempt, fence)
}

// Bounds of a failed task's result event.
const (
	maxResultError  = 4096
	maxResultStderr = 4096
)
