package planner

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// Policy is how a cluster is backed up. The planner stores it in each job's
// plan, so a job keeps the policy it was planned with.
type Policy struct {
	Name    string
	Cluster string
	// Schedule is a cron expression whose firings submit the policy's
	// JobRequest (SyncSchedules); empty for none.
	Schedule string
	// Retention says which successful backups are kept; the others'
	// managed snapshots are deleted. No rule keeps every backup. It rules
	// the backups' own snapshots, and their copies in every copy region
	// without rules of its own.
	Retention Retention
	// CopyRegions are the cluster's copy regions: every backup's snapshots
	// are copied to each of them.
	CopyRegions []string
	// CopyRetention gives some copy regions rules of their own for the
	// copies they hold.
	CopyRetention map[string]Retention
	// AllowPartial lets a job whose nodes did not all flush snapshot those
	// that did.
	AllowPartial bool
	// Hooks are commands run before the flush, after the snapshots are
	// initiated, and once the job ended.
	Hooks []messages.Hook
	// Deadlines of the phases and of the whole job; zero takes the
	// Default… constants.
	FlushTimeout    time.Duration
	SnapshotTimeout time.Duration
	FinishTimeout   time.Duration
	JobTimeout      time.Duration
	// ArmWindow is how long after the flush phase is released every node's
	// nodetool snapshot starts (messages.Task.FireAt): the time the workers
	// have to connect to every node first. Zero starts each node's command
	// as soon as its task arrives.
	ArmWindow time.Duration
}

// Defaults a policy gets where it says nothing.
const (
	DefaultFlushTimeout    = 10 * time.Minute
	DefaultSnapshotTimeout = 30 * time.Minute
	DefaultFinishTimeout   = 2 * time.Hour
	DefaultJobTimeout      = 4 * time.Hour
)

// DefaultPolicyName names the policy, every setting at its default, of a
// request that names none on a cluster without a DefaultPolicy.
const DefaultPolicyName = "default"

// policyJSON is the stored form of a Policy: plans written by earlier
// releases hold it, so its field names and its durations written as Go
// duration strings ("10m0s") do not change.
type policyJSON struct {
	Name            string               `json:"name"`
	Cluster         string               `json:"cluster"`
	Schedule        string               `json:"schedule,omitempty"`
	KeepLast        int                  `json:"keep_last,omitempty"`
	KeepWithin      jsonDuration         `json:"keep_within,omitempty"`
	KeepDaily       int                  `json:"keep_daily,omitempty"`
	KeepWeekly      int                  `json:"keep_weekly,omitempty"`
	KeepMonthly     int                  `json:"keep_monthly,omitempty"`
	KeepYearly      int                  `json:"keep_yearly,omitempty"`
	CountPartial    bool                 `json:"count_partial,omitempty"`
	CopyRegions     []string             `json:"copy_regions,omitempty"`
	CopyRetention   map[string]rulesJSON `json:"copy_retention,omitempty"`
	Hooks           []messages.Hook      `json:"hooks,omitempty"`
	AllowPartial    bool                 `json:"allow_partial,omitempty"`
	FlushTimeout    jsonDuration         `json:"flush_timeout,omitempty"`
	SnapshotTimeout jsonDuration         `json:"snapshot_timeout,omitempty"`
	FinishTimeout   jsonDuration         `json:"finish_timeout,omitempty"`
	JobTimeout      jsonDuration         `json:"job_timeout,omitempty"`
	ArmWindow       jsonDuration         `json:"arm_window,omitempty"`
}

// rulesJSON is the stored form of a copy region's Retention.
type rulesJSON struct {
	KeepLast     int          `json:"keep_last,omitempty"`
	KeepWithin   jsonDuration `json:"keep_within,omitempty"`
	KeepDaily    int          `json:"keep_daily,omitempty"`
	KeepWeekly   int          `json:"keep_weekly,omitempty"`
	KeepMonthly  int          `json:"keep_monthly,omitempty"`
	KeepYearly   int          `json:"keep_yearly,omitempty"`
	CountPartial bool         `json:"count_partial,omitempty"`
}

func toRulesJSON(r Retention) rulesJSON {
	return rulesJSON{KeepLast: r.KeepLast, KeepWithin: jsonDuration(r.KeepWithin), KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly,
		KeepMonthly: r.KeepMonthly, KeepYearly: r.KeepYearly, CountPartial: r.CountPartial}
}

func (v rulesJSON) retention() Retention {
	return Retention{KeepLast: v.KeepLast, KeepWithin: time.Duration(v.KeepWithin), KeepDaily: v.KeepDaily,
		KeepWeekly: v.KeepWeekly, KeepMonthly: v.KeepMonthly, KeepYearly: v.KeepYearly, CountPartial: v.CountPartial}
}

