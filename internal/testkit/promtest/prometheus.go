package promtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

// PrometheusMissing is the reason a test is skipped when Prometheus is not
// installed.
const PrometheusMissing = "prometheus not found: apt-get install prometheus"

// ScrapeJob is one scrape job: its name (the job label) and its targets,
// each a host:port serving /metrics.
type ScrapeJob struct {
	Name    string
	Targets []string
}

// PrometheusOptions configure a Prometheus started for a test.
type PrometheusOptions struct {
	// Jobs to scrape.
	Jobs []ScrapeJob
	// ScrapeInterval and EvaluationInterval; default 1 s each.
	ScrapeInterval     time.Duration
	EvaluationInterval time.Duration
	// RuleFiles to load, by file name (see RewriteRules).
	RuleFiles map[string][]byte
	// Alertmanagers (host:port) to send alerts to.
	Alertmanagers []string
}

// Prometheus is a running Prometheus.
type Prometheus struct {
	// URL is its HTTP API and UI, http://127.0.0.1:<port>.
	URL string
	// API is Prometheus' HTTP API.
	API v1.API

	proc *process
}

// StartPrometheus runs the installed Prometheus on a free loopback port with
// a configuration of its own (and its own storage in a temporary directory),
// waits until it is ready and stops it when the test ends. It skips the test
// when Prometheus is not installed.
func StartPrometheus(t testing.TB, o PrometheusOptions) *Prometheus {
	t.Helper()
	bin := lookPath(t, PrometheusMissing, "prometheus")
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = time.Second
	}
	if o.EvaluationInterval <= 0 {
		o.EvaluationInterval = time.Second
	}
	dir := t.TempDir()
	var ruleFiles []string
	names := make([]string, 0, len(o.RuleFiles))
	for n := range o.RuleFiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, filepath.Base(n))
		if err := os.WriteFile(p, o.RuleFiles[n], 0o600); err != nil {
			t.Fatalf("promtest: %v", err)
		}
		ruleFiles = append(ruleFiles, p)
	}
	cfg := map[string]any{
		"global": map[string]any{
			"scrape_interval":     model.Duration(o.ScrapeInterval).String(),
			"scrape_timeout":      model.Duration(o.ScrapeInterval).String(),
			"evaluation_interval": model.Duration(o.EvaluationInterval).String(),
		},
	}
	if len(ruleFiles) > 0 {
		cfg["rule_files"] = ruleFiles
	}
	if len(o.Alertmanagers) > 0 {
		cfg["alerting"] = map[string]any{"alertmanagers": []any{
			map[string]any{"static_configs": []any{map[string]any{"targets": o.Alertmanagers}}},
		}}
	}
	var jobs []any
	for _, j := range o.Jobs {
		jobs = append(jobs, map[string]any{
			"job_name":       j.Name,
			"static_configs": []any{map[string]any{"targets": j.Targets}},
		})
	}
	if len(jobs) > 0 {
		cfg["scrape_configs"] = jobs
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatalf("promtest: %v", err)
	}
	storage := filepath.Join(dir, "data")
	proc, addr := start(t, "prometheus", bin, dir, func(addr string) []string {
		return []string{
			"--config.file=" + cfgPath,
			"--storage.tsdb.path=" + storage,
			"--web.listen-address=" + addr,
			// Alerts reach Alertmanager as soon as they fire; the resend
			// only matters for an Alertmanager that missed one.
			"--rules.alert.resend-delay=5s",
			"--log.level=info",
		}
	}, "/-/ready")
	url := "http://" + addr
	client, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	return &Prometheus{URL: url, API: v1.NewAPI(client), proc: proc}
}

// Log returns the end of what Prometheus logged.
func (p *Prometheus) Log() string { return p.proc.Log() }

// Query evaluates expr now and returns the instant vector it gives (a scalar
// is returned as a one-sample vector without labels).
func (p *Prometheus) Query(ctx context.Context, expr string) (model.Vector, error) {
	v, _, _, err := p.API.Query(ctx, expr, time.Now())
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	switch v := v.(type) {
	case model.Vector:
		return v, nil
	case *model.Scalar:
		return model.Vector{{Value: v.Value, Timestamp: v.Timestamp}}, nil
	}
	return nil, fmt.Errorf("query %s: a %s, not a vector", expr, v.Type())
}

// QueryRange evaluates expr over [start, end] at step and returns the series
// it gives.
func (p *Prometheus) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (model.Matrix, error) {
	v, _, _, err := p.API.QueryRange(ctx, expr, v1.Range{Start: start, End: end, Step: step})
	if err != nil {
		return nil, fmt.Errorf("query_range %s: %w", expr, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("query_range %s: a %s, not a matrix", expr, v.Type())
	}
	return m, nil
}

// Alerts returns the alerts Prometheus holds now, pending and firing.
func (p *Prometheus) Alerts(ctx context.Context) ([]v1.Alert, error) {
	r, err := p.API.Alerts(ctx)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return r.Alerts, nil
}

// WaitTargetsUp waits until every scrape target is up, and returns an error
// naming those that are not when ctx ends.
func (p *Prometheus) WaitTargetsUp(ctx context.Context, want int) error {
	var last string
	for {
		r, err := p.API.Targets(ctx)
		if err == nil {
			up := 0
			var down []string
			for _, tg := range r.Active {
				if tg.Health == v1.HealthGood {
					up++
				} else {
					down = append(down, fmt.Sprintf("%s (%s: %s)", tg.ScrapeURL, tg.Health, tg.LastError))
				}
			}
			if up >= want && len(down) == 0 {
				return nil
			}
			last = fmt.Sprintf("%d of %d targets up; down: %s", up, want, strings.Join(down, ", "))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("targets: %s", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// HasData reports whether a series of m holds a sample that is a number
// (not NaN): what a dashboard panel would draw.
func HasData(m model.Matrix) bool {
	for _, s := range m {
		for _, v := range s.Values {
			if !isNaN(float64(v.Value)) {
				return true
			}
		}
	}
	return false
}

func isNaN(f float64) bool { return f != f }
