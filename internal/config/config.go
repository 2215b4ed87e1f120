package config

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/messages"
)

// Duration is a time.Duration written as "90s" or "10m" in the file.
type Duration time.Duration

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Config is the whole file.
type Config struct {
	NATS     NATS      `json:"nats"`
	Clusters []Cluster `json:"clusters"`
	Policies []Policy  `json:"policies,omitempty"`
	// EC2 holds what is shared by every cluster of an AWS account: its
	// request budget.
	EC2 EC2 `json:"ec2,omitempty"`
}

// EC2 configures how the fleet spends each account's EC2 request budget.
type EC2 struct {
	// Limits override AWS's default budget (5 calls a second, bucket 100,
	// for snapshot and volume calls; 20 a second, bucket 100, for
	// describes) where an account's limits were raised, or where quiesce
	// must leave part of the budget to other tools. The most specific
	// limit matching an account, region and operation applies.
	Limits []EC2Limit `json:"limits,omitempty"`
}

// EC2Limit is the budget of one EC2 operation, in one account and region,
// or in every one the limit leaves empty.
type EC2Limit struct {
	// Account is a 12-digit AWS account ID; empty: every account.
	Account string `json:"account,omitempty"`
	// Region is an AWS region; empty: every region.
	Region string `json:"region,omitempty"`
	// Operation is one of EC2Operations.
	Operation string `json:"operation"`
	// Rate is the sustained calls per second.
	Rate float64 `json:"rate"`
	// Burst is the most calls at once; zero keeps AWS's default bucket.
	Burst int `json:"burst,omitempty"`
}

// EC2Operations are the EC2 operations quiesce calls and paces, each by a
// budget of its own (worker/ebs.Operations; a test keeps the two lists
// equal).
var EC2Operations = []string{
	"CreateSnapshot", "CreateSnapshots", "DeleteSnapshot", "CopySnapshot",
	"DescribeSnapshots", "DescribeInstances", "DescribeVolumes",
	"CreateVolume", "AttachVolume", "DetachVolume", "DeleteVolume",
}

