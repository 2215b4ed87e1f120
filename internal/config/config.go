package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
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
}

// NATS says how to reach JetStream and how to lay out the topology.
type NATS struct {
	URL string `json:"url,omitempty"`
	// CredsFile is a NATS credentials file (JWT and seed).
	CredsFile string `json:"creds_file,omitempty"`
	// Replicas of every stream and bucket: 1 for development, 3 in production.
	Replicas int `json:"replicas,omitempty"`
	// TLS CA, certificate and key files, when the server requires TLS.
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// Cluster is one Cassandra cluster.
type Cluster struct {
	Name    string `json:"name"`
	Region  string `json:"region,omitempty"`
	Account string `json:"account,omitempty"`
	// RoleARN is assumed through STS for a cluster in another account.
	RoleARN string `json:"role_arn,omitempty"`
	// Executor reaches the nodes: "ssh" or "local".
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
	// DefaultPolicy names the policy a request without one gets. When empty
	// the cluster uses built-in defaults.
	DefaultPolicy string `json:"default_policy,omitempty"`
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
}

// DrillCheck is a CQL query and the count it must return.
type DrillCheck struct {
	Query  string `json:"query"`
	Expect int64  `json:"expect"`
}

// Node is one host of a static inventory.
type Node struct {
	Name       string   `json:"name"`
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
	// Schedule is a cron expression (used by schedulers that submit requests).
	Schedule string `json:"schedule,omitempty"`
	// KeepLast successful backups are kept; older managed ones are retired.
	// Zero keeps every backup.
	KeepLast     int  `json:"keep_last,omitempty"`
	AllowPartial bool `json:"allow_partial,omitempty"`

	// Timeouts; zero takes planner.Default….
	FlushTimeout    Duration `json:"flush_timeout,omitempty"`
	SnapshotTimeout Duration `json:"snapshot_timeout,omitempty"`
	FinishTimeout   Duration `json:"finish_timeout,omitempty"`
	JobTimeout      Duration `json:"job_timeout,omitempty"`
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
		case "", "ssh", "local":
		default:
			add("%s.executor %q: must be \"ssh\" or \"local\"", where, cl.Executor)
		}
		switch cl.Snapshotter {
		case "", "ebs", "fs":
		default:
			add("%s.snapshotter %q: must be \"ebs\" or \"fs\"", where, cl.Snapshotter)
		}
		if cl.Snapshotter == "fs" && cl.FS.Store == "" {
			add("%s.fs.store: required with snapshotter \"fs\"", where)
		}
		if len(cl.Nodes) == 0 && cl.Discovery == nil {
			add("%s: has neither nodes nor discovery", where)
		}
		if cl.Discovery != nil && len(cl.Discovery.InstanceTags) == 0 {
			add("%s.discovery.instance_tags: at least one tag is required", where)
		}
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
		if p.KeepLast < 0 {
			add("%s.keep_last %d: must not be negative", where, p.KeepLast)
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
		}
	}
	return errors.Join(errs...)
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

// Replicas returns the configured stream replicas, 1 when unset.
func (c *Config) Replicas() int {
	if c.NATS.Replicas == 0 {
		return 1
	}
	return c.NATS.Replicas
}
