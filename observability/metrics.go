// Package observability turns quiesce's hooks into Prometheus metrics, serves
// them with health and readiness endpoints, reads the task backlog from
// JetStream, and sets up logging. The core packages (planner, worker) never
// import a metrics library: they call Observer interfaces that Metrics
// implements.
//
// Every metric is named quiesce_<subsystem>_<name>_<unit>. Labels are bounded:
// cluster, kind, outcome, phase, reason, op, code, and the AWS account and
// region of the configuration. Job, node, volume and
// snapshot IDs never become label values; they belong in log fields.
package observability

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker"
)

// Namespace prefixes every metric quiesce defines.
const Namespace = "quiesce"

// Bucket layouts, each fitted to what it measures.
var (
	// A job takes minutes to hours in production; the small buckets keep the
	// embedded demo (seconds) from landing in one bucket.
	jobBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800}
	// Phases span sub-second (planned) to hours (finishing waits for EBS).
	phaseBuckets = []float64{0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400}
	// The barrier wait is every node's nodetool snapshot: tens of
	// milliseconds on a small demo, seconds to minutes on a large fleet.
	barrierWaitBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	// The release is the coordinator's own work after the last flush result:
	// milliseconds when healthy.
	releaseBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	// The flush spread is how far apart in time the nodes' hard-link
	// snapshots are: the smaller, the closer to a cluster-wide point in time.
	spreadBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	// A task is an SSH command or an EC2 call (sub-second to a minute) or an
	// await (minutes to hours).
	taskBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 7200}
	// A paced EC2 call goes at once while the budget has tokens, else waits
	// its turn: a fraction of a second at 5 a second, minutes when a fleet's
	// wave queues thousands of calls.
	paceWaitBuckets = []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// taskOutcomes are the outcomes worker.Observer.TaskFinished reports.
var taskOutcomes = []string{"succeeded", "failed", "retry", "skipped", "returned", "abandoned"}

// jobOutcomes are the terminal phases a job can finish in.
var jobOutcomes = []messages.Phase{messages.PhaseSucceeded, messages.PhaseFailed, messages.PhaseCancelled}

// leftPhases are the phases planner.Observer.PhaseFinished reports a job
// leaving.
var leftPhases = []messages.Phase{messages.PhasePlanned, messages.PhaseFlushing, messages.PhaseSnapshotting, messages.PhaseFinishing}

// barrierReasons are the reasons planner.Observer.BarrierFailed reports.
var barrierReasons = []planner.BarrierFailure{planner.BarrierNodeFailed, planner.BarrierDeadline, planner.BarrierCancelled}

// Metrics implements planner.Observer and worker.Observer with Prometheus
// collectors, plus the drivers' error hooks (EC2Error, SSHError). One value
// serves every role in a process.
type Metrics struct {
	jobsStarted      *prometheus.CounterVec
	jobsFinished     *prometheus.CounterVec
	jobDuration      *prometheus.HistogramVec
	phaseDuration    *prometheus.HistogramVec
	barrierWait      *prometheus.HistogramVec
	barrierRelease   *prometheus.HistogramVec
	flushSpread      *prometheus.HistogramVec
	barrierFailures  *prometheus.CounterVec
	lastSuccess      *prometheus.GaugeVec
	lastPartial      *prometheus.GaugeVec
	partialBackups   *prometheus.CounterVec
	backupMaxAge     *prometheus.GaugeVec
	rejected         *prometheus.CounterVec
	handedBack       *prometheus.CounterVec
	retired          *prometheus.CounterVec
	tasksStarted     *prometheus.CounterVec
	tasksFinished    *prometheus.CounterVec
	taskErrors       *prometheus.CounterVec
	taskDuration     *prometheus.HistogramVec
	redeliveries     *prometheus.CounterVec
	inFlight         *prometheus.GaugeVec
	snapshotsPending *prometheus.GaugeVec
	snapshotsErrored *prometheus.GaugeVec
	retaken          *prometheus.CounterVec
	ec2Errors        *prometheus.CounterVec
	sshErrors        *prometheus.CounterVec
	paceCalls        *prometheus.CounterVec
	paceWait         *prometheus.HistogramVec
	paceThrottles    *prometheus.CounterVec
	paceTokens       *prometheus.GaugeVec
	paceRate         *prometheus.GaugeVec
	paceLimit        *prometheus.GaugeVec
	// restore and drill: restore jobs and drills (restore.go).
	restore restoreMetrics
	drill   drillMetrics

	collectors []prometheus.Collector
	names      []string

	mu   sync.Mutex
	last map[string]float64 // newest success per cluster (backups) and per "drill\x00"+cluster (drills)
}