// MarshalJSON writes the policy in its stored form.
func (p Policy) MarshalJSON() ([]byte, error) {
	r := p.Retention
	var copies map[string]rulesJSON
	if len(p.CopyRetention) > 0 {
		copies = make(map[string]rulesJSON, len(p.CopyRetention))
		for region, c := range p.CopyRetention {
			copies[region] = toRulesJSON(c)
		}
	}
	return json.Marshal(policyJSON{
		CopyRegions: p.CopyRegions, CopyRetention: copies,
		Name: p.Name, Cluster: p.Cluster, Schedule: p.Schedule, AllowPartial: p.AllowPartial,
		KeepLast: r.KeepLast, KeepWithin: jsonDuration(r.KeepWithin), KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly,
		KeepMonthly: r.KeepMonthly, KeepYearly: r.KeepYearly, CountPartial: r.CountPartial, Hooks: p.Hooks,
		FlushTimeout: jsonDuration(p.FlushTimeout), SnapshotTimeout: jsonDuration(p.SnapshotTimeout),
		FinishTimeout: jsonDuration(p.FinishTimeout), JobTimeout: jsonDuration(p.JobTimeout),
		ArmWindow: jsonDuration(p.ArmWindow),
	})
}

// UnmarshalJSON reads the policy's stored form.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var v policyJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = Policy{
		Name: v.Name, Cluster: v.Cluster, Schedule: v.Schedule, AllowPartial: v.AllowPartial,
		Retention: Retention{KeepLast: v.KeepLast, KeepWithin: time.Duration(v.KeepWithin), KeepDaily: v.KeepDaily,
			KeepWeekly: v.KeepWeekly, KeepMonthly: v.KeepMonthly, KeepYearly: v.KeepYearly, CountPartial: v.CountPartial},
		CopyRegions:  v.CopyRegions,
		Hooks:        v.Hooks,
		FlushTimeout: time.Duration(v.FlushTimeout), SnapshotTimeout: time.Duration(v.SnapshotTimeout),
		FinishTimeout: time.Duration(v.FinishTimeout), JobTimeout: time.Duration(v.JobTimeout),
		ArmWindow: time.Duration(v.ArmWindow),
	}
	if len(v.CopyRetention) > 0 {
		p.CopyRetention = make(map[string]Retention, len(v.CopyRetention))
		for region, c := range v.CopyRetention {
			p.CopyRetention[region] = c.retention()
		}
	}
	return nil
}

// jsonDuration is a duration stored as a Go duration string.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = jsonDuration(v)
	return nil
}

// Cluster is what the planner needs of a Cassandra cluster.
type Cluster struct {
	Name string
	// DefaultPolicy names the policy of a request that names none. Empty:
	// a policy named DefaultPolicyName with every default.
	DefaultPolicy string
	// PerInstance makes one snapshot task of each node's data volumes,
	// taken together as a crash-consistent set, instead of one per volume.
	PerInstance bool
	// Agent sends the cluster's node tasks (flush, clear, node hooks) to
	// each node's own agent (quiesce agent) instead of to any worker.
	Agent bool
	// Nodes is the static inventory that StaticDiscoverer returns.
	Nodes []messages.Node
	// Snapshotter is the cluster's snapshotter kind (SnapshotterEBS, the
	// default, or SnapshotterFS): how a restore gets a snapshot's data
	// onto a node.
	Snapshotter string
	// Dirs are the Cassandra directories of every node that does not give
	// its own (a node found by EC2 discovery, say); nil when not
	// configured.
	Dirs *messages.NodeDirs
}

// Inventory is the clusters and policies a planner plans jobs for.
type Inventory struct {
	Clusters []Cluster
	Policies []Policy
}

// Cluster returns the named cluster, or false when there is none.
func (inv Inventory) Cluster(name string) (Cluster, bool) {
	for _, c := range inv.Clusters {
		if c.Name == name {
			return c, true
		}
	}
	return Cluster{}, false
}

// Policy resolves the policy a request names for a cluster: the one named,
// or the cluster's default, or, when the cluster has none, DefaultPolicyName
// with every default.
func (inv Inventory) Policy(cluster, name string) (Policy, error) {
	cl, ok := inv.Cluster(cluster)
	if !ok {
		return Policy{}, fmt.Errorf("unknown cluster %q", cluster)
	}
	if name == "" {
		name = cl.DefaultPolicy
	}
	if name == "" {
		return Policy{Name: DefaultPolicyName, Cluster: cluster}, nil
	}
	for _, p := range inv.Policies {
		if p.Cluster == cluster && p.Name == name {
			return p, nil
		}
	}
	return Policy{}, fmt.Errorf("cluster %q has no policy %q", cluster, name)
}

// Discoverer finds a cluster's nodes and their data volumes.
type Discoverer interface {
	Discover(ctx context.Context, cluster Cluster) ([]messages.Node, error)
}

// StaticDiscoverer returns a cluster's static inventory.
type StaticDiscoverer struct{}

var _ Discoverer = StaticDiscoverer{}

// Discover returns a copy of the cluster's Nodes: a plan never shares its
// nodes with the inventory.
func (StaticDiscoverer) Discover(_ context.Context, c Cluster) ([]messages.Node, error) {
	nodes := make([]messages.Node, len(c.Nodes))
	for i, n := range c.Nodes {
		n.Volumes = slices.Clone(n.Volumes)
		nodes[i] = n
	}
	return nodes, nil
}
