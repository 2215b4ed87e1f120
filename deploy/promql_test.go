package deploy_test

import (
	"github.com/quiesce/quiesce/internal/testkit/testenv"

	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/observability"
)

var promql = parser.NewParser(parser.Options{})

// exported is every series name a quiesce process exports.
func exported() map[string]bool {
	names := map[string]bool{}
	for _, n := range observability.Names() {
		names[n] = true
	}
	return names
}

// A regexp on __name__ is accepted only as a plain alternation of names,
// which the test can check one by one.
var nameAlternation = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\|[a-zA-Z_:][a-zA-Z0-9_:]*)*$`)

// selectorNames returns the metric names a selector's matchers select.
func selectorNames(t *testing.T, where string, ms []*labels.Matcher) []string {
	t.Helper()
	for _, m := range ms {
		if m.Name != model.MetricNameLabel {
			continue
		}
		switch m.Type {
		case labels.MatchEqual:
			return []string{m.Value}
		case labels.MatchRegexp:
			require.Regexp(t, nameAlternation, m.Value, "%s: a __name__ regexp must list names", where)
			return strings.Split(m.Value, "|")
		default:
			t.Errorf("%s: __name__ matcher %s cannot be checked", where, m)
		}
	}
	t.Errorf("%s: selector without a metric name", where)
	return nil
}

// exprNames parses a PromQL expression and returns every metric name it
// selects.
func exprNames(t *testing.T, where, expr string) []string {
	t.Helper()
	e, err := promql.ParseExpr(expr)
	require.NoError(t, err, "%s: %s", where, expr)
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, selectorNames(t, where, vs.LabelMatchers)...)
		}
		return nil
	})
	return out
}

// grafanaVars stands in for the variables Grafana substitutes before a query
// reaches Prometheus.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "1h",
	"${cluster}", ".*",
	"$cluster", ".*",
)

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

type dashboard struct {
	UID        string                       `json:"uid"`
	Title      string                       `json:"title"`
	Panels     []panel                      `json:"panels"`
	Templating struct{ List []templateVar } `json:"templating"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasourceRef           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Datasource *datasourceRef `json:"datasource"`
		Expr       string         `json:"expr"`
	} `json:"targets"`
}

