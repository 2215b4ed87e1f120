package observability

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

// scrape fetches /metrics and parses it as Prometheus does.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	require.Equal(t, 200, code)
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	return mfs
}

// value returns the sample of family name whose labels include want: the
// counter, gauge or histogram count. It reports false when there is none.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// A backup job run in-process by the real planner, coordinator and worker
// (fake node tool and snapshotter) moves the job, task and last-success
// metrics a scrape of /metrics shows.
func TestJobMovesScrapedMetrics(t *testing.T) {
	t.Parallel()
	const nodes, volumes = 3, 2
	env := testenv.New(t, topology.Options{AckWait: 5 * time.Second})
	cl := planner.Cluster{Name: "c1"}
	for i := range nodes {
		n := messages.Node{Name: fmt.Sprintf("node-%d", i+1), Address: "127.0.0.1"}
		for v := range volumes {
			n.Volumes = append(n.Volumes, messages.Volume{ID: fmt.Sprintf("vol-%d-%d", i+1, v+1), Path: "/unused"})
		}
		cl.Nodes = append(cl.Nodes, n)
	}
	inv := planner.Inventory{Clusters: []planner.Cluster{cl}}

	reg := NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	require.NoError(t, reg.Register(NewBacklogCollector(t.Context(), env.JS, BacklogOptions{})))

	ctx := t.Context()
	opts := planner.Options{Logger: zerolog.Nop(), Observer: m}
	s := stack.Start(t, env, stack.Config{
		Planner:     planner.PlannerConfig{Options: opts, Inventory: inv},
		Coordinator: planner.CoordinatorConfig{Options: opts, SweepInterval: 100 * time.Millisecond},
		Drivers:     fakes.Drivers{Tool: fakes.NewNodeTool(), Snap: fakes.NewSnapshotter()},
		Worker: worker.Config{
			Logger: zerolog.Nop(), Observer: m, Heartbeat: 200 * time.Millisecond, AwaitPoll: 20 * time.Millisecond,
			BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, MaxDeliver: env.Opts.MaxDeliverFor,
		},
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- ServeListener(sctx, ln, reg, s.Ready)
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	base := "http://" + ln.Addr().String()

	code, _ := get(t, base+"/readyz")
	require.Equal(t, 200, code, "all roles started, so the process is ready")
	before := scrape(t, base)
	_, ok := value(before, "quiesce_job_started_total", map[string]string{"cluster": "c1"})
	require.False(t, ok, "no job yet")

	startedAt := time.Now()
	jobID := env.Submit(t, testenv.Request("c1", "metrics-e2e"))
	job := env.WaitTerminal(t, jobID, 60*time.Second)
	require.Equal(t, messages.PhaseSucceeded, job.Phase, job.Error)

	// The worker reports a task after acknowledging it, so the last task's
	// numbers may trail the job's terminal phase by a moment.
	var mfs map[string]*dto.MetricFamily
	settled := func() bool {
		mfs = scrape(t, base)
		for _, kind := range messages.Kinds {
			if v, ok := value(mfs, "quiesce_worker_tasks_in_flight", map[string]string{"kind": string(kind)}); ok && v != 0 {
				return false
			}
		}
		_, ok := value(mfs, "quiesce_backup_last_success_timestamp_seconds", map[string]string{"cluster": "c1"})
		return ok
	}
	require.Eventually(t, settled, 30*time.Second, 20*time.Millisecond)

	must := func(name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := value(mfs, name, labels)
		require.True(t, ok, "%s%v not exported", name, labels)
		return v
	}
	c1 := map[string]string{"cluster": "c1"}
	require.Equal(t, 1.0, must("quiesce_job_started_total", c1))
	require.Equal(t, 1.0, must("quiesce_job_finished_total", map[string]string{"cluster": "c1", "outcome": "succeeded"}))
	require.Equal(t, 1.0, must("quiesce_job_duration_seconds", map[string]string{"cluster": "c1", "outcome": "succeeded"}))
	require.Equal(t, 1.0, must("quiesce_barrier_wait_seconds", c1))
	require.Equal(t, 1.0, must("quiesce_barrier_flush_spread_seconds", c1))
	require.Equal(t, 1.0, must("quiesce_job_phase_duration_seconds", map[string]string{"cluster": "c1", "phase": "flushing"}))
	_, failed := value(mfs, "quiesce_job_finished_total", map[string]string{"cluster": "c1", "outcome": "failed"})
	require.False(t, failed)

	last := must("quiesce_backup_last_success_timestamp_seconds", c1)
	require.GreaterOrEqual(t, last, float64(startedAt.Unix()))
	require.LessOrEqual(t, last, float64(time.Now().Unix()+1))

	// One flush per node, at least one snapshot task, one clear per node;
	// every task that started also finished.
	require.Equal(t, float64(nodes), must("quiesce_worker_tasks_finished_total", map[string]string{"kind": "flush", "outcome": "succeeded"}))
	require.Equal(t, float64(nodes), must("quiesce_worker_task_duration_seconds", map[string]string{"kind": "flush", "outcome": "succeeded"}))
	require.GreaterOrEqual(t, must("quiesce_worker_tasks_finished_total", map[string]string{"kind": "snapshot", "outcome": "succeeded"}), 1.0)
	require.Equal(t, float64(nodes), must("quiesce_worker_tasks_finished_total", map[string]string{"kind": "clear", "outcome": "succeeded"}))
	for _, kind := range []string{"flush", "snapshot", "clear"} {
		started := must("quiesce_worker_tasks_started_total", map[string]string{"kind": kind})
		var finished float64
		for _, outcome := range taskOutcomes {
			v, _ := value(mfs, "quiesce_worker_tasks_finished_total", map[string]string{"kind": kind, "outcome": outcome})
			finished += v
		}
		require.Equal(t, started, finished, kind)
	}

	// The task queues are drained, and the scrape read them from JetStream.
	for _, kind := range messages.Kinds {
		require.Equal(t, 0.0, must("quiesce_jetstream_consumer_pending_messages", map[string]string{"kind": string(kind)}), kind)
	}
}
