//go:build prometheus

package promtest_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/promtest"
)

// target serves a registry on a loopback port until the test ends.
func target(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// A rule over a scraped counter fires, and the alert reaches the test's
// webhook through Alertmanager with its labels and rendered annotations;
// once the condition ends, the resolution arrives too.
func TestPrometheusAlertsThroughAlertmanager(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promtest_events_total", Help: "Events."}, []string{"kind"})
	reg.MustRegister(c)
	c.WithLabelValues("a")
	addr := target(t, reg)

	am := promtest.StartAlertmanager(t, promtest.AlertmanagerOptions{})
	rules := []byte(`groups:
  - name: test
    rules:
      - alert: PromtestEvents
        expr: sum by (kind) (increase(promtest_events_total[1h])) > 0
        labels: {severity: warning}
        annotations:
          summary: "events of kind {{ $labels.kind }}"
`)
	rules, err := promtest.RewriteRules(rules, promtest.Shrink{Factor: 360, Min: 5 * time.Second}.Duration)
	require.NoError(t, err)
	prom := promtest.StartPrometheus(t, promtest.PrometheusOptions{
		Jobs:          []promtest.ScrapeJob{{Name: "promtest", Targets: []string{addr}}},
		RuleFiles:     map[string][]byte{"rules.yml": rules},
		Alertmanagers: []string{am.Addr},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	require.NoError(t, prom.WaitTargetsUp(ctx, 1), prom.Log())
	start := time.Now()

	// Two scrapes of the zero, then the event.
	require.Eventually(t, func() bool {
		m, err := prom.QueryRange(ctx, `promtest_events_total`, start.Add(-time.Minute), time.Now(), time.Second)
		return err == nil && len(m) == 1 && len(m[0].Values) >= 2
	}, time.Minute, 200*time.Millisecond)
	c.WithLabelValues("a").Inc()

	n, err := am.WaitFor(ctx, func(n promtest.Notified) bool { return n.Labels["alertname"] == "PromtestEvents" })
	require.NoError(t, err, "%s\n%s", prom.Log(), am.Log())
	require.Equal(t, map[string]string{"alertname": "PromtestEvents", "kind": "a", "severity": "warning"}, n.Labels)
	require.Equal(t, map[string]string{"summary": "events of kind a"}, n.Annotations)

	v, err := prom.Query(ctx, `sum(promtest_events_total)`)
	require.NoError(t, err)
	require.Len(t, v, 1)
	require.Equal(t, 1.0, float64(v[0].Value))

	// The 5 s window moves past the event: the alert resolves.
	_, err = waitResolved(ctx, am, "PromtestEvents")
	require.NoError(t, err)
}

func waitResolved(ctx context.Context, am *promtest.Alertmanager, name string) (promtest.Notified, error) {
	for {
		for _, n := range am.Received() {
			if n.Status == "resolved" && n.Labels["alertname"] == name {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return promtest.Notified{}, context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
