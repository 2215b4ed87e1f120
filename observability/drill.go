package observability

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// drillMetrics are the restore drills' gauges.
type drillMetrics struct {
	lastSuccess *prometheus.GaugeVec
	maxAge      *prometheus.GaugeVec
	last        map[string]float64 // newest success per cluster, in lastSuccess
}

func newDrillMetrics(m *Metrics) drillMetrics {
	return drillMetrics{
		lastSuccess: m.gauge("drill", "last_success_timestamp_seconds",
			"Unix time at which the newest successful restore drill of a cluster ended (quiesce drill).", "cluster"),
		maxAge: m.gauge("drill", "max_age_seconds",
			"Age a cluster's newest successful restore drill may reach before it counts as stale (alerting threshold; clusters with a drill section).", "cluster"),
		last: map[string]float64{},
	}
}

// SetDrillMaxAge publishes how old a cluster's newest successful drill may
// get before the stale-drill alert fires. Setting it for every cluster with
// a drill also lets the alert catch a cluster that was never drilled.
func (m *Metrics) SetDrillMaxAge(cluster string, d time.Duration) {
	m.drill.maxAge.WithLabelValues(cluster).Set(d.Seconds())
}

// DrillFinished records a drill's end: a successful one moves the cluster's
// last-success gauge forward (never back: records are read in any order).
func (m *Metrics) DrillFinished(cluster string, ok bool, at time.Time) {
	if !ok {
		return
	}
	ts := float64(at.UnixNano()) / 1e9
	m.mu.Lock()
	defer m.mu.Unlock()
	if ts > m.drill.last[cluster] {
		m.drill.last[cluster] = ts
		m.drill.lastSuccess.WithLabelValues(cluster).Set(ts)
	}
}
