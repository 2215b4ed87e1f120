package observability

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/planner"
)

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	return m, reg
}

// exercise calls every hook once, so every vector has a child to gather.
func exercise(m *Metrics) {
	m.JobStarted("c1")
	m.JobFinished("c1", messages.PhaseSucceeded, 90*time.Second)
	m.PhaseFinished("c1", messages.PhaseFlushing, 2*time.Second)
	m.BarrierReleased("c1", 1500*time.Millisecond, 3*time.Millisecond, 40*time.Millisecond)
	m.BarrierFailed("c1", planner.BarrierDeadline)
	m.BackupSucceeded("c1", time.Unix(1_700_000_000, 0), false)
	m.SetBackupMaxAge("c1", 26*time.Hour)
	m.RequestRejected("invalid")
	m.SnapshotsRetired("c1", 4)
	m.TaskStarted(messages.KindFlush)
	m.TaskFinished(messages.KindFlush, "failed", 200*time.Millisecond, "permanent")
	m.TaskRedelivered(messages.KindFlush)
	m.SnapshotStates("c1", 3, 1)
	m.SnapshotRetaken("c1")
	m.EC2Error("CreateSnapshot", "RequestLimitExceeded")
	m.SSHError("host_key")
	k := pace.Key{Account: "123456789012", Region: "us-east-1", Op: "CreateSnapshots"}
	m.Pace().Waited(k, 200*time.Millisecond)
	m.Pace().Throttled(k)
	m.Pace().Changed(k, pace.State{Tokens: -3, Rate: 3.5, Limit: pace.Limit{Rate: 5, Burst: 100}})
	m.RestoreStarted("c1", messages.TargetInPlace)
	m.RestoreFinished("c1", messages.TargetInPlace, messages.RestoreSucceeded, 3*time.Minute)
	m.RestorePhaseFinished(messages.TargetInPlace, messages.RestorePreparing, 40*time.Second)
	m.DrillFinished("c1", true, time.Unix(1_700_000_000, 0))
	m.SetDrillMaxAge("c1", 8*24*time.Hour)
}

// The pacer's hooks land in series by account, region and operation.
func TestMetricsPaceHooks(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	k := pace.Key{Account: "123456789012", Region: "eu-west-1", Op: "DeleteSnapshot"}
	m.Pace().Waited(k, time.Second)
	m.Pace().Waited(k, 0)
	m.Pace().Throttled(k)
	m.Pace().Changed(k, pace.State{Tokens: 12.5, Rate: 2.5, Limit: pace.Limit{Rate: 5, Burst: 100}})
	labels := []string{"123456789012", "eu-west-1", "DeleteSnapshot"}
	require.Equal(t, 2.0, testutil.ToFloat64(m.paceCalls.WithLabelValues(labels...)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.paceThrottles.WithLabelValues(labels...)))
	require.Equal(t, 12.5, testutil.ToFloat64(m.paceTokens.WithLabelValues(labels...)))
	require.Equal(t, 2.5, testutil.ToFloat64(m.paceRate.WithLabelValues(labels...)))
	require.Equal(t, 5.0, testutil.ToFloat64(m.paceLimit.WithLabelValues(labels...)))
}

