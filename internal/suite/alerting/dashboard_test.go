//go:build prometheus

package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/promtest"
)

var dashboardPath = filepath.Join("..", "..", "..", "deploy", "grafana", "quiesce.json")

type dashboard struct {
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// grafana substitutes the variables Grafana would before a query reaches
// Prometheus, for a view of the last rng with a 1 s step and 1 s scrapes:
// every cluster selected, and $__rate_interval as Grafana computes it
// (four scrape intervals, plus a second of slack for a loaded machine).
func grafana(expr string, rng time.Duration) string {
	return strings.NewReplacer(
		"$__rate_interval", "5s",
		"$__interval", "1s",
		"$__range", model.Duration(rng).String(),
		"${cluster}", ".*",
		"$cluster", ".*",
	).Replace(expr)
}

// checkDashboard queries every panel of the dashboard over the fleet's life,
// as Grafana would, and fails for a panel none of whose queries returns a
// number: a panel that shows "No data" after healthy backups is one an
// operator cannot trust. The cluster variable must list every configured
// cluster.
func checkDashboard(t *testing.T, f *fleet) {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(data, &d))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	end := time.Now()
	start := f.started.Add(-10 * time.Second)
	rng := end.Sub(start).Round(time.Second)

	panels := 0
	var empty, emptyTargets []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		panels++
		shown := false
		for _, tg := range p.Targets {
			m, err := f.prom.QueryRange(ctx, grafana(tg.Expr, rng), start, end, time.Second)
			require.NoError(t, err, "panel %q", p.Title)
			if promtest.HasData(m) {
				shown = true
			} else {
				emptyTargets = append(emptyTargets, fmt.Sprintf("%q: %s", p.Title, tg.Expr))
			}
		}
		if !shown {
			empty = append(empty, p.Title)
		}
	}
	require.Positive(t, panels)
	for _, e := range emptyTargets {
		t.Logf("a query without data after healthy backups (its panel has others): %s", e)
	}
	require.Empty(t, empty, "dashboard panels without data after healthy backups")

	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		require.NotNil(t, m, "variable %s: want label_values(selector, label)", v.Name)
		res, err := f.prom.QueryRange(ctx, fmt.Sprintf("group by (%s) (%s)", m[2], m[1]), start, end, time.Second)
		require.NoError(t, err, "variable %s", v.Name)
		got := map[string]bool{}
		for _, s := range res {
			got[string(s.Metric[model.LabelName(m[2])])] = true
		}
		for _, cl := range f.clusters() {
			require.True(t, got[cl], "variable %s does not offer cluster %s: %v", v.Name, cl, got)
		}
	}
}
