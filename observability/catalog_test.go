package observability

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

func TestLoadLastSuccessFromCatalog(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{Memory: true})
	ctx := t.Context()
	m, _ := newMetrics(t)

	n, err := m.LoadLastSuccess(ctx, env.H.Catalog)
	require.NoError(t, err)
	require.Zero(t, n, "an empty catalog")

	t0 := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	put := func(cluster, job string, finished time.Time) {
		data, err := json.Marshal(messages.Backup{Schema: messages.BackupSchema, JobID: job, Cluster: cluster, FinishedAt: finished})
		require.NoError(t, err)
		_, err = env.H.Catalog.Put(ctx, messages.CatalogKey(cluster, job), data)
		require.NoError(t, err)
	}
	put("c1", "c1-aaa", t0)
	put("c1", "c1-bbb", t0.Add(24*time.Hour))
	put("c2", "c2-aaa", t0.Add(time.Hour))
	put("c2", "c2-bbb", t0.Add(25*time.Hour))
	_, err = env.H.Catalog.Put(ctx, "c3.garbage", []byte("not json"))
	require.NoError(t, err)
	// A retired backup deleted from the catalog does not count.
	require.NoError(t, env.H.Catalog.Delete(ctx, messages.CatalogKey("c2", "c2-bbb")))

	n, err = m.LoadLastSuccess(ctx, env.H.Catalog)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, float64(t0.Add(24*time.Hour).Unix()), testutil.ToFloat64(m.lastSuccess.WithLabelValues("c1")))
	require.Equal(t, float64(t0.Add(time.Hour).Unix()), testutil.ToFloat64(m.lastSuccess.WithLabelValues("c2")))
	require.Equal(t, 2, testutil.CollectAndCount(m.lastSuccess))
}

func TestLoadLastSuccessHonoursContext(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{Memory: true})
	m, _ := newMetrics(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := m.LoadLastSuccess(ctx, env.H.Catalog)
	require.Error(t, err)
}

func TestWatchDrillsKeepsTheLastSuccessfulDrillAndIsNoBackup(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{Memory: true})
	ctx := t.Context()
	m, _ := newMetrics(t)
	t0 := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	put := func(id, outcome string, ended time.Time) {
		data, err := json.Marshal(messages.Drill{Schema: messages.DrillSchema, DrillID: id, Source: "c1", Target: "scratch",
			Outcome: outcome, Began: ended.Add(-time.Minute), Ended: ended})
		require.NoError(t, err)
		_, err = env.H.Catalog.Put(ctx, messages.DrillKey("c1", id), data)
		require.NoError(t, err)
	}
	put("drill-1", messages.DrillSucceeded, t0)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.WatchDrills(wctx, env.H.Catalog) }()
	gauge := func() float64 { return testutil.ToFloat64(m.drill.lastSuccess.WithLabelValues("c1")) }
	require.Eventually(t, func() bool { return gauge() == float64(t0.Unix()) }, 10*time.Second, 10*time.Millisecond)

	put("drill-2", messages.DrillFailed, t0.Add(48*time.Hour))
	put("drill-3", messages.DrillSucceeded, t0.Add(24*time.Hour))
	require.Eventually(t, func() bool { return gauge() == float64(t0.Add(24*time.Hour).Unix()) }, 10*time.Second, 10*time.Millisecond,
		"a failed drill moves nothing; the next success does")
	cancel()
	require.NoError(t, <-done)

	// A drill record is no backup: the backup gauge never sees one.
	n, err := m.LoadLastSuccess(ctx, env.H.Catalog)
	require.NoError(t, err)
	require.Zero(t, n)
}
