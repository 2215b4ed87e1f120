//go:build prometheus

package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/testkit/mototest"
	"github.com/quiesce/quiesce/internal/testkit/promtest"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
)

// Timing of the test's Prometheus and Alertmanager. Every duration of the
// rules is divided by 60 and held between 5 s (five scrapes: enough samples
// for increase and rate) and 40 s: a 1h window becomes 40 s, a 10m `for`
// 10 s, the never-backed-up rule's 26h `for` 40 s.
var shrink = promtest.Shrink{Factor: 60, Min: 5 * time.Second, Max: 40 * time.Second}

// longest is the longest duration of the rewritten rules: after it, every
// alert a condition can raise has had time to fire.
const longest = 40 * time.Second

// alertTimeout bounds the wait for one alert, generous for a loaded machine.
const alertTimeout = 4 * time.Minute

// rulesPath is the rule file operators load.
var rulesPath = filepath.Join("..", "..", "..", "deploy", "prometheus", "alerts.yml")

// alertRule is one alert of the rule file, as the test compares with what
// arrives.
type alertRule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func loadRules(t *testing.T) ([]byte, map[string]alertRule) {
	t.Helper()
	data, err := os.ReadFile(rulesPath)
	require.NoError(t, err)
	var rf struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	require.NoError(t, yaml.UnmarshalStrict(data, &rf))
	rules := map[string]alertRule{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				rules[r.Alert] = r
			}
		}
	}
	return data, rules
}

// role is one quiesce process to run: the subcommand and its extra flags.
type role struct {
	name string
	args []string
}

// proc is a quiesce process of the fleet.
type proc struct {
	name   string
	addr   string // its /metrics
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

func (p *proc) output() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	return string(b)
}

// fleet is quiesce as an operator runs it: an embedded NATS JetStream
// server, each role a process of its own serving /metrics, a Prometheus
// scraping every one with quiesce's alert rules, and an Alertmanager
// delivering to the test's webhook.
type fleet struct {
	t       *testing.T
	cfg     *config.Config
	env     *testenv.Env
	cfgPath string
	procs   []*proc
	prom    *promtest.Prometheus
	am      *promtest.Alertmanager
	rules   map[string]alertRule
	started time.Time
}

// startFleet writes cfg, starts one process per role and waits until each is
// ready, then starts Alertmanager and Prometheus and waits until Prometheus
// scrapes every process.
func startFleet(t *testing.T, cfg *config.Config, roles ...role) *fleet {
	t.Helper()
	require.NoError(t, cfg.Validate())
	ruleData, rules := loadRules(t)
	shortened, err := promtest.RewriteRules(ruleData, shrink.Duration)
	require.NoError(t, err)

	f := &fleet{t: t, cfg: cfg, env: testenv.New(t, topology.Options{}), rules: rules}
	dir := t.TempDir()
	data, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	f.cfgPath = filepath.Join(dir, "quiesce.yaml")
	require.NoError(t, os.WriteFile(f.cfgPath, data, 0o600))

	self, err := os.Executable()
	require.NoError(t, err)
	for i, r := range roles {
		f.procs = append(f.procs, f.start(self, dir, fmt.Sprintf("%s-%d", r.name, i), r))
	}
	var targets []string
	for _, p := range f.procs {
		f.waitReady(p)
		targets = append(targets, p.addr)
	}

	f.am = promtest.StartAlertmanager(t, promtest.AlertmanagerOptions{})
	f.prom = promtest.StartPrometheus(t, promtest.PrometheusOptions{
		// The job name the dashboard's process panel selects on.
		Jobs:          []promtest.ScrapeJob{{Name: "quiesce", Targets: targets}},
		RuleFiles:     map[string][]byte{"alerts.yml": shortened},
		Alertmanagers: []string{f.am.Addr},
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.NoError(t, f.prom.WaitTargetsUp(ctx, len(targets)), f.prom.Log())
	f.started = time.Now()
	return f
}

// awsEnv points the AWS SDK of quiesce's processes at moto's credentials
// and away from anything on this machine.
func awsEnv(dir string) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + mototest.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + mototest.SecretAccessKey,
		"AWS_REGION=" + region,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "aws-credentials"),
	}
}

func (f *fleet) start(self, dir, name string, r role) *proc {
	t := f.t
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	p := &proc{name: name, addr: addr, log: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	logf, err := os.Create(p.log)
	require.NoError(t, err)
	defer logf.Close()
	args := append([]string{"quiesce", r.name, "--config", f.cfgPath, "--nats", f.env.URL,
		"--metrics-addr", addr, "--log-format", "json", "--soft-stop", "2s"}, r.args...)
	p.cmd = exec.Command(self, args...)
	p.cmd.Env = append(os.Environ(), awsEnv(dir)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s (%s) logged:\n%s", p.name, p.addr, p.output())
		}
	})
	return p
}

func (f *fleet) waitReady(p *proc) {
	t := f.t
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited during start-up:\n%s", p.name, p.output())
		default:
		}
		if resp, err := client.Get("http://" + p.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within a minute:\n%s", p.name, p.output())
}