var (
	_ planner.Observer = (*Metrics)(nil)
	_ worker.Observer  = (*Metrics)(nil)
)

// NewMetrics builds the metrics and registers them with reg. A process calls
// it once per registry; registering twice on one registry is an error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{last: map[string]float64{}}
	m.jobsStarted = m.counter("job", "started_total",
		"Jobs created from accepted requests.", "cluster")
	m.jobsFinished = m.counter("job", "finished_total",
		"Jobs that reached a terminal phase; outcome is the phase (succeeded, failed, cancelled).", "cluster", "outcome")
	m.jobDuration = m.histogram("job", "duration_seconds",
		"Time from a job's creation to its terminal phase.", jobBuckets, "cluster", "outcome")
	m.phaseDuration = m.histogram("job", "phase_duration_seconds",
		"Time a job spent in a phase before leaving it.", phaseBuckets, "cluster", "phase")
	m.barrierWait = m.histogram("barrier", "wait_seconds",
		"Time from the first flush task published to the release of the snapshot tasks.", barrierWaitBuckets, "cluster")
	m.barrierRelease = m.histogram("barrier", "release_latency_seconds",
		"Time from the last flush result applied to the release of the snapshot tasks.", releaseBuckets, "cluster")
	m.flushSpread = m.histogram("barrier", "flush_spread_seconds",
		"Time between the first and the last node's flush within one job.", spreadBuckets, "cluster")
	m.barrierFailures = m.counter("barrier", "failures_total",
		"Flush barriers that did not release, by reason: failed (a node failed), deadline (the flush phase timed out), cancelled.", "cluster", "reason")
	m.lastSuccess = m.gauge("backup", "last_success_timestamp_seconds",
		"Unix time at which the newest successful backup of a cluster finished.", "cluster")
	m.lastPartial = m.gauge("backup", "last_partial",
		"1 when the newest successful backup of a cluster is partial (its policy allowed nodes that did not flush to be left out), else 0.", "cluster")
	m.partialBackups = m.counter("backup", "partial_total",
		"Successful backups that left out nodes whose flush failed (policies with allow_partial).", "cluster")
	m.backupMaxAge = m.gauge("backup", "max_age_seconds",
		"Age a cluster's newest successful backup may reach before it counts as stale (alerting threshold).", "cluster")
	m.rejected = m.counter("planner", "requests_rejected_total",
		"Job requests refused, by reason class.", "reason")
	m.handedBack = m.counter("planner", "requests_handed_back_total",
		"Job requests for a cluster this planner's configuration lacks, left for a planner that has it (replicas disagree: a rolling update).")
	m.retired = m.counter("retention", "snapshots_retired_total",
		"Volume snapshots deleted by retention.", "cluster")
	m.tasksStarted = m.counter("worker", "tasks_started_total",
		"Task deliveries a worker began.", "kind")
	m.tasksFinished = m.counter("worker", "tasks_finished_total",
		"Task deliveries a worker ended; outcome is succeeded, failed, retry, skipped, returned (handed back at shutdown) or abandoned (its lease lapsed while it stalled).", "kind", "outcome")
	m.taskErrors = m.counter("worker", "task_errors_total",
		"Task deliveries that ended with an error, by error code or class.", "kind", "code")
	m.taskDuration = m.histogram("worker", "task_duration_seconds",
		"Time a worker spent on one task delivery.", taskBuckets, "kind", "outcome")
	m.redeliveries = m.counter("worker", "task_redeliveries_total",
		"Tasks that arrived with a delivery count above one.", "kind")
	m.inFlight = m.gauge("worker", "tasks_in_flight",
		"Task deliveries this worker is running now.", "kind")
	m.snapshotsPending = m.gauge("ebs", "snapshots_pending",
		"Volume snapshots of a cluster's running job still pending, as last seen by an await task.", "cluster")
	m.snapshotsErrored = m.gauge("ebs", "snapshots_errored",
		"Volume snapshots of a cluster's running job in the error state, as last seen by an await task.", "cluster")
	m.retaken = m.counter("worker", "snapshots_retaken_total",
		"Volume snapshots found in error by their task (a copy a crash interrupted, or one the provider failed), deleted and taken again.", "cluster")
	m.ec2Errors = m.counter("ec2", "errors_total",
		"EC2 API calls that returned an error, by operation and AWS error code.", "op", "code")
	m.sshErrors = m.counter("ssh", "errors_total",
		"SSH connections or commands that failed, by error class.", "code")
	m.paceCalls = m.counter("ec2", "pace_calls_total",
		"EC2 call attempts the pacer let through, by account, region and operation.", "account", "region", "op")
	m.paceWait = m.histogram("ec2", "pace_wait_seconds",
		"Time an EC2 call attempt waited for the fleet's request budget.", paceWaitBuckets, "account", "region", "op")
	m.paceThrottles = m.counter("ec2", "pace_throttles_total",
		"EC2 call attempts throttled (RequestLimitExceeded) although paced: the budget is shared with something else, or set above the account's limit.", "account", "region", "op")
	m.paceTokens = m.gauge("ec2", "pace_tokens",
		"Tokens in the fleet's shared bucket as this process last changed it; below zero, calls hold slots reserved ahead.", "account", "region", "op")
	m.paceRate = m.gauge("ec2", "pace_allowed_rate",
		"Calls per second the fleet's budget allows now: the limit, or less after throttles.", "account", "region", "op")
	m.paceLimit = m.gauge("ec2", "pace_limit_rate",
		"Calls per second configured for the budget (ec2.limits, else AWS's default).", "account", "region", "op")
	m.initRestore()
	m.initDrill()

	// Every kind's task series exist from the start at zero, so a dashboard
	// shows an idle worker as 0 rather than nothing, and increase() sees the
	// first failure of a fresh process.
	for _, kind := range messages.Kinds {
		k := string(kind)
		m.inFlight.WithLabelValues(k)
		m.tasksStarted.WithLabelValues(k)
		m.redeliveries.WithLabelValues(k)
		for _, outcome := range taskOutcomes {
			m.tasksFinished.WithLabelValues(k, outcome)
		}
	}

	var errs []error
	for _, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) counter(subsystem, name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help,
	}, labels)
	m.collectors = append(m.collectors, c)
	m.names = append(m.names, prometheus.BuildFQName(Namespace, subsystem, name))
	return c
}