// NATS says how to reach JetStream and how to lay out the topology.
type NATS struct {
	URL string `json:"url,omitempty"`
	// CredsFile is a NATS credentials file (JWT and seed).
	CredsFile string `json:"creds_file,omitempty"`
	// Replicas of every stream and bucket: 1 for development, 3 in production.
	Replicas int `json:"replicas,omitempty"`
	// AckWait is how long a task may go unacknowledged before JetStream
	// hands it to another worker: how soon the work of a worker that died,
	// stalled or lost its network is taken up again (default 30s, at least
	// 1s). Workers heartbeat well within it, and a snapshot task's lease
	// lasts as long.
	AckWait Duration `json:"ack_wait,omitempty"`
	// MaxDeliver bounds the deliveries of one task, of every kind: a task
	// handed out that often without succeeding fails (default 5, await 3).
	MaxDeliver int `json:"max_deliver,omitempty"`
	// TLS CA, certificate and key files, when the server requires TLS.
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// Cluster is one Cassandra cluster.
type Cluster struct {
	Name   string `json:"name"`
	Region string `json:"region,omitempty"`
	// Account is the 12-digit ID of the AWS account of the cluster's
	// volumes: the budget its EC2 calls are paced by. Empty: the account of
	// role_arn, else the default credentials' ("default" in metrics).
	Account string `json:"account,omitempty"`
	// RoleARN is assumed through STS for a cluster in another account.
	RoleARN string `json:"role_arn,omitempty"`
	// Executor reaches the nodes: "ssh" (a worker connects to each node),
	// "agent" (quiesce agent on each node takes that node's tasks; no SSH
	// key anywhere), or "local" (commands run on the worker's own host: one
	// host, such as the demo, never a fleet).
	Executor string `json:"executor,omitempty"`
	// Snapshotter snapshots volumes: "ebs" or "fs".
	Snapshotter string `json:"snapshotter,omitempty"`
	// Nodetool is the nodetool command and its leading arguments, e.g.
	// ["/opt/cassandra/bin/nodetool", "-h", "127.0.0.1"].
	Nodetool []string `json:"nodetool,omitempty"`
	// NodetoolEnv is set for nodetool (a non-login shell often lacks JAVA_HOME).
	NodetoolEnv map[string]string `json:"nodetool_env,omitempty"`
	SSH         SSH               `json:"ssh,omitempty"`
	FS          FS                `json:"fs,omitempty"`
	EBS         EBS               `json:"ebs,omitempty"`
	// Directories are where Cassandra keeps its files on every node (a
	// node may give its own). The flush syncs the file systems holding
	// Directories.Data; without them it syncs every file system of the node,
	// until a backup has found them (nodetool datapaths).
	Directories *Directories `json:"directories,omitempty"`
	// Nodes is the static inventory. Discovery, when set, replaces it.
	Nodes     []Node     `json:"nodes,omitempty"`
	Discovery *Discovery `json:"discovery,omitempty"`
	// DataCenters place the cluster's Cassandra data centres in AWS regions
	// of their own: each data centre's volumes are snapshotted, paced,
	// catalogued and retired in its region. With data centres, every static
	// node names its data centre (dc), and discovery is per data centre.
	DataCenters []DataCenter `json:"datacenters,omitempty"`
	// DefaultPolicy names the policy a request without one gets. When empty
	// the cluster uses built-in defaults.
	DefaultPolicy string `json:"default_policy,omitempty"`
	// BackupMaxAge is how old the cluster's newest successful backup may get
	// before it counts as stale (default DefaultBackupMaxAge). Every process
	// exports it as quiesce_backup_max_age_seconds, the threshold of the
	// stale-backup alert, and the never-backed-up alert watches every
	// cluster that has one.
	BackupMaxAge Duration `json:"backup_max_age,omitempty"`
	// CassandraService says how a restore stops, starts and finds running
	// Cassandra on the cluster's nodes.
	CassandraService *CassandraService `json:"cassandra_service,omitempty"`
	// Drill restores the cluster's backups into a scratch cluster, verifies
	// and tears it down: quiesce drill.
	Drill *Drill `json:"drill,omitempty"`
}

// CassandraService is how Cassandra runs on a cluster's nodes: a systemd
// unit, or start, stop and is_running commands (argv, run through the
// cluster's executor; is_running exits 0 when Cassandra runs).
type CassandraService struct {
	Unit      string   `json:"unit,omitempty"`
	Start     []string `json:"start,omitempty"`
	Stop      []string `json:"stop,omitempty"`
	IsRunning []string `json:"is_running,omitempty"`
	// Sudo runs them, and the restore's file steps, through "sudo -n".
	Sudo bool `json:"sudo,omitempty"`
	// CQLPort is the native transport port; default 9042.
	CQLPort int `json:"cql_port,omitempty"`
}

// Drill is a cluster's restore drill.
type Drill struct {
	// Target names the configured cluster the drill restores into: scratch
	// nodes, one per node of the backup, never the cluster itself.
	Target string `json:"target"`
	// NewIdentity gives the restored nodes new host IDs (the snapshot's
	// system.local dropped, each node started with its source's tokens);
	// by default they keep the source's host IDs and cluster name.
	NewIdentity bool `json:"new_identity,omitempty"`
	// Checks are CQL queries run at consistency ALL on the restored
	// cluster, each with the count it must return.
	Checks []DrillCheck `json:"checks,omitempty"`
	// MaxAge is how old the cluster's last successful drill may grow
	// before the alert fires (the alert rule reads it from the metric
	// quiesce_drill_max_age_seconds); default 8 days.
	MaxAge Duration `json:"max_age,omitempty"`
	// Schedule runs the drill by itself: a cron expression as a policy's
	// schedule (UTC) whose firings submit a DrillRequest that a worker
	// process runs. Empty: the drill runs only when asked (quiesce drill).
	Schedule string `json:"schedule,omitempty"`
}

// DrillCheck is a CQL query and the count it must return.
type DrillCheck struct {
	Query  string `json:"query"`
	Expect int64  `json:"expect"`
}

// DefaultBackupMaxAge is a daily schedule plus slack: the age at which a
// cluster's newest backup counts as stale when its BackupMaxAge is unset.
const DefaultBackupMaxAge = 26 * time.Hour

// MaxAge returns the cluster's BackupMaxAge, or DefaultBackupMaxAge.
func (c Cluster) MaxAge() time.Duration {
	if c.BackupMaxAge > 0 {
		return time.Duration(c.BackupMaxAge)
	}
	return DefaultBackupMaxAge
}

// DataCenter is one Cassandra data centre of a cluster, and where in AWS it
// runs.
type DataCenter struct {
	// Name is the data centre's name, as Cassandra's snitch knows it.
	Name string `json:"name"`
	// Region, Account and RoleARN default to the cluster's.
	Region  string `json:"region,omitempty"`
	Account string `json:"account,omitempty"`
	RoleARN string `json:"role_arn,omitempty"`
	// Discovery finds the data centre's nodes in its region, with its role.
	Discovery *Discovery `json:"discovery,omitempty"`
}

// Node is one host of a static inventory.
type Node struct {
	Name string `json:"name"`
	// DC names the node's data centre, one of the cluster's datacenters.
	DC         string   `json:"dc,omitempty"`
	Address    string   `json:"address,omitempty"`
	InstanceID string   `json:"instance_id,omitempty"`
	AZ         string   `json:"az,omitempty"`
	Volumes    []Volume `json:"volumes"`
	// Nodetool overrides the cluster's nodetool command for this node.
	Nodetool []string `json:"nodetool,omitempty"`
	// Directories override the cluster's for this node, field by field.
	Directories *Directories `json:"directories,omitempty"`
}

// Directories are a Cassandra node's directories, as its cassandra.yaml
// sets them. Every path is absolute.
type Directories struct {
	Data        []string `json:"data,omitempty"`
	CommitLog   string   `json:"commitlog,omitempty"`
	Hints       string   `json:"hints,omitempty"`
	SavedCaches string   `json:"saved_caches,omitempty"`
	CDCRaw      string   `json:"cdc_raw,omitempty"`
}

// Volume is one data volume of a static node.
type Volume struct {
	ID     string            `json:"id"`
	Device string            `json:"device,omitempty"`
	Path   string            `json:"path,omitempty"`
	Tags   map[string]string `json:"tags,omitempty"`
}

// SSH says how to reach a cluster's nodes over SSH.
type SSH struct {
	User string `json:"user,omitempty"`
	Port int    `json:"port,omitempty"`
	// IdentityFiles are private keys (ed25519, ECDSA or RSA). A certificate
	// beside a key as "<key>-cert.pub" is used with it.
	IdentityFiles []string `json:"identity_files,omitempty"`
	// PassphraseEnv or PassphraseFile supply the key's passphrase.
	PassphraseEnv  string `json:"passphrase_env,omitempty"`
	PassphraseFile string `json:"passphrase_file,omitempty"`
	// Agent uses the ssh-agent at $SSH_AUTH_SOCK.
	Agent bool `json:"agent,omitempty"`
	// KnownHosts files; default ~/.ssh/known_hosts.
	KnownHosts []string `json:"known_hosts,omitempty"`
	// TrustOnFirstUse pins the first host key seen and refuses a later change.
	TrustOnFirstUse bool `json:"trust_on_first_use,omitempty"`
	// Bastion is a jump host, "user@host:port".
	Bastion string `json:"bastion,omitempty"`
	// Sudo runs nodetool through "sudo -n".
	Sudo bool `json:"sudo,omitempty"`

	ConnectTimeout    Duration `json:"connect_timeout,omitempty"`
	CommandTimeout    Duration `json:"command_timeout,omitempty"`
	KeepaliveInterval Duration `json:"keepalive_interval,omitempty"`
	// MaxSessionsPerHost bounds concurrent sessions on one node.
	MaxSessionsPerHost int `json:"max_sessions_per_host,omitempty"`
}

// FS configures the fs snapshot driver.
type FS struct {
	// Store is the directory that holds snapshots.
	Store string `json:"store,omitempty"`
}

// EBS configures the ebs snapshot driver and EC2 discovery.
type EBS struct {
	// Endpoint overrides the EC2 endpoint (tests point it at moto).
	Endpoint string `json:"endpoint,omitempty"`
	// PerInstance takes one crash-consistent CreateSnapshots set per node
	// instead of one CreateSnapshot per volume.
	PerInstance bool `json:"per_instance,omitempty"`
	// CopyVolumeTags copies each volume's own tags to its snapshot.
	CopyVolumeTags bool `json:"copy_volume_tags,omitempty"`
	// CopyRegions receive a copy of every snapshot.
	CopyRegions []string `json:"copy_regions,omitempty"`
}

// Discovery finds a cluster's nodes in EC2.
type Discovery struct {
	// InstanceTags selects running instances carrying every tag.
	InstanceTags map[string]string `json:"instance_tags"`
	// Devices selects data volumes by device name; VolumeTags by tag.
	Devices    []string          `json:"devices,omitempty"`
	VolumeTags map[string]string `json:"volume_tags,omitempty"`
	// IncludeRoot keeps the root volume (excluded by default).
	IncludeRoot bool `json:"include_root,omitempty"`
}

// Policy is how a cluster is backed up.
type Policy struct {
	Name    string `json:"name"`
	Cluster string `json:"cluster"`
	// Schedule is a cron expression (five- or six-field, @daily, @every
	// 6h; UTC) whose firings submit the policy's JobRequest.
	Schedule string `json:"schedule,omitempty"`
	// Retention: which successful backups are kept; the managed snapshots of
	// the others are deleted. A backup is kept when any rule keeps it; with
	// no rule every backup is kept. The newest and held backups are always
	// kept.
	//
	// KeepLast keeps the newest N backups; KeepWithin every backup younger
	// than it; KeepDaily/Weekly/Monthly/Yearly the newest backup of each of
	// the last N days, ISO weeks, months and years (UTC) that have one.
	KeepLast    int      `json:"keep_last,omitempty"`
	KeepWithin  Duration `json:"keep_within,omitempty"`
	KeepDaily   int      `json:"keep_daily,omitempty"`
	KeepWeekly  int      `json:"keep_weekly,omitempty"`
	KeepMonthly int      `json:"keep_monthly,omitempty"`
	KeepYearly  int      `json:"keep_yearly,omitempty"`
	// CountPartial lets partial backups fill the slots of the keep rules;
	// without it only keep_within, a hold, or being the newest keeps one.
	CountPartial bool `json:"count_partial,omitempty"`
	// CopyRetention gives a copy region (one of the cluster's
	// ebs.copy_regions) rules of its own for the copies it holds; the
	// backups' own snapshots follow the rules above, and so do the copies
	// in a copy region without rules of its own. A backup leaves the
	// catalog once no region keeps it.
	CopyRetention map[string]RetentionRules `json:"copy_retention,omitempty"`
	AllowPartial  bool                      `json:"allow_partial,omitempty"`

	// Hooks are commands run before the flush, after the snapshots are
	// initiated, and once each job ended.
	Hooks []Hook `json:"hooks,omitempty"`

	// Timeouts; zero takes planner.Default….
	FlushTimeout    Duration `json:"flush_timeout,omitempty"`
	SnapshotTimeout Duration `json:"snapshot_timeout,omitempty"`
	FinishTimeout   Duration `json:"finish_timeout,omitempty"`
	JobTimeout      Duration `json:"job_timeout,omitempty"`
	// ArmWindow is how long after the flush phase opens every node's
	// nodetool snapshot starts, all at once: the workers connect to every
	// node in the meantime. Unset takes DefaultArmWindow; 0s starts each
	// node's command as soon as its task reaches a worker.
	ArmWindow *Duration `json:"arm_window,omitempty"`
}

// DefaultArmWindow is a policy's arm_window where it sets none.
const DefaultArmWindow = 2 * time.Second

// Arm is the policy's arm window: its arm_window, or DefaultArmWindow.
func (p Policy) Arm() time.Duration {
	if p.ArmWindow == nil {
		return DefaultArmWindow
	}
	return time.Duration(*p.ArmWindow)
}

// RetentionRules are the keep rules of one copy region; they mean what the
// policy's rules of the same names mean.
type RetentionRules struct {
	KeepLast     int      `json:"keep_last,omitempty"`
	KeepWithin   Duration `json:"keep_within,omitempty"`
	KeepDaily    int      `json:"keep_daily,omitempty"`
	KeepWeekly   int      `json:"keep_weekly,omitempty"`
	KeepMonthly  int      `json:"keep_monthly,omitempty"`
	KeepYearly   int      `json:"keep_yearly,omitempty"`
	CountPartial bool     `json:"count_partial,omitempty"`
}

// Hook is a command a policy runs at one point of each job.
type Hook struct {
	Name string `json:"name"`
	// Point is before, after or complete.
	Point string `json:"point"`
	// Scope is node (every node, through the cluster's executor; the
	// default) or job (once, on a worker).
	Scope string `json:"scope,omitempty"`
	// Command is an argv; the first word an absolute path. No shell runs it
	// unless it names one.
	Command []string `json:"command"`
	// Timeout stops each run; required, and within the phase it runs in.
	Timeout Duration `json:"timeout"`
	// OnError is fail (the default for before and after) or continue (the
	// only choice for complete, which runs after the job ended).
	OnError string `json:"on_error,omitempty"`
	// Retries is how many more times a failed run is tried (at most 10).
	Retries int `json:"retries,omitempty"`
}

// Load reads and validates a file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML or JSON strictly (an unknown key is an error) and
// validates the result.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks names, references and drivers; it returns every problem.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.NATS.Replicas < 0 || c.NATS.Replicas > 5 {
		add("nats.replicas %d: must be between 1 and 5", c.NATS.Replicas)
	}
	if c.NATS.AckWait != 0 && time.Duration(c.NATS.AckWait) < time.Second {
		add("nats.ack_wait %s: must be at least 1s", time.Duration(c.NATS.AckWait))
	}
	if c.NATS.MaxDeliver < 0 || c.NATS.MaxDeliver > 1000 {
		add("nats.max_deliver %d: must be between 1 and 1000", c.NATS.MaxDeliver)
	}
	clusters := map[string]bool{}
	for i, cl := range c.Clusters {
		where := fmt.Sprintf("clusters[%d]", i)
		if err := messages.ValidateCluster(cl.Name); err != nil {
			add("%s.name: %w", where, err)
		} else if clusters[cl.Name] {
			add("%s.name %q: duplicate cluster", where, cl.Name)
		}
		clusters[cl.Name] = true
		switch cl.Executor {
		case "", "ssh", "local", "agent":
		default:
			add("%s.executor %q: must be \"ssh\", \"agent\" or \"local\"", where, cl.Executor)
		}
		switch cl.Snapshotter {
		case "", "ebs", "fs":
		default:
			add("%s.snapshotter %q: must be \"ebs\" or \"fs\"", where, cl.Snapshotter)
		}
		if cl.Snapshotter == "fs" && cl.FS.Store == "" {
			add("%s.fs.store: required with snapshotter \"fs\"", where)
		}
		dcDiscovery := false
		for _, dc := range cl.DataCenters {
			dcDiscovery = dcDiscovery || dc.Discovery != nil
		}
		if len(cl.Nodes) == 0 && cl.Discovery == nil && !dcDiscovery {
			add("%s: has neither nodes nor discovery", where)
		}
		if cl.Discovery != nil && len(cl.Discovery.InstanceTags) == 0 {
			add("%s.discovery.instance_tags: at least one tag is required", where)
		}
		checkRegion(add, where+".region", cl.Region)
		checkAccount(add, where+".account", cl.Account)
		for k, r := range cl.EBS.CopyRegions {
			checkRegion(add, fmt.Sprintf("%s.ebs.copy_regions[%d]", where, k), r)
		}
		dcs := validateDataCenters(add, where, cl)
		if cl.Directories != nil {
			if err := cl.Directories.validate(); err != nil {
				add("%s.directories: %w", where, err)
			}
		}
		if sv := cl.CassandraService; sv != nil {
			switch {
			case sv.Unit != "" && (len(sv.Start) > 0 || len(sv.Stop) > 0 || len(sv.IsRunning) > 0):
				add("%s.cassandra_service: give a unit or start/stop/is_running, not both", where)
			case sv.Unit == "" && (len(sv.Start) == 0 || len(sv.Stop) == 0 || len(sv.IsRunning) == 0):
				add("%s.cassandra_service: a unit, or all of start, stop and is_running, is required", where)
			}
			if sv.CQLPort < 0 || sv.CQLPort > 65535 {
				add("%s.cassandra_service.cql_port %d: not a port", where, sv.CQLPort)
			}
		}
		nodes := map[string]bool{}
		vols := map[string]bool{}
		for j, n := range cl.Nodes {
			nw := fmt.Sprintf("%s.nodes[%d]", where, j)
			if n.Directories != nil {
				if err := n.Directories.validate(); err != nil {
					add("%s.directories: %w", nw, err)
				}
			}
			if err := messages.ValidateTarget("name", n.Name); err != nil {
				add("%s.name: %w", nw, err)
			} else if nodes[n.Name] {
				add("%s.name %q: duplicate node", nw, n.Name)
			}
			nodes[n.Name] = true
			switch {
			case len(cl.DataCenters) > 0 && n.DC == "":
				add("%s.dc: required, the cluster has datacenters (one of %s)", nw, strings.Join(dcs, ", "))
			case n.DC != "" && len(cl.DataCenters) == 0:
				add("%s.dc %q: the cluster has no datacenters", nw, n.DC)
			case n.DC != "" && !slices.Contains(dcs, n.DC):
				add("%s.dc %q: no such datacenter (one of %s)", nw, n.DC, strings.Join(dcs, ", "))
			}
			if len(n.Volumes) == 0 {
				add("%s: has no volumes", nw)
			}
			for k, v := range n.Volumes {
				if err := messages.ValidateTarget("id", v.ID); err != nil {
					add("%s.volumes[%d].id: %w", nw, k, err)
				} else if vols[v.ID] {
					add("%s.volumes[%d].id %q: volume listed twice", nw, k, v.ID)
				}
				vols[v.ID] = true
				if cl.Snapshotter == "fs" && v.Path == "" {
					add("%s.volumes[%d].path: required with snapshotter \"fs\"", nw, k)
				}
			}
		}
	}
	policies := map[string]bool{}
	for i, p := range c.Policies {
		where := fmt.Sprintf("policies[%d]", i)
		if err := messages.ValidateCluster(p.Name); err != nil {
			add("%s.name: %w", where, err)
		} else if policies[p.Cluster+"/"+p.Name] {
			add("%s.name %q: duplicate policy for cluster %q", where, p.Name, p.Cluster)
		}
		policies[p.Cluster+"/"+p.Name] = true
		if !clusters[p.Cluster] {
			add("%s.cluster %q: no such cluster", where, p.Cluster)
		}
		checkRules(add, where, RetentionRules{KeepLast: p.KeepLast, KeepWithin: p.KeepWithin, KeepDaily: p.KeepDaily,
			KeepWeekly: p.KeepWeekly, KeepMonthly: p.KeepMonthly, KeepYearly: p.KeepYearly})
		if len(p.CopyRetention) > 0 {
			cl, known := c.Cluster(p.Cluster)
			var copyRegions []string
			if known {
				copyRegions = cl.EBS.CopyRegions
			}
			for _, region := range slices.Sorted(maps.Keys(p.CopyRetention)) {
				rw := fmt.Sprintf("%s.copy_retention.%s", where, region)
				switch {
				case !known:
				case cl.Snapshotter == "fs":
					add("%s: the cluster %q has snapshotter \"fs\", which makes no copies", rw, p.Cluster)
				case len(copyRegions) == 0:
					add("%s: the cluster %q has no ebs.copy_regions", rw, p.Cluster)
				case !slices.Contains(copyRegions, region):
					add("%s: not one of the cluster's ebs.copy_regions (%s)", rw, strings.Join(copyRegions, ", "))
				}
				rules := p.CopyRetention[region]
				checkRules(add, rw, rules)
				if !rules.any() {
					add("%s: no keep rule, so it keeps nothing; give keep_last, keep_within or a calendar rule, or leave the region out to follow the policy's rules", rw)
				}
			}
		}
		if p.Schedule != "" {
			if _, err := messages.ScheduleExpr(p.Schedule); err != nil {
				add("%s.schedule: %w", where, err)
			}
		}
		errs = append(errs, p.validateHooks(where)...)
		if flush := cmp.Or(time.Duration(p.FlushTimeout), defaultFlushTimeout); p.Arm() >= flush {
			add("%s.arm_window %s: must be shorter than the policy's flush_timeout (%s), or no node would be flushed in time", where, p.Arm(), flush)
		}
	}
	for i, cl := range c.Clusters {
		if cl.DefaultPolicy != "" && !policies[cl.Name+"/"+cl.DefaultPolicy] {
			add("clusters[%d].default_policy %q: no such policy for this cluster", i, cl.DefaultPolicy)
		}
		if d := cl.Drill; d != nil {
			target, ok := c.Cluster(d.Target)
			switch {
			case d.Target == cl.Name:
				add("clusters[%d].drill.target %q: a drill never restores into the cluster itself", i, d.Target)
			case !ok:
				add("clusters[%d].drill.target %q: no such cluster", i, d.Target)
			case target.CassandraService == nil:
				add("clusters[%d].drill.target %q: has no cassandra_service (how the drill starts and stops it)", i, d.Target)
			}
			for j, ch := range d.Checks {
				if strings.TrimSpace(ch.Query) == "" {
					add("clusters[%d].drill.checks[%d].query: required", i, j)
				}
			}
			if d.MaxAge < 0 {
				add("clusters[%d].drill.max_age: must not be negative", i)
			}
			if d.Schedule != "" {
				if _, err := messages.ScheduleExpr(d.Schedule); err != nil {
					add("clusters[%d].drill.schedule: %w", i, err)
				}
			}
		}
	}
	limits := map[EC2Limit]bool{}
	for i, l := range c.EC2.Limits {
		where := fmt.Sprintf("ec2.limits[%d]", i)
		checkRegion(add, where+".region", l.Region)
		checkAccount(add, where+".account", l.Account)
		if !slices.Contains(EC2Operations, l.Operation) {
			add("%s.operation %q: must be one of %s", where, l.Operation, strings.Join(EC2Operations, ", "))
		}
		if !(l.Rate > 0) || math.IsInf(l.Rate, 0) {
			add("%s.rate %v: must be a number of calls per second above 0", where, l.Rate)
		}
		if l.Burst < 0 {
			add("%s.burst %d: must not be negative", where, l.Burst)
		}
		key := EC2Limit{Account: l.Account, Region: l.Region, Operation: l.Operation}
		if limits[key] {
			add("%s: a second limit for operation %q, account %q, region %q", where, l.Operation, l.Account, l.Region)
		}
		limits[key] = true
	}
	return errors.Join(errs...)
}

