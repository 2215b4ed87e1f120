package observability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// startServer serves reg on a free loopback port and stops it at test end.
func startServer(t *testing.T, ready func() error) (base string, m *Metrics) {
	t.Helper()
	reg := NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, reg, ready) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return "http://" + ln.Addr().String(), m
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestServerEndpoints(t *testing.T) {
	t.Parallel()
	var readyErr error = errors.New("nats: not connected to nats://svc:s3cr3t@nats:4222")
	base, m := startServer(t, func() error { return readyErr })
	m.JobStarted("c1")

	code, body := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `quiesce_job_started_total{cluster="c1"} 1`)
	require.Contains(t, body, "go_goroutines")
	require.Contains(t, body, "process_start_time_seconds")

	code, body = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "not connected")
	require.NotContains(t, body, "s3cr3t")

	code, _ = get(t, base+"/nothing")
	require.Equal(t, http.StatusNotFound, code)
}

func TestServerReadyWhenCheckPasses(t *testing.T) {
	t.Parallel()
	base, _ := startServer(t, func() error { return nil })
	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ready\n", body)

	base, _ = startServer(t, nil)
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
}

func TestServeStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", NewRegistry(), nil) }()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestServeReportsListenError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	err = Serve(t.Context(), ln.Addr().String(), NewRegistry(), nil)
	require.ErrorContains(t, err, "metrics listener")
}

// BenchmarkScrape measures one /metrics response for a fleet of 100
// clusters with every series populated.
func BenchmarkScrape(b *testing.B) {
	reg := NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(b, err)
	for i := range 100 {
		c := fmt.Sprintf("cluster-%03d", i)
		m.InitCluster(c, 26*time.Hour)
		m.JobStarted(c)
		m.JobFinished(c, messages.PhaseSucceeded, time.Hour)
		for _, p := range []messages.Phase{messages.PhasePlanned, messages.PhaseFlushing, messages.PhaseSnapshotting, messages.PhaseFinishing} {
			m.PhaseFinished(c, p, time.Minute)
		}
		m.BarrierReleased(c, time.Second, time.Millisecond, 100*time.Millisecond)
		m.BackupSucceeded(c, time.Now(), false)
		m.SnapshotStates(c, 0, 0)
	}
	h := Handler(reg, nil)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	var size int
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}