type templateVar struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Query      any            `json:"query"`
	Definition string         `json:"definition"`
	Datasource *datasourceRef `json:"datasource"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("grafana", "quiesce.json"))
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(data, &d))
	return d
}

func TestDashboardUsesOnlyExportedMetrics(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	names := exported()
	used := map[string]bool{}
	queries := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			where := "panel " + p.Title
			queries++
			for _, n := range exprNames(t, where, grafanaVars.Replace(tg.Expr)) {
				require.True(t, names[n], "%s uses %q, which quiesce does not export", where, n)
				used[n] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		require.NotNil(t, m, "variable %s: want label_values(selector, label)", v.Name)
		ms, err := promql.ParseMetricSelector(m[1])
		require.NoError(t, err, "variable %s", v.Name)
		for _, n := range selectorNames(t, "variable "+v.Name, ms) {
			require.True(t, names[n], "variable %s uses %q, which quiesce does not export", v.Name, n)
		}
		q, ok := v.Query.(map[string]any)
		require.True(t, ok, "variable %s: query object", v.Name)
		require.Equal(t, v.Definition, q["query"], "variable %s: definition and query differ", v.Name)
	}
	require.Greater(t, queries, 20)
	// What an operator opens the dashboard for must be on it.
	for _, n := range []string{
		"quiesce_backup_last_success_timestamp_seconds",
		"quiesce_job_finished_total",
		"quiesce_job_duration_seconds_bucket",
		"quiesce_barrier_wait_seconds_bucket",
		"quiesce_barrier_flush_spread_seconds_bucket",
		"quiesce_worker_tasks_finished_total",
		"quiesce_worker_task_duration_seconds_bucket",
		"quiesce_jetstream_consumer_pending_messages",
		"quiesce_ec2_errors_total",
		"quiesce_ssh_errors_total",
		"quiesce_ec2_pace_calls_total",
		"quiesce_ec2_pace_wait_seconds_bucket",
		"quiesce_ec2_pace_throttles_total",
		"quiesce_ec2_pace_tokens",
	} {
		require.True(t, used[n], "the dashboard does not show %s", n)
	}
}

func TestDashboardIsImportable(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	require.NotEmpty(t, d.UID)
	require.NotEmpty(t, d.Title)

	vars := map[string]templateVar{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	require.Equal(t, "datasource", vars["datasource"].Type)
	require.Equal(t, "query", vars["cluster"].Type)

	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.Panels {
		require.False(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		g := p.GridPos
		require.True(t, g.W > 0 && g.H > 0 && g.X >= 0 && g.X+g.W <= 24, "panel %q: grid position %+v", p.Title, g)
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				other, clash := taken[cell{x, y}]
				require.False(t, clash, "panels %q and %q overlap", p.Title, other)
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		// Every query goes to the data source the viewer picked.
		require.NotNil(t, p.Datasource, "panel %q", p.Title)
		require.Equal(t, "${datasource}", p.Datasource.UID, "panel %q", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			require.NotNil(t, tg.Datasource, "panel %q", p.Title)
			require.Equal(t, "${datasource}", tg.Datasource.UID, "panel %q", p.Title)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

type ruleTests struct {
	RuleFiles          []string `json:"rule_files"`
	EvaluationInterval string   `json:"evaluation_interval"`
	Tests              []struct {
		Interval    string `json:"interval"`
		InputSeries []struct {
			Series string `json:"series"`
			Values string `json:"values"`
		} `json:"input_series"`
		AlertRuleTest []struct {
			EvalTime  string `json:"eval_time"`
			Alertname string `json:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `json:"exp_labels"`
				ExpAnnotations map[string]string `json:"exp_annotations"`
			} `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func TestAlertRulesUseOnlyExportedMetrics(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	require.NoError(t, err)
	var rf ruleFile
	require.NoError(t, yaml.UnmarshalStrict(data, &rf))

	names := exported()
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			where := g.Name + "/" + r.Alert + r.Record
			used := exprNames(t, where, r.Expr)
			require.NotEmpty(t, used, where)
			for _, n := range used {
				require.True(t, names[n], "%s uses %q, which quiesce does not export", where, n)
			}
			if r.Alert != "" {
				require.False(t, alerts[r.Alert], "alert %s twice", r.Alert)
				alerts[r.Alert] = true
				require.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], where)
				require.NotEmpty(t, r.Annotations["summary"], where)
				require.NotEmpty(t, r.Annotations["description"], where)
			}
		}
	}
	for _, a := range []string{
		"QuiesceBackupStale", "QuiesceJobFailed", "QuiesceFlushBarrierFailed",
		"QuiesceTaskBacklogWithoutWorkers", "QuiesceEBSSnapshotsInError",
	} {
		require.True(t, alerts[a], "alert %s is missing", a)
	}

	// The unit tests feed series that exist, and test every alert.
	data, err = os.ReadFile(filepath.Join("prometheus", "alerts_test.yml"))
	require.NoError(t, err)
	var rt ruleTests
	require.NoError(t, yaml.UnmarshalStrict(data, &rt))
	require.Equal(t, []string{"alerts.yml"}, rt.RuleFiles)
	tested := map[string]bool{}
	for i, tc := range rt.Tests {
		for _, s := range tc.InputSeries {
			ms, err := promql.ParseMetricSelector(s.Series)
			require.NoError(t, err, "test %d: %s", i, s.Series)
			for _, n := range selectorNames(t, s.Series, ms) {
				require.True(t, names[n], "test %d feeds %q, which quiesce does not export", i, n)
			}
		}
		for _, a := range tc.AlertRuleTest {
			require.True(t, alerts[a.Alertname], "test %d: no alert %s", i, a.Alertname)
			if len(a.ExpAlerts) > 0 {
				tested[a.Alertname] = true
			}
		}
	}
	for a := range alerts {
		require.True(t, tested[a], "no test shows alert %s firing", a)
	}
}

// promtool is Prometheus' own checker: it catches what parsing alone does not
// (templates in annotations, for durations) and evaluates the unit tests.
func TestAlertRulesPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool not found: apt-get install prometheus")
	}
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
		require.True(t, slices.ContainsFunc(strings.Split(string(out), "\n"), func(l string) bool {
			return strings.Contains(l, "SUCCESS")
		}), "promtool %s:\n%s", strings.Join(args, " "), out)
	}
}