var (
	regionPattern  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	accountPattern = regexp.MustCompile(`^[0-9]{12}$`)
)

func checkRegion(add func(string, ...any), where, region string) {
	if region != "" && !regionPattern.MatchString(region) {
		add("%s %q: not an AWS region (such as us-east-1)", where, region)
	}
}

func checkAccount(add func(string, ...any), where, account string) {
	if account != "" && !accountPattern.MatchString(account) {
		add("%s %q: an AWS account ID is 12 digits", where, account)
	}
}

// checkRules names every rule of a rule set that keeps nothing.
func checkRules(add func(string, ...any), where string, r RetentionRules) {
	for _, c := range []struct {
		key string
		n   int
	}{{"keep_last", r.KeepLast}, {"keep_daily", r.KeepDaily}, {"keep_weekly", r.KeepWeekly},
		{"keep_monthly", r.KeepMonthly}, {"keep_yearly", r.KeepYearly}} {
		if c.n < 0 {
			add("%s.%s %d: must not be negative", where, c.key, c.n)
		}
	}
	if w := time.Duration(r.KeepWithin); w > 0 && w < time.Minute {
		add("%s.keep_within %s: keeps nothing; use at least 1m", where, w)
	}
}

// any reports whether the rules keep anything at all.
func (r RetentionRules) any() bool {
	return r.KeepLast > 0 || time.Duration(r.KeepWithin) >= time.Minute || r.KeepDaily > 0 || r.KeepWeekly > 0 ||
		r.KeepMonthly > 0 || r.KeepYearly > 0
}

