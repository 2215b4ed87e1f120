package observability

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

var _ planner.RestoreObserver = (*Metrics)(nil)

// A restore's phases take seconds (a start, a verification) to hours
// (volumes from large snapshots, files put in place on big nodes).
var restoreBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 57600}

// restoreMetrics are the restore's collectors.
type restoreMetrics struct {
	started       *prometheus.CounterVec
	finished      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	phaseDuration *prometheus.HistogramVec
}

func (m *Metrics) initRestore() {
	m.restore.started = m.counter("restore", "started_total",
		"Restores created from accepted restore requests (dry runs not counted).", "cluster", "target")
	m.restore.finished = m.counter("restore", "finished_total",
		"Restores that reached a terminal phase; outcome is the phase (succeeded, failed, cancelled).", "cluster", "target", "outcome")
	m.restore.duration = m.histogram("restore", "duration_seconds",
		"Time from a restore's creation to its terminal phase.", restoreBuckets, "target", "outcome")
	m.restore.phaseDuration = m.histogram("restore", "phase_duration_seconds",
		"Time a restore spent in a phase before leaving it (volumes, stopping, preparing, starting, verifying).", restoreBuckets, "target", "phase")
	// Every series exists, empty, before the first restore: a panel of a
	// fleet that has not restored yet shows zero, not "No data", and the
	// first restore after a start is not hidden from rate().
	for _, target := range restoreTargets {
		for _, phase := range restoreWorkPhases {
			m.restore.phaseDuration.WithLabelValues(string(target), string(phase))
		}
		for _, phase := range restoreOutcomes {
			m.restore.duration.WithLabelValues(string(target), string(phase))
		}
	}
}

var (
	restoreTargets    = []messages.RestoreTarget{messages.TargetVolumes, messages.TargetInPlace, messages.TargetNewCluster}
	restoreWorkPhases = []messages.RestorePhase{messages.RestorePlanned, messages.RestoreVolumes, messages.RestoreStopping,
		messages.RestorePreparing, messages.RestoreStarting, messages.RestoreVerifying}
	restoreOutcomes = []messages.RestorePhase{messages.RestoreSucceeded, messages.RestoreFailed, messages.RestoreCancelled}
)

// initClusterRestores makes a cluster's restore and drill counters exist at
// zero.
func (m *Metrics) initClusterRestores(cluster string) {
	for _, target := range restoreTargets {
		m.restore.started.WithLabelValues(cluster, string(target))
		for _, phase := range restoreOutcomes {
			m.restore.finished.WithLabelValues(cluster, string(target), string(phase))
		}
	}
	for _, outcome := range []string{"succeeded", "failed"} {
		m.drill.finished.WithLabelValues(cluster, outcome)
	}
}

// RestoreStarted implements planner.RestoreObserver.
func (m *Metrics) RestoreStarted(cluster string, target messages.RestoreTarget) {
	m.restore.started.WithLabelValues(cluster, string(target)).Inc()
}

// RestoreFinished implements planner.RestoreObserver.
func (m *Metrics) RestoreFinished(cluster string, target messages.RestoreTarget, phase messages.RestorePhase, d time.Duration) {
	m.restore.finished.WithLabelValues(cluster, string(target), string(phase)).Inc()
	m.restore.duration.WithLabelValues(string(target), string(phase)).Observe(d.Seconds())
}

// RestorePhaseFinished implements planner.RestoreObserver.
func (m *Metrics) RestorePhaseFinished(target messages.RestoreTarget, phase messages.RestorePhase, d time.Duration) {
	m.restore.phaseDuration.WithLabelValues(string(target), string(phase)).Observe(d.Seconds())
}

// drillMetrics are the restore drills' collectors.
type drillMetrics struct {
	lastSuccess *prometheus.GaugeVec
	finished    *prometheus.CounterVec
	maxAge      *prometheus.GaugeVec
	configured  *prometheus.GaugeVec
}

func (m *Metrics) initDrill() {
	m.drill.lastSuccess = m.gauge("drill", "last_success_timestamp_seconds",
		"Unix time at which the newest successful restore drill of a cluster finished.", "cluster")
	m.drill.finished = m.counter("drill", "finished_total",
		"Restore drills that ended, by outcome (succeeded, failed).", "cluster", "outcome")
	m.drill.maxAge = m.gauge("drill", "max_age_seconds",
		"Age a cluster's newest successful drill may reach before it counts as stale (alerting threshold).", "cluster")
	m.drill.configured = m.gauge("drill", "configured",
		"1 for a cluster whose configuration has a drill section: its drills are expected to succeed.", "cluster")
}

// DrillFinished records a restore drill that just ended. The last-success
// gauge only moves forward, so a late report of an older drill never hides
// a newer one.
func (m *Metrics) DrillFinished(cluster string, ok bool, at time.Time) {
	outcome := "failed"
	if ok {
		outcome = "succeeded"
	}
	m.DrillReplayed(cluster, ok, at)
	m.drill.finished.WithLabelValues(cluster, outcome).Inc()
}

// DrillReplayed records a drill read back from the catalog when a process
// starts: the last-success gauge learns of it, and the finished counter,
// which counts drills ending while this process runs, does not.
func (m *Metrics) DrillReplayed(cluster string, ok bool, at time.Time) {
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := "drill\x00" + cluster
	if v := float64(at.Unix()); v > m.last[key] {
		m.last[key] = v
		m.drill.lastSuccess.WithLabelValues(cluster).Set(v)
	}
}

// SetDrillMaxAge exports the age a cluster's newest successful drill may
// reach before the QuiesceDrillStale alert fires.
func (m *Metrics) SetDrillMaxAge(cluster string, d time.Duration) {
	m.drill.maxAge.WithLabelValues(cluster).Set(d.Seconds())
}

// SetDrillConfigured says that a cluster's configuration has a drill
// section, so that a cluster never drilled successfully is alerted.
func (m *Metrics) SetDrillConfigured(cluster string) {
	m.drill.configured.WithLabelValues(cluster).Set(1)
}
