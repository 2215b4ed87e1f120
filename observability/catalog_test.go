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