func TestMetricsPlannerHooks(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)

	m.JobStarted("c1")
	m.JobStarted("c1")
	m.JobStarted("c2")
	m.JobFinished("c1", messages.PhaseSucceeded, 90*time.Second)
	m.JobFinished("c1", messages.PhaseFailed, 30*time.Second)
	m.BarrierFailed("c1", planner.BarrierNodeFailed)
	m.RequestRejected("malformed")
	m.RequestRejected("malformed")
	m.SnapshotsRetired("c2", 7)

	require.Equal(t, 2.0, testutil.ToFloat64(m.jobsStarted.WithLabelValues("c1")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.jobsStarted.WithLabelValues("c2")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.jobsFinished.WithLabelValues("c1", "succeeded")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.jobsFinished.WithLabelValues("c1", "failed")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.barrierFailures.WithLabelValues("c1", "failed")))
	require.Equal(t, 2.0, testutil.ToFloat64(m.rejected.WithLabelValues("malformed")))
	require.Equal(t, 7.0, testutil.ToFloat64(m.retired.WithLabelValues("c2")))

	m.BarrierReleased("c1", 1500*time.Millisecond, 3*time.Millisecond, 40*time.Millisecond)
	const want = `
# HELP quiesce_barrier_flush_spread_seconds Time between the first and the last node's flush within one job.
# TYPE quiesce_barrier_flush_spread_seconds histogram
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="0.001"} 0
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="0.005"} 0
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="0.01"} 0
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="0.05"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="0.1"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="0.25"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="0.5"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="1"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="2.5"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="5"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="10"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="30"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="60"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="300"} 1
quiesce_barrier_flush_spread_seconds_bucket{cluster="c1",le="+Inf"} 1
quiesce_barrier_flush_spread_seconds_sum{cluster="c1"} 0.04
quiesce_barrier_flush_spread_seconds_count{cluster="c1"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "quiesce_barrier_flush_spread_seconds"))
	require.Equal(t, 1, testutil.CollectAndCount(m.barrierWait, "quiesce_barrier_wait_seconds"))
	require.Equal(t, 1, testutil.CollectAndCount(m.barrierRelease, "quiesce_barrier_release_latency_seconds"))
}

func TestMetricsLastSuccessOnlyMovesForward(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	newer := time.Unix(1_700_000_100, 500_000_000)
	m.BackupSucceeded("c1", newer, false)
	m.BackupSucceeded("c1", time.Unix(1_700_000_000, 0), true)
	require.Equal(t, 1_700_000_100.5, testutil.ToFloat64(m.lastSuccess.WithLabelValues("c1")))
	require.Equal(t, 0.0, testutil.ToFloat64(m.lastPartial.WithLabelValues("c1")), "an older partial backup is not the newest")
	require.Equal(t, 1.0, testutil.ToFloat64(m.partialBackups.WithLabelValues("c1")))
	m.BackupSucceeded("c1", newer.Add(time.Hour), true)
	require.Equal(t, 1_700_003_700.5, testutil.ToFloat64(m.lastSuccess.WithLabelValues("c1")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.lastPartial.WithLabelValues("c1")))
	require.Equal(t, 2.0, testutil.ToFloat64(m.partialBackups.WithLabelValues("c1")))
}

func TestMetricsWorkerHooks(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)

	m.TaskStarted(messages.KindFlush)
	m.TaskStarted(messages.KindFlush)
	m.TaskStarted(messages.KindSnapshot)
	require.Equal(t, 2.0, testutil.ToFloat64(m.inFlight.WithLabelValues("flush")))

	m.TaskFinished(messages.KindFlush, "succeeded", time.Second, "")
	m.TaskFinished(messages.KindSnapshot, "retry", 2*time.Second, "RequestLimitExceeded")
	m.TaskRedelivered(messages.KindSnapshot)
	require.Equal(t, 1.0, testutil.ToFloat64(m.inFlight.WithLabelValues("flush")))
	require.Equal(t, 0.0, testutil.ToFloat64(m.inFlight.WithLabelValues("snapshot")))
	require.Equal(t, 2.0, testutil.ToFloat64(m.tasksStarted.WithLabelValues("flush")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.tasksFinished.WithLabelValues("flush", "succeeded")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.tasksFinished.WithLabelValues("snapshot", "retry")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.taskErrors.WithLabelValues("snapshot", "RequestLimitExceeded")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.redeliveries.WithLabelValues("snapshot")))
	// No error code, no error series.
	require.Equal(t, 1, testutil.CollectAndCount(m.taskErrors))
	require.Equal(t, 2, testutil.CollectAndCount(m.taskDuration))

	m.SnapshotStates("c1", 5, 1)
	m.SnapshotStates("c1", 2, 0)
	require.Equal(t, 2.0, testutil.ToFloat64(m.snapshotsPending.WithLabelValues("c1")))
	require.Equal(t, 0.0, testutil.ToFloat64(m.snapshotsErrored.WithLabelValues("c1")))

	m.EC2Error("CreateSnapshot", "RequestLimitExceeded")
	m.EC2Error("CreateSnapshot", "RequestLimitExceeded")
	m.SSHError("auth")
	require.Equal(t, 2.0, testutil.ToFloat64(m.ec2Errors.WithLabelValues("CreateSnapshot", "RequestLimitExceeded")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.sshErrors.WithLabelValues("auth")))
}

func TestMetricsSeriesExistAtZero(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	// Task series of every kind exist before any task ran.
	require.Equal(t, len(messages.Kinds), testutil.CollectAndCount(m.inFlight))
	require.Equal(t, len(taskOutcomes)*len(messages.Kinds), testutil.CollectAndCount(m.tasksFinished))
	require.Equal(t, 0.0, testutil.ToFloat64(m.tasksFinished.WithLabelValues("snapshot", "abandoned")))
	require.Equal(t, 0.0, testutil.ToFloat64(m.tasksFinished.WithLabelValues("flush", "failed")))

	require.Equal(t, 0, testutil.CollectAndCount(m.jobsFinished))
	require.Equal(t, 0, testutil.CollectAndCount(m.barrierFailures))
	m.InitCluster("c1", 0)
	require.Equal(t, 3, testutil.CollectAndCount(m.jobsFinished))
	require.Equal(t, 1, testutil.CollectAndCount(m.retaken), "a cluster's retakes exist at zero")
	require.Equal(t, 0.0, testutil.ToFloat64(m.jobsFinished.WithLabelValues("c1", "failed")))
	require.Equal(t, 3, testutil.CollectAndCount(m.barrierFailures), "failed, deadline, cancelled")
	require.Equal(t, 0.0, testutil.ToFloat64(m.barrierFailures.WithLabelValues("c1", "failed")))
	require.Equal(t, 0, testutil.CollectAndCount(m.backupMaxAge), "no threshold given, none exported")
	m.InitCluster("c2", 7*24*time.Hour)
	require.Equal(t, 604800.0, testutil.ToFloat64(m.backupMaxAge.WithLabelValues("c2")))
	// Initialising does not count anything.
	require.Equal(t, 0.0, testutil.ToFloat64(m.jobsStarted.WithLabelValues("c2")))

	require.Equal(t, 0, testutil.CollectAndCount(m.jobDuration))
	m.InitJobHistograms("c1")
	require.Equal(t, 3, testutil.CollectAndCount(m.jobDuration), "succeeded, failed, cancelled")
	require.Equal(t, 4, testutil.CollectAndCount(m.phaseDuration), "planned, flushing, snapshotting, finishing")
	for _, h := range []*prometheus.HistogramVec{m.barrierWait, m.barrierRelease, m.flushSpread} {
		require.Equal(t, 1, testutil.CollectAndCount(h))
	}
	require.Equal(t, 0, testutil.CollectAndCount(m.taskDuration))
	m.InitTaskHistograms()
	require.Equal(t, len(taskOutcomes)*len(messages.Kinds), testutil.CollectAndCount(m.taskDuration))

	require.Equal(t, 0, testutil.CollectAndCount(m.rejected))
	m.InitRejections("malformed", "invalid")
	require.Equal(t, 2, testutil.CollectAndCount(m.rejected))
	require.Equal(t, 0.0, testutil.ToFloat64(m.rejected.WithLabelValues("invalid")))

	require.Equal(t, 0, testutil.CollectAndCount(m.sshErrors))
	m.InitSSHErrors("auth", "hostkey")
	require.Equal(t, 2, testutil.CollectAndCount(m.sshErrors))
	require.Equal(t, 0.0, testutil.ToFloat64(m.sshErrors.WithLabelValues("hostkey")))

	require.Equal(t, 0, testutil.CollectAndCount(m.ec2Errors))
	m.InitEC2Errors([]string{"CreateSnapshot", "DescribeSnapshots"}, "RequestLimitExceeded")
	require.Equal(t, 2, testutil.CollectAndCount(m.ec2Errors))
	require.Equal(t, 0.0, testutil.ToFloat64(m.ec2Errors.WithLabelValues("DescribeSnapshots", "RequestLimitExceeded")))
	m.EC2Error("CreateSnapshot", "RequestLimitExceeded")
	require.Equal(t, 1.0, testutil.ToFloat64(m.ec2Errors.WithLabelValues("CreateSnapshot", "RequestLimitExceeded")))
}

func TestNewMetricsTwiceOnOneRegistryFails(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := NewMetrics(reg)
	require.NoError(t, err)
	_, err = NewMetrics(reg)
	require.Error(t, err)
}

// Every series a process exports is in Names, and every name follows the
// naming rules: the dashboard and alert tests rely on both.
func TestNamesCoverEverythingExported(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	exercise(m)

	names := map[string]bool{}
	for _, n := range Names() {
		names[n] = true
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		name := mf.GetName()
		if mf.GetType().String() == "HISTOGRAM" {
			require.True(t, names[name+"_bucket"] && names[name+"_sum"] && names[name+"_count"], name)
			continue
		}
		require.True(t, names[name], name)
	}

	valid := regexp.MustCompile(`^quiesce_[a-z0-9]+_[a-z0-9_]+$`)
	for _, n := range m.names {
		require.Regexp(t, valid, n)
		require.False(t, strings.HasSuffix(n, "_total") && strings.Contains(n, "_seconds"), n)
	}
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, Namespace+"_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	require.Contains(t, names, "quiesce_jetstream_consumer_pending_messages")
	require.Contains(t, names, "go_goroutines")
}

func TestLabelsCarryNoIDs(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	exercise(m)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	// Accounts and regions are as bounded as clusters: the configuration's.
	allowed := map[string]bool{"cluster": true, "kind": true, "outcome": true, "phase": true, "reason": true, "op": true, "code": true, "le": true,
		"account": true, "region": true, "target": true}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				require.True(t, allowed[l.GetName()], "%s has label %s", mf.GetName(), l.GetName())
			}
		}
	}
}

func TestMetricsRestoreHooks(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	m.RestoreStarted("c1", messages.TargetNewCluster)
	m.RestoreFinished("c1", messages.TargetNewCluster, messages.RestoreFailed, 10*time.Minute)
	m.RestorePhaseFinished(messages.TargetNewCluster, messages.RestoreStarting, 25*time.Second)
	require.Equal(t, 1.0, testutil.ToFloat64(m.restore.started.WithLabelValues("c1", "new-cluster")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.restore.finished.WithLabelValues("c1", "new-cluster", "failed")))
	require.Equal(t, 0.0, testutil.ToFloat64(m.restore.finished.WithLabelValues("c1", "new-cluster", "succeeded")))
}

func TestMetricsDrillLastSuccessOnlyMovesForward(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	m.DrillFinished("c1", true, time.Unix(2_000, 0))
	m.DrillFinished("c1", true, time.Unix(1_000, 0))
	m.DrillFinished("c1", false, time.Unix(3_000, 0))
	m.DrillReplayed("c1", true, time.Unix(1_500, 0))
	require.Equal(t, 2000.0, testutil.ToFloat64(m.drill.lastSuccess.WithLabelValues("c1")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.drill.finished.WithLabelValues("c1", "failed")))
	require.Equal(t, 2.0, testutil.ToFloat64(m.drill.finished.WithLabelValues("c1", "succeeded")))
}

// A budget's throttle count exists at zero once it paced a call.
func TestPaceThrottlesExistFromTheFirstCall(t *testing.T) {
	t.Parallel()
	m, _ := newMetrics(t)
	k := pace.Key{Account: "111111111111", Region: "us-east-1", Op: "CreateSnapshots"}
	require.Zero(t, testutil.CollectAndCount(m.paceThrottles))
	m.Pace().Waited(k, time.Millisecond)
	require.Equal(t, 1, testutil.CollectAndCount(m.paceThrottles))
	require.Equal(t, 0.0, testutil.ToFloat64(m.paceThrottles.WithLabelValues(k.Account, k.Region, k.Op)))
}