func (m *Metrics) gauge(subsystem, name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help,
	}, labels)
	m.collectors = append(m.collectors, g)
	m.names = append(m.names, prometheus.BuildFQName(Namespace, subsystem, name))
	return g
}

func (m *Metrics) histogram(subsystem, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets,
	}, labels)
	m.collectors = append(m.collectors, h)
	fq := prometheus.BuildFQName(Namespace, subsystem, name)
	m.names = append(m.names, fq+"_bucket", fq+"_sum", fq+"_count")
	return h
}

// JobStarted implements planner.Observer.
func (m *Metrics) JobStarted(cluster string) {
	m.jobsStarted.WithLabelValues(cluster).Inc()
}

// JobFinished implements planner.Observer.
func (m *Metrics) JobFinished(cluster string, phase messages.Phase, d time.Duration) {
	m.jobsFinished.WithLabelValues(cluster, string(phase)).Inc()
	m.jobDuration.WithLabelValues(cluster, string(phase)).Observe(d.Seconds())
}

// PhaseFinished implements planner.Observer.
func (m *Metrics) PhaseFinished(cluster string, phase messages.Phase, d time.Duration) {
	m.phaseDuration.WithLabelValues(cluster, string(phase)).Observe(d.Seconds())
}

// BarrierReleased implements planner.Observer.
func (m *Metrics) BarrierReleased(cluster string, wait, release, spread time.Duration) {
	m.barrierWait.WithLabelValues(cluster).Observe(wait.Seconds())
	m.barrierRelease.WithLabelValues(cluster).Observe(release.Seconds())
	m.flushSpread.WithLabelValues(cluster).Observe(spread.Seconds())
}