// validateDataCenters checks a cluster's data centres and returns their
// names.
func validateDataCenters(add func(string, ...any), where string, cl Cluster) []string {
	var names []string
	if len(cl.DataCenters) > 0 && cl.Discovery != nil {
		add("%s.discovery: a cluster with datacenters discovers each data centre's nodes (datacenters[].discovery)", where)
	}
	for j, dc := range cl.DataCenters {
		dw := fmt.Sprintf("%s.datacenters[%d]", where, j)
		if err := messages.ValidateTarget("name", dc.Name); err != nil {
			add("%s.name: %w", dw, err)
		} else if slices.Contains(names, dc.Name) {
			add("%s.name %q: duplicate datacenter", dw, dc.Name)
		}
		names = append(names, dc.Name)
		checkRegion(add, dw+".region", dc.Region)
		checkAccount(add, dw+".account", dc.Account)
		if dc.Region == "" && cl.Region == "" {
			add("%s.region: required when the cluster has no region", dw)
		}
		if dc.Discovery != nil && len(dc.Discovery.InstanceTags) == 0 {
			add("%s.discovery.instance_tags: at least one tag is required", dw)
		}
		static := slices.ContainsFunc(cl.Nodes, func(n Node) bool { return n.DC == dc.Name })
		switch {
		case dc.Discovery == nil && !static:
			add("%s: data centre %q has neither discovery nor nodes", dw, dc.Name)
		case dc.Discovery != nil && static:
			add("%s: data centre %q has discovery and static nodes: use one", dw, dc.Name)
		}
	}
	return names
}

