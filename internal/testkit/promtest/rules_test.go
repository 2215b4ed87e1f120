package promtest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/testkit/promtest"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
)

func TestShrink(t *testing.T) {
	t.Parallel()
	s := promtest.Shrink{Factor: 60, Min: 5 * time.Second, Max: 40 * time.Second}
	for _, tc := range []struct {
		in, want time.Duration
	}{
		{0, 0},
		{2 * time.Second, 2 * time.Second}, // never longer than it was
		{time.Minute, 5 * time.Second},     // 1s, raised to Min
		{5 * time.Minute, 5 * time.Second},
		{10 * time.Minute, 10 * time.Second},
		{15 * time.Minute, 15 * time.Second},
		{30 * time.Minute, 30 * time.Second},
		{time.Hour, 40 * time.Second}, // 60s, held at Max
		{26 * time.Hour, 40 * time.Second},
		{7*time.Minute + 30*time.Second, 8 * time.Second}, // whole seconds
	} {
		require.Equal(t, tc.want, s.Duration(tc.in), "Shrink(%s)", tc.in)
	}
	// Order is kept: a longer duration never maps below a shorter one.
	prev := time.Duration(0)
	for d := time.Second; d < 48*time.Hour; d += 37 * time.Second {
		got := s.Duration(d)
		require.GreaterOrEqual(t, got, prev, "Shrink(%s)", d)
		prev = got
	}
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

func alertsYML(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "prometheus", "alerts.yml"))
	require.NoError(t, err)
	return data
}

var promql = parser.NewParser(parser.Options{})

// ranges lists the ranges and steps of an expression's range selectors and
// subqueries, in order.
func ranges(t *testing.T, expr string) []time.Duration {
	t.Helper()
	e, err := promql.ParseExpr(expr)
	require.NoError(t, err, expr)
	var out []time.Duration
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.MatrixSelector:
			out = append(out, n.Range)
		case *parser.SubqueryExpr:
			out = append(out, n.Range, n.Step)
		}
		return nil
	})
	return out
}

// shape prints an expression with every range and step set to one value:
// what is left is everything the rewrite must not touch.
func shape(t *testing.T, expr string) string {
	t.Helper()
	e, err := promql.ParseExpr(expr)
	require.NoError(t, err, expr)
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.MatrixSelector:
			n.Range = time.Second
		case *parser.SubqueryExpr:
			n.Range, n.Step = time.Second, time.Second
		}
		return nil
	})
	return e.String()
}

func parseDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	if s == "" {
		return 0
	}
	d, err := model.ParseDuration(s)
	require.NoError(t, err, s)
	return time.Duration(d)
}

// The rewrite of quiesce's own rules changes every `for` and every range
// window by the given mapping, and nothing else.
func TestRewriteRulesChangesOnlyDurations(t *testing.T) {
	t.Parallel()
	orig := alertsYML(t)
	// A mapping no real duration is mapped to by accident.
	f := func(d time.Duration) time.Duration { return (d / 7).Truncate(time.Second) + 3*time.Second }
	out, err := promtest.RewriteRules(orig, f)
	require.NoError(t, err)

	var before, after ruleFile
	require.NoError(t, yaml.UnmarshalStrict(orig, &before))
	require.NoError(t, yaml.UnmarshalStrict(out, &after))
	require.Len(t, after.Groups, len(before.Groups))
	fors, windows := 0, 0
	for gi, g := range before.Groups {
		ag := after.Groups[gi]
		require.Equal(t, g.Name, ag.Name)
		require.Len(t, ag.Rules, len(g.Rules), g.Name)
		for ri, r := range g.Rules {
			a := ag.Rules[ri]
			where := g.Name + "/" + r.Alert + r.Record
			require.Equal(t, r.Alert, a.Alert, where)
			require.Equal(t, r.Record, a.Record, where)
			require.Equal(t, r.Labels, a.Labels, where)
			require.Equal(t, r.Annotations, a.Annotations, where)
			if r.For == "" {
				require.Empty(t, a.For, where)
			} else {
				require.Equal(t, f(parseDuration(t, r.For)), parseDuration(t, a.For), where)
				fors++
			}
			want := ranges(t, r.Expr)
			for i := range want {
				want[i] = f(want[i])
			}
			require.Equal(t, want, ranges(t, a.Expr), where)
			windows += len(want)
			require.Equal(t, shape(t, r.Expr), shape(t, a.Expr), "%s: only durations change", where)
		}
	}
	require.Positive(t, fors, "the rules have `for` durations to rewrite")
	require.Positive(t, windows, "the rules have range windows to rewrite")
}

func TestRewriteExprSubqueryAndErrors(t *testing.T) {
	t.Parallel()
	double := func(d time.Duration) time.Duration { return 2 * d }
	got, err := promtest.RewriteExpr(`max_over_time(rate(x_total{a="b"}[5m])[1h:1m]) > 0.1`, double)
	require.NoError(t, err)
	require.Equal(t, `max_over_time(rate(x_total{a="b"}[10m])[2h:2m]) > 0.1`, got)

	_, err = promtest.RewriteExpr(`rate(x[5m]`, double)
	require.ErrorContains(t, err, "expr")

	_, err = promtest.RewriteRules([]byte("groups:\n- name: g\n  rules:\n  - alert: Broken\n    expr: rate(x[5m]\n"), double)
	require.ErrorContains(t, err, `group "g", rule 0 (Broken)`)
	_, err = promtest.RewriteRules([]byte("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x\n    for: soon\n"), double)
	require.ErrorContains(t, err, `group "g", rule 0 (A): for`)
	_, err = promtest.RewriteRules([]byte("not: rules\n"), double)
	require.ErrorContains(t, err, "no list of groups")
}

// Prometheus' own checker accepts the rewritten rules: the canonical form
// the rewrite prints is PromQL the installed Prometheus reads.
func TestRewrittenRulesPassPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool not found: apt-get install prometheus")
	}
	out, err := promtest.RewriteRules(alertsYML(t), promtest.Shrink{Factor: 60, Min: 5 * time.Second, Max: 40 * time.Second}.Duration)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "alerts.yml")
	require.NoError(t, os.WriteFile(path, out, 0o600))
	res, err := exec.CommandContext(t.Context(), promtool, "check", "rules", path).CombinedOutput()
	require.NoError(t, err, "%s\n%s", res, out)
	require.Contains(t, string(res), "SUCCESS")
}