// BarrierFailed implements planner.Observer.
func (m *Metrics) BarrierFailed(cluster string, why planner.BarrierFailure) {
	m.barrierFailures.WithLabelValues(cluster, string(why)).Inc()
}

// BackupSucceeded implements planner.Observer.
func (m *Metrics) BackupSucceeded(cluster string, t time.Time, partial bool) {
	if partial {
		m.partialBackups.WithLabelValues(cluster).Inc()
	}
	m.newest(cluster, t, partial)
}

// newest moves a cluster's last-success gauges to a backup finished at t,
// when it is newer than what they show. They only move forward: two
// coordinators, or a late event, must not make a cluster look staler than it
// is.
func (m *Metrics) newest(cluster string, t time.Time, partial bool) {
	ts := float64(t.UnixNano()) / 1e9
	m.mu.Lock()
	defer m.mu.Unlock()
	if ts > m.last[cluster] {
		m.last[cluster] = ts
		m.lastSuccess.WithLabelValues(cluster).Set(ts)
		v := 0.0
		if partial {
			v = 1
		}
		m.lastPartial.WithLabelValues(cluster).Set(v)
	}
}

// RequestRejected implements planner.Observer.
func (m *Metrics) RequestRejected(reason string) {
	m.rejected.WithLabelValues(reason).Inc()
}

// RequestHandedBack implements planner.Observer.
func (m *Metrics) RequestHandedBack() {
	m.handedBack.WithLabelValues().Inc()
}

// SnapshotsRetired implements planner.Observer.
func (m *Metrics) SnapshotsRetired(cluster string, n int) {
	m.retired.WithLabelValues(cluster).Add(float64(n))
}

// TaskStarted implements worker.Observer.
func (m *Metrics) TaskStarted(kind messages.Kind) {
	m.tasksStarted.WithLabelValues(string(kind)).Inc()
	m.inFlight.WithLabelValues(string(kind)).Inc()
}

// TaskFinished implements worker.Observer.
func (m *Metrics) TaskFinished(kind messages.Kind, outcome string, d time.Duration, code string) {
	m.inFlight.WithLabelValues(string(kind)).Dec()
	m.tasksFinished.WithLabelValues(string(kind), outcome).Inc()
	m.taskDuration.WithLabelValues(string(kind), outcome).Observe(d.Seconds())
	if code != "" {
		m.taskErrors.WithLabelValues(string(kind), code).Inc()
	}
}

// TaskRedelivered implements worker.Observer.
func (m *Metrics) TaskRedelivered(kind messages.Kind) {
	m.redeliveries.WithLabelValues(string(kind)).Inc()
}

// SnapshotStates implements worker.Observer.
func (m *Metrics) SnapshotStates(cluster string, pending, errored int) {
	m.snapshotsPending.WithLabelValues(cluster).Set(float64(pending))
	m.snapshotsErrored.WithLabelValues(cluster).Set(float64(errored))
}

// SnapshotRetaken implements worker.Observer.
func (m *Metrics) SnapshotRetaken(cluster string) {
	m.retaken.WithLabelValues(cluster).Inc()
}

// EC2Error counts an EC2 API error; op is the API operation
// ("CreateSnapshot") and code the AWS error code ("RequestLimitExceeded").
func (m *Metrics) EC2Error(op, code string) {
	m.ec2Errors.WithLabelValues(op, code).Inc()
}

// Pace returns the pacer's observer: the EC2 request budget by account,
// region and operation.
func (m *Metrics) Pace() pace.Observer { return paceObserver{m} }

type paceObserver struct{ m *Metrics }

var _ pace.Observer = paceObserver{}

func (o paceObserver) Waited(k pace.Key, d time.Duration) {
	o.m.paceCalls.WithLabelValues(k.Account, k.Region, k.Op).Inc()
	o.m.paceWait.WithLabelValues(k.Account, k.Region, k.Op).Observe(d.Seconds())
	// The budget's throttle count exists, at zero, from its first call:
	// the dashboard shows no throttles rather than no data, and the first
	// throttle is not hidden from rate().
	o.m.paceThrottles.WithLabelValues(k.Account, k.Region, k.Op)
}

func (o paceObserver) Throttled(k pace.Key) {
	o.m.paceThrottles.WithLabelValues(k.Account, k.Region, k.Op).Inc()
}