func (d Directories) validate() error {
	return messages.NodeDirs{Data: d.Data, CommitLog: d.CommitLog, Hints: d.Hints, SavedCaches: d.SavedCaches, CDCRaw: d.CDCRaw}.Validate()
}

// Cluster returns the named cluster.
func (c *Config) Cluster(name string) (*Cluster, bool) {
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			return &c.Clusters[i], true
		}
	}
	return nil, false
}

// Policy resolves the policy a request names (or the cluster's default).
func (c *Config) Policy(cluster, name string) (Policy, error) {
	cl, ok := c.Cluster(cluster)
	if !ok {
		return Policy{}, fmt.Errorf("unknown cluster %q", cluster)
	}
	if name == "" {
		name = cl.DefaultPolicy
	}
	if name == "" {
		return Policy{Name: "default", Cluster: cluster}, nil
	}
	for _, p := range c.Policies {
		if p.Cluster == cluster && p.Name == name {
			return p, nil
		}
	}
	return Policy{}, fmt.Errorf("cluster %q has no policy %q", cluster, name)
}

// ErrNoCluster is returned by RequireClusters for a configuration that names
// no cluster: a role started with it would know nothing to back up.
var ErrNoCluster = errors.New("the configuration names no cluster")

// RequireClusters refuses a configuration without a cluster. Every role
// checks it at start: a replica started from an empty or wrong file would
// otherwise run beside the others and take (or, before replicas handed back
// what they do not know, refuse) their work.
func (c *Config) RequireClusters() error {
	if len(c.Clusters) == 0 {
		return ErrNoCluster
	}
	return nil
}

