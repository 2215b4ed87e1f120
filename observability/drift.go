package observability

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// ConfigDrift shows whether the running replicas of a fleet agree on their
// configuration, as the replicas bucket says (topology.Presence): in metrics,
// in /readyz's detail, and in a log line whenever the picture changes. It
// never makes a process unready: replicas disagree during every rolling
// update, and each leaves what it does not know to one that does.
type ConfigDrift struct {
	kv   jetstream.KeyValue
	self messages.Replica
	log  zerolog.Logger

	info     *prometheus.GaugeVec
	configs  prometheus.Gauge
	replicas prometheus.Gauge
	readErr  prometheus.Gauge

	mu     sync.Mutex
	detail string
	last   string
}

// NewConfigDrift registers the drift metrics with reg for a process that
// announced itself as self in kv (the replicas bucket).
func NewConfigDrift(reg prometheus.Registerer, kv jetstream.KeyValue, self messages.Replica, log zerolog.Logger) (*ConfigDrift, error) {
	d := &ConfigDrift{kv: kv, self: self, log: log,
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "config", Name: "info",
			Help: "1, labelled with the fingerprint of this process's configuration (its clusters and policies)."}, []string{"config"}),
		configs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "config", Name: "fleet_configurations",
			Help: "Distinct configurations among the running replicas of the fleet, as this process last read them: more than 1 while replicas disagree (a rolling update)."}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "config", Name: "fleet_replicas",
			Help: "Running replicas of the fleet (every quiesce process with a role), as this process last read them."}),
		readErr: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "config", Name: "fleet_unreadable",
			Help: "1 when the replicas bucket could not be read at the last check, else 0."}),
	}
	d.info.WithLabelValues(self.Config).Set(1)
	for _, c := range []prometheus.Collector{d.info, d.configs, d.replicas, d.readErr} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	d.detail = fmt.Sprintf("configuration %s (%s)", self.Config, clusterList(self.Clusters))
	return d, nil
}

// driftNames are the series ConfigDrift exports.
func driftNames() []string {
	return []string{
		Namespace + "_config_info", Namespace + "_config_fleet_configurations",
		Namespace + "_config_fleet_replicas", Namespace + "_config_fleet_unreadable",
	}
}

// Run checks the replicas every interval until ctx ends.
func (d *ConfigDrift) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = d.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check reads the running replicas once, sets the metrics and the detail,
// and logs when the fleet's configurations changed since the last check.
func (d *ConfigDrift) Check(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reps, err := topology.LiveReplicas(rctx, d.kv)
	if err != nil {
		d.readErr.Set(1)
		return err
	}
	d.readErr.Set(0)
	if !slices.ContainsFunc(reps, func(r messages.Replica) bool { return r.ID == d.self.ID }) {
		// This process's own entry may not have been written yet.
		reps = append(reps, d.self)
	}
	groups := map[string][]messages.Replica{}
	for _, r := range reps {
		groups[r.Config] = append(groups[r.Config], r)
	}
	d.configs.Set(float64(len(groups)))
	d.replicas.Set(float64(len(reps)))

	summary := describeGroups(groups, d.self)
	var detail string
	if len(groups) == 1 {
		detail = fmt.Sprintf("configuration %s (%s): the %d running replicas agree", d.self.Config, clusterList(d.self.Clusters), len(reps))
	} else {
		detail = fmt.Sprintf("configuration %s (%s): the running replicas disagree, %d configurations among %d replicas: %s",
			d.self.Config, clusterList(d.self.Clusters), len(groups), len(reps), summary)
	}
	d.mu.Lock()
	changed := summary != d.last
	d.last, d.detail = summary, detail
	d.mu.Unlock()
	if changed {
		if len(groups) == 1 {
			d.log.Info().Str("config", d.self.Config).Int("replicas", len(reps)).Msg("replicas agree on their configuration")
		} else {
			d.log.Warn().Str("config", d.self.Config).Int("configurations", len(groups)).Int("replicas", len(reps)).
				Str("fleet", summary).Msg("replicas run different configurations; each leaves clusters it does not know to the others")
		}
	}
	return nil
}

// Detail is the line /readyz shows about the fleet's configurations.
func (d *ConfigDrift) Detail() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.detail
}

// describeGroups names each configuration with its clusters and replicas,
// this process's first, then by fingerprint.
func describeGroups(groups map[string][]messages.Replica, self messages.Replica) string {
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i] == self.Config) != (keys[j] == self.Config) {
			return keys[i] == self.Config
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		reps := groups[k]
		names := make([]string, 0, len(reps))
		for _, r := range reps {
			names = append(names, r.Name+" ("+strings.Join(r.Roles, ",")+")")
		}
		sort.Strings(names)
		if len(names) > 5 {
			names = append(names[:5], fmt.Sprintf("%d more", len(reps)-5))
		}
		parts = append(parts, fmt.Sprintf("%s [%s] on %s", k, clusterList(reps[0].Clusters), strings.Join(names, ", ")))
	}
	return strings.Join(parts, "; ")
}

func clusterList(clusters []string) string {
	if len(clusters) == 0 {
		return "no cluster"
	}
	c := slices.Clone(clusters)
	sort.Strings(c)
	if len(c) > 10 {
		return "clusters " + strings.Join(c[:10], ", ") + fmt.Sprintf(" and %d more", len(c)-10)
	}
	return "clusters " + strings.Join(c, ", ")
}