func (o paceObserver) Changed(k pace.Key, s pace.State) {
	o.m.paceTokens.WithLabelValues(k.Account, k.Region, k.Op).Set(s.Tokens)
	o.m.paceRate.WithLabelValues(k.Account, k.Region, k.Op).Set(s.Rate)
	o.m.paceLimit.WithLabelValues(k.Account, k.Region, k.Op).Set(s.Limit.Rate)
}

// SSHError counts an SSH failure by class, the ssh executor's error codes:
// "connect", "handshake", "auth", "hostkey", "timeout", "session", "exit",
// "config".
func (m *Metrics) SSHError(code string) {
	m.sshErrors.WithLabelValues(code).Inc()
}

// InitCluster makes a configured cluster's job and barrier-failure series
// exist at zero before its first job, so the failed-job and barrier alerts'
// increase() catches the first failure after a restart (a counter series
// born at 1 shows no increase), and publishes maxAge (when positive) as the
// cluster's stale-backup threshold. A process calls it at start for every
// cluster of its config.
func (m *Metrics) InitCluster(cluster string, maxAge time.Duration) {
	m.jobsStarted.WithLabelValues(cluster)
	for _, p := range jobOutcomes {
		m.jobsFinished.WithLabelValues(cluster, string(p))
	}
	for _, r := range barrierReasons {
		m.barrierFailures.WithLabelValues(cluster, string(r))
	}
	m.retired.WithLabelValues(cluster)
	m.retaken.WithLabelValues(cluster)
	m.initClusterRestores(cluster)
	if maxAge > 0 {
		m.SetBackupMaxAge(cluster, maxAge)
	}
}

// InitJobHistograms makes a cluster's job, phase and barrier histograms
// exist, empty, before its first job: a histogram series born at its first
// observation hides that observation from rate(), so the dashboard would
// not show the first job after a restart. A coordinator (which observes
// them) calls it at start for every cluster of its config.
func (m *Metrics) InitJobHistograms(cluster string) {
	for _, p := range jobOutcomes {
		m.jobDuration.WithLabelValues(cluster, string(p))
	}
	for _, p := range leftPhases {
		m.phaseDuration.WithLabelValues(cluster, string(p))
	}
	m.barrierWait.WithLabelValues(cluster)
	m.barrierRelease.WithLabelValues(cluster)
	m.flushSpread.WithLabelValues(cluster)
}

// InitTaskHistograms makes the task duration histogram of every kind and
// outcome exist, empty, before the first task, for the same reason as
// InitJobHistograms. A worker calls it at start.
func (m *Metrics) InitTaskHistograms() {
	for _, kind := range messages.Kinds {
		for _, outcome := range taskOutcomes {
			m.taskDuration.WithLabelValues(string(kind), outcome)
		}
	}
}

// InitRejections makes the rejected-request series of every reason exist at
// zero (a planner calls it with planner.RejectReasons), so the dashboard
// shows no rejections as 0 and increase() sees the first one.
func (m *Metrics) InitRejections(reasons ...string) {
	for _, r := range reasons {
		m.rejected.WithLabelValues(r)
	}
}

// InitSSHErrors makes the SSH error series of every code exist at zero (a
// worker calls it with the ssh executor's codes), so the SSH trust alert's
// increase() catches the first refused host key of a fresh process.
func (m *Metrics) InitSSHErrors(codes ...string) {
	for _, c := range codes {
		m.sshErrors.WithLabelValues(c)
	}
}

// InitEC2Errors makes the EC2 error series of every operation in ops and
// every code in codes exist at zero (a process that calls EC2 does it with
// the operations it calls and the throttling code), so the EC2 panels show
// a healthy fleet as 0 and rate() sees the first throttle.
func (m *Metrics) InitEC2Errors(ops []string, codes ...string) {
	for _, op := range ops {
		for _, c := range codes {
			m.ec2Errors.WithLabelValues(op, c)
		}
	}
}

// SetBackupMaxAge publishes how old a cluster's newest backup may get before
// the stale-backup alert fires. Setting it for every configured cluster also
// lets the alert catch a cluster that has never been backed up.
func (m *Metrics) SetBackupMaxAge(cluster string, d time.Duration) {
	m.backupMaxAge.WithLabelValues(cluster).Set(d.Seconds())
}