// ClusterNames lists the configured clusters, in the file's order.
func (c *Config) ClusterNames() []string {
	names := make([]string, 0, len(c.Clusters))
	for _, cl := range c.Clusters {
		names = append(names, cl.Name)
	}
	return names
}

// PolicyNames lists the configured policies as "<cluster>/<policy>".
func (c *Config) PolicyNames() []string {
	names := make([]string, 0, len(c.Policies))
	for _, p := range c.Policies {
		names = append(names, p.Cluster+"/"+p.Name)
	}
	return names
}

// Fingerprint identifies the clusters and policies of the configuration:
// replicas whose fingerprints differ run different configurations. The
// NATS section is left out: its URL and credentials may rightly differ from
// host to host.
func (c *Config) Fingerprint() string {
	data, err := json.Marshal(struct {
		Clusters []Cluster `json:"clusters"`
		Policies []Policy  `json:"policies"`
	}{c.Clusters, c.Policies})
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

// Replicas returns the configured stream replicas, 1 when unset.
func (c *Config) Replicas() int {
	if c.NATS.Replicas == 0 {
		return 1
	}
	return c.NATS.Replicas
}

// Phase timeouts the hooks are checked against, where a policy sets none.
const (
	defaultFlushTimeout  = 10 * time.Minute
	defaultFinishTimeout = 2 * time.Hour
)

// validateHooks names every problem of a policy's hooks.
func (p Policy) validateHooks(where string) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	names := map[string]bool{}
	for i, h := range p.Hooks {
		hw := fmt.Sprintf("%s.hooks[%d]", where, i)
		if err := messages.ValidateTarget("name", h.Name); err != nil {
			add("%s.name: %w", hw, err)
		} else if names[h.Name] {
			add("%s.name %q: two hooks of the policy have this name", hw, h.Name)
		}
		names[h.Name] = true
		var limit time.Duration
		var phase string
		switch h.Point {
		case "before":
			limit, phase = time.Duration(p.FlushTimeout), "flush_timeout"
			if limit == 0 {
				limit = defaultFlushTimeout
			}
		case "after", "complete":
			limit, phase = time.Duration(p.FinishTimeout), "finish_timeout"
			if limit == 0 {
				limit = defaultFinishTimeout
			}
		default:
			add("%s.point %q: must be before, after or complete", hw, h.Point)
		}
		switch h.Scope {
		case "", "node", "job":
		default:
			add("%s.scope %q: must be node or job", hw, h.Scope)
		}
		switch {
		case len(h.Command) == 0 || h.Command[0] == "":
			add("%s.command: required", hw)
		case !filepath.IsAbs(h.Command[0]):
			add("%s.command %q: the program must be an absolute path", hw, h.Command[0])
		}
		for _, w := range h.Command {
			if strings.IndexByte(w, 0) >= 0 {
				add("%s.command: a word contains a NUL byte", hw)
			}
		}
		t := time.Duration(h.Timeout)
		switch {
		case t <= 0:
			add("%s.timeout: required, and more than zero", hw)
		case limit > 0 && t > limit:
			add("%s.timeout %s: longer than the policy's %s (%s) it runs within", hw, t, phase, limit)
		}
		switch h.OnError {
		case "", "fail", "continue":
		default:
			add("%s.on_error %q: must be fail or continue", hw, h.OnError)
		}
		if h.Point == "complete" && h.OnError == "fail" {
			add("%s.on_error fail: a complete hook runs after the job ended and cannot fail it; use continue", hw)
		}
		if h.Retries < 0 || h.Retries > 10 {
			add("%s.retries %d: must be between 0 and 10", hw, h.Retries)
		}
	}
	return errs
}
