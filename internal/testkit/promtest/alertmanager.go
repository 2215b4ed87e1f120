package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

// AlertmanagerMissing is the reason a test is skipped when Alertmanager is
// not installed.
const AlertmanagerMissing = "alertmanager not found: apt-get install prometheus-alertmanager"

// AlertmanagerOptions configure an Alertmanager started for a test. Zero
// values take the defaults, chosen so a notification arrives within a second
// or two of the alert.
type AlertmanagerOptions struct {
	// GroupWait (default 1 s) and GroupInterval (default 1 s) of the route;
	// RepeatInterval (default 1 h) keeps an unchanged alert from being
	// notified again during a test.
	GroupWait, GroupInterval, RepeatInterval time.Duration
}

// Notified is one alert as Alertmanager's webhook delivered it.
type Notified struct {
	Status       string            `json:"status"` // firing or resolved
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// String is the alert's name and labels, for failure messages.
func (n Notified) String() string {
	return fmt.Sprintf("%s %s %s", n.Status, n.Labels[model.AlertNameLabel], model.LabelSet(toLabelSet(n.Labels)))
}

func toLabelSet(m map[string]string) model.LabelSet {
	ls := model.LabelSet{}
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

// webhookMessage is the JSON body Alertmanager posts to a webhook receiver
// (version 4).
type webhookMessage struct {
	Version  string     `json:"version"`
	Status   string     `json:"status"`
	Receiver string     `json:"receiver"`
	Alerts   []Notified `json:"alerts"`
}

// Alertmanager is a running Alertmanager whose only receiver is a webhook
// served by the test.
type Alertmanager struct {
	// Addr is host:port, for Prometheus' alerting configuration.
	Addr string

	proc *process

	mu       sync.Mutex
	received []Notified
	bad      []string // requests the webhook could not read
	changed  chan struct{}
}

// StartAlertmanager runs the installed Alertmanager (Debian's
// prometheus-alertmanager, or alertmanager) on a free loopback port with
// clustering off, routing every alert on its own (group_by: ['...']) to a
// webhook on another loopback port that records what it receives. It
// skips the test when Alertmanager is not installed.
func StartAlertmanager(t testing.TB, o AlertmanagerOptions) *Alertmanager {
	t.Helper()
	bin := lookPath(t, AlertmanagerMissing, "prometheus-alertmanager", "alertmanager")
	if o.GroupWait <= 0 {
		o.GroupWait = time.Second
	}
	if o.GroupInterval <= 0 {
		o.GroupInterval = time.Second
	}
	if o.RepeatInterval <= 0 {
		o.RepeatInterval = time.Hour
	}
	am := &Alertmanager{changed: make(chan struct{})}
	hook := httptest.NewServer(http.HandlerFunc(am.serveWebhook))
	t.Cleanup(hook.Close)

	cfg := map[string]any{
		"route": map[string]any{
			"receiver":        "test",
			"group_by":        []string{"..."},
			"group_wait":      model.Duration(o.GroupWait).String(),
			"group_interval":  model.Duration(o.GroupInterval).String(),
			"repeat_interval": model.Duration(o.RepeatInterval).String(),
		},
		"receivers": []any{map[string]any{
			"name": "test",
			"webhook_configs": []any{map[string]any{
				"url":           hook.URL + "/",
				"send_resolved": true,
			}},
		}},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatalf("promtest: %v", err)
	}
	storage := filepath.Join(dir, "data")
	proc, addr := start(t, "alertmanager", bin, dir, func(addr string) []string {
		return []string{
			"--config.file=" + cfgPath,
			"--storage.path=" + storage,
			"--web.listen-address=" + addr,
			// No gossip: a lone instance, and nothing listening beyond
			// loopback.
			"--cluster.listen-address=",
			"--log.level=info",
		}
	}, "/-/ready")
	am.proc, am.Addr = proc, addr
	return am
}

func (am *Alertmanager) serveWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	var msg webhookMessage
	if err == nil {
		err = json.Unmarshal(body, &msg)
	}
	am.mu.Lock()
	defer am.mu.Unlock()
	if err != nil {
		am.bad = append(am.bad, fmt.Sprintf("%v: %.200s", err, body))
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	am.received = append(am.received, msg.Alerts...)
	close(am.changed)
	am.changed = make(chan struct{})
}

// Log returns the end of what Alertmanager logged.
func (am *Alertmanager) Log() string { return am.proc.Log() }

// Received returns every alert the webhook received so far, in order.
func (am *Alertmanager) Received() []Notified {
	am.mu.Lock()
	defer am.mu.Unlock()
	return append([]Notified(nil), am.received...)
}

// WaitFor waits until the webhook has received a firing alert that match
// accepts, and returns it. When ctx ends first, the error lists what did
// arrive.
func (am *Alertmanager) WaitFor(ctx context.Context, match func(Notified) bool) (Notified, error) {
	for {
		am.mu.Lock()
		for _, n := range am.received {
			if n.Status == "firing" && match(n) {
				am.mu.Unlock()
				return n, nil
			}
		}
		changed := am.changed
		am.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Notified{}, fmt.Errorf("no matching alert reached the webhook (%w); received: %s%s",
				context.Cause(ctx), am.summary(), am.badSummary())
		}
	}
}

// Firing returns the distinct firing alerts received so far, by alert name
// and labels, in a stable order.
func (am *Alertmanager) Firing() []Notified {
	seen := map[string]Notified{}
	for _, n := range am.Received() {
		if n.Status == "firing" {
			seen[n.Fingerprint] = n
		}
	}
	out := make([]Notified, 0, len(seen))
	for _, n := range seen {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func (am *Alertmanager) summary() string {
	var s []string
	for _, n := range am.Received() {
		s = append(s, n.String())
	}
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, "; ")
}

func (am *Alertmanager) badSummary() string {
	am.mu.Lock()
	defer am.mu.Unlock()
	if len(am.bad) == 0 {
		return ""
	}
	return "; unreadable: " + strings.Join(am.bad, "; ")
}