// clusters are the names of the fleet's configured clusters.
func (f *fleet) clusters() []string {
	var out []string
	for _, cl := range f.cfg.Clusters {
		out = append(out, cl.Name)
	}
	return out
}

// submit sends a backup request for cluster and returns the job's ID.
func (f *fleet) submit(cluster, requestID string) string {
	return f.env.Submit(f.t, testenv.Request(cluster, requestID))
}

// restore submits a restore request and waits for the restore to end.
func (f *fleet) restore(req messages.RestoreRequest) messages.Restore {
	t := f.t
	t.Helper()
	req.Schema = messages.RestoreRequestSchema
	data, err := json.Marshal(req)
	require.NoError(t, err)
	_, err = f.env.JS.Publish(t.Context(), messages.SubjectRestoreSubmit, data, jetstream.WithMsgID(req.RequestID))
	require.NoError(t, err)
	var r messages.Restore
	require.NoError(t, testenv.Eventually(3*time.Minute, func() bool {
		r, err = planner.LoadRestore(t.Context(), f.env.H, req.RestoreID())
		return err == nil && r.Phase.Terminal()
	}), "restore %s did not end: %+v (%v)", req.RestoreID(), r, err)
	return r
}

// waitJob waits for a job to end and checks it ended in phase.
func (f *fleet) waitJob(id string, phase messages.Phase) messages.Job {
	f.t.Helper()
	j := f.env.WaitTerminal(f.t, id, 3*time.Minute)
	require.Equal(f.t, phase, j.Phase, "job %s: %s", id, j.Error)
	return j
}

// expectAlert waits until Alertmanager has delivered alert name, firing, with
// exactly the labels of its rule plus labels, and checks its annotations are
// those of the rule, rendered for those labels.
func (f *fleet) expectAlert(name string, labels map[string]string) promtest.Notified {
	t := f.t
	t.Helper()
	rule, ok := f.rules[name]
	require.True(t, ok, "no alert %s in %s", name, rulesPath)
	want := map[string]string{"alertname": name}
	for k, v := range rule.Labels {
		want[k] = v
	}
	for k, v := range labels {
		want[k] = v
	}
	ctx, cancel := context.WithTimeout(t.Context(), alertTimeout)
	defer cancel()
	n, err := f.am.WaitFor(ctx, func(n promtest.Notified) bool { return equalLabels(n.Labels, want) })
	if err != nil {
		alerts, aerr := f.prom.Alerts(context.WithoutCancel(ctx))
		t.Fatalf("alert %s with labels %v: %v\nPrometheus holds: %+v %v", name, want, err, alerts, aerr)
	}
	require.Len(t, n.Annotations, len(rule.Annotations), "%s: annotations %v", name, n.Annotations)
	for key, tmpl := range rule.Annotations {
		require.Regexp(t, annotationPattern(tmpl, n.Labels), n.Annotations[key], "%s: annotation %s", name, key)
	}
	return n
}

func equalLabels(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

var templateAction = regexp.MustCompile(`\{\{-?\s*(.*?)\s*-?\}\}`)
var labelRef = regexp.MustCompile(`^\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)$`)

// annotationPattern turns an annotation template of the rule file into a
// regular expression for its rendering: {{ $labels.x }} must be the alert's
// own label x (a label the rule's expression dropped renders empty and does
// not match), {{ $value ... }} any number or duration, and the text around
// them as it is.
func annotationPattern(tmpl string, labels map[string]string) string {
	var b strings.Builder
	b.WriteString("^")
	last := 0
	for _, m := range templateAction.FindAllStringSubmatchIndex(tmpl, -1) {
		b.WriteString(regexp.QuoteMeta(tmpl[last:m[0]]))
		action := tmpl[m[2]:m[3]]
		if l := labelRef.FindStringSubmatch(action); l != nil {
			b.WriteString(regexp.QuoteMeta(labels[l[1]]))
		} else {
			b.WriteString(`\S+( \S+)*?`)
		}
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(tmpl[last:]))
	b.WriteString("$")
	return b.String()
}

// never checks that alert name was not delivered with labels among its own.
func (f *fleet) never(name string, labels map[string]string) {
	f.t.Helper()
	for _, n := range f.am.Received() {
		if n.Labels["alertname"] != name {
			continue
		}
		match := true
		for k, v := range labels {
			if n.Labels[k] != v {
				match = false
			}
		}
		require.False(f.t, match, "alert %s %v was delivered: %s", name, labels, n)
	}
}

// firingSinceStart lists the alerts Prometheus has had firing since the fleet
// started, with their labels.
func (f *fleet) firingSinceStart(ctx context.Context) []string {
	f.t.Helper()
	m, err := f.prom.QueryRange(ctx, `ALERTS{alertstate="firing"}`, f.started.Add(-time.Minute), time.Now(), time.Second)
	require.NoError(f.t, err)
	var out []string
	for _, s := range m {
		out = append(out, s.Metric.String())
	}
	sort.Strings(out)
	return out
}
