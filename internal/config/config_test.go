package config_test

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
)

func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	c, err := config.Load("../../docs/examples/quiesce.yaml")
	require.NoError(t, err)
	require.Equal(t, 3, c.Replicas())
	p, err := c.Policy("orders", "")
	require.NoError(t, err)
	require.Equal(t, "nightly", p.Name)
	require.Equal(t, 14, p.KeepLast)
	require.Equal(t, config.RetentionRules{KeepMonthly: 24, KeepYearly: 3}, p.CopyRetention["us-west-2"])
	sessions, ok := c.Cluster("sessions")
	require.True(t, ok)
	require.Equal(t, 3*time.Hour, sessions.MaxAge())
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	cases := []struct{ desc, yaml, want string }{
		{"unknown key", "clusters:\n- name: a\n  nodez: []\n", `unknown field "nodez"`},
		{"bad cluster name", "clusters:\n- name: 'A B'\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", "clusters[0].name"},
		{"duplicate volume", "clusters:\n- name: a\n  nodes:\n  - {name: n1, volumes: [{id: v1}]}\n  - {name: n2, volumes: [{id: v1}]}\n", `volume listed twice`},
		{"policy for unknown cluster", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: b}\n", `no such cluster`},
		{"fs without store", "clusters:\n- name: a\n  snapshotter: fs\n  nodes: [{name: n1, volumes: [{id: v1, path: /x}]}]\n", "fs.store"},
		{"node name with shell metacharacters", "clusters:\n- name: a\n  nodes: [{name: 'n1;reboot', volumes: [{id: v1}]}]\n", "nodes[0].name"},
		{"relative data directory", "clusters:\n- name: a\n  directories: {data: [var/lib/cassandra/data]}\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", `clusters[0].directories: data directory "var/lib/cassandra/data"`},
		{"data directory with a subshell", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}], directories: {data: ['/d/$(id)']}}]\n", `clusters[0].nodes[0].directories: data directory "/d/$(id)"`},
		{"hints directory with ..", "clusters:\n- name: a\n  directories: {hints: /a/../b}\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", `hints directory "/a/../b": must be a clean path`},
		{"ack wait under a second", "nats: {ack_wait: 200ms}\nclusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", "nats.ack_wait 200ms"},
		{"negative max deliver", "nats: {max_deliver: -1}\nclusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", "nats.max_deliver -1"},
		{"bad duration", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, flush_timeout: soon}\n", "soon"},
		{"negative calendar rule", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, keep_weekly: -1}\n", "policies[0].keep_weekly -1: must not be negative"},
		{"hook with a relative command", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: before, command: [pause.sh], timeout: 1m}\n", "policies[0].hooks[0].command \"pause.sh\": the program must be an absolute path"},
		{"hook without timeout", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: before, command: [/bin/true]}\n", "policies[0].hooks[0].timeout: required"},
		{"hook longer than its phase", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: before, command: [/bin/true], timeout: 11m}\n", "policies[0].hooks[0].timeout 11m0s: longer than the policy's flush_timeout"},
		{"hook at an unknown point", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: during, command: [/bin/true], timeout: 1m}\n", "policies[0].hooks[0].point \"during\""},
		{"hook of an unknown scope", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: after, scope: cluster, command: [/bin/true], timeout: 1m}\n", "policies[0].hooks[0].scope \"cluster\""},
		{"complete hook that would fail the job", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: complete, command: [/bin/true], timeout: 1m, on_error: fail}\n", "policies[0].hooks[0].on_error fail"},
		{"retention that keeps nothing", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, keep_within: 10s}\n", "policies[0].keep_within 10s: keeps nothing"},
		{"arm window as long as the flush", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, flush_timeout: 10s, arm_window: 10s}\n", "policies[0].arm_window 10s: must be shorter than the policy's flush_timeout (10s)"},
		{"negative arm window", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, arm_window: -1s}\n", "negative"},
		{"negative max age", "clusters:\n- name: a\n  backup_max_age: -1h\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", "negative"},
		{"bad policy schedule", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, schedule: 'every tuesday'}\n", `policies[0].schedule: schedule "every tuesday"`},
		{"bad drill schedule", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n  drill: {target: s, schedule: '0 3 * *'}\n" +
			"- name: s\n  cassandra_service: {unit: cassandra}\n  nodes: [{name: s1, volumes: [{id: v2}]}]\n", `clusters[0].drill.schedule: schedule "0 3 * *"`},
	}
	for _, tc := range cases {
		_, err := config.Parse([]byte(tc.yaml))
		require.Error(t, err, tc.desc)
		require.Contains(t, err.Error(), tc.want, tc.desc)
	}
}

// A cluster's stale-backup threshold is its backup_max_age, 26h when unset.
func TestBackupMaxAge(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("clusters:\n- name: a\n  backup_max_age: 192h\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n" +
		"- name: b\n  nodes: [{name: n1, volumes: [{id: v2}]}]\n"))
	require.NoError(t, err)
	require.Equal(t, 8*24*time.Hour, c.Clusters[0].MaxAge())
	require.Equal(t, config.DefaultBackupMaxAge, c.Clusters[1].MaxAge())
	require.Equal(t, 26*time.Hour, config.DefaultBackupMaxAge)
}

func TestMissingFileIsAnError(t *testing.T) {
	t.Parallel()
	_, err := config.Load(os.DevNull + "/nope.yaml")
	require.Error(t, err)
}

// A cluster whose data centres are in two regions, and an account whose
// CreateSnapshots limit was raised.
const twoRegions = `
clusters:
- name: orders
  region: us-east-1
  account: "111111111111"
  datacenters:
  - {name: dc-east, discovery: {instance_tags: {cluster: orders, dc: east}}}
  - {name: dc-west, region: us-west-2, account: "222222222222", role_arn: "arn:aws:iam::222222222222:role/quiesce",
     discovery: {instance_tags: {cluster: orders, dc: west}}}
- name: static
  region: eu-west-1
  datacenters: [{name: a}, {name: b, region: eu-central-1}]
  nodes:
  - {name: n1, dc: a, volumes: [{id: v1}]}
  - {name: n2, dc: b, volumes: [{id: v2}]}
ec2:
  limits:
  - {operation: CreateSnapshots, rate: 10, burst: 200, account: "111111111111", region: us-east-1}
  - {operation: DeleteSnapshot, rate: 2}
`

func TestDataCentresAndLimitsLoad(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(twoRegions))
	require.NoError(t, err)
	cl, ok := c.Cluster("orders")
	require.True(t, ok)
	require.Len(t, cl.DataCenters, 2)
	require.Equal(t, "us-west-2", cl.DataCenters[1].Region)
	require.Len(t, c.EC2.Limits, 2)
	require.Equal(t, 200, c.EC2.Limits[0].Burst)
}

func TestDataCentreAndLimitErrorsNameTheField(t *testing.T) {
	t.Parallel()
	base := "clusters:\n- name: a\n  region: us-east-1\n"
	cases := []struct{ desc, yaml, want string }{
		{"node without its dc", base + "  datacenters: [{name: x}]\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", "clusters[0].nodes[0].dc: required"},
		{"node of an unknown dc", base + "  datacenters: [{name: x}]\n  nodes: [{name: n1, dc: z, volumes: [{id: v1}]}, {name: n2, dc: x, volumes: [{id: v2}]}]\n", `nodes[0].dc "z": no such datacenter (one of x)`},
		{"dc without datacenters", base + "  nodes: [{name: n1, dc: z, volumes: [{id: v1}]}]\n", `nodes[0].dc "z": the cluster has no datacenters`},
		{"dc with nothing in it", base + "  datacenters: [{name: x}, {name: empty}]\n  nodes: [{name: n1, dc: x, volumes: [{id: v1}]}]\n", `datacenters[1]: data centre "empty" has neither discovery nor nodes`},
		{"duplicate dc", base + "  datacenters: [{name: x}, {name: x}]\n  nodes: [{name: n1, dc: x, volumes: [{id: v1}]}]\n", `datacenters[1].name "x": duplicate`},
		{"bad dc region", base + "  datacenters: [{name: x, region: 'us east'}]\n  nodes: [{name: n1, dc: x, volumes: [{id: v1}]}]\n", `datacenters[0].region "us east": not an AWS region`},
		{"bad dc account", base + "  datacenters: [{name: x, account: '12'}]\n  nodes: [{name: n1, dc: x, volumes: [{id: v1}]}]\n", `datacenters[0].account "12": an AWS account ID is 12 digits`},
		{"cluster and dc discovery", base + "  discovery: {instance_tags: {a: b}}\n  datacenters: [{name: x, discovery: {instance_tags: {a: b}}}]\n", "clusters[0].discovery: a cluster with datacenters"},
		{"dc discovery and static nodes", base + "  datacenters: [{name: x, discovery: {instance_tags: {a: b}}}]\n  nodes: [{name: n1, dc: x, volumes: [{id: v1}]}]\n", `data centre "x" has discovery and static nodes`},
		{"dc discovery without tags", base + "  datacenters: [{name: x, discovery: {instance_tags: {}}}]\n", "datacenters[0].discovery.instance_tags"},
		{"bad cluster region", "clusters:\n- name: a\n  region: Virginia\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", `clusters[0].region "Virginia"`},
		{"bad copy region", base + "  ebs: {copy_regions: [west]}\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", `ebs.copy_regions[0] "west"`},
		{"unknown operation", base + "  nodes: [{name: n1, volumes: [{id: v1}]}]\nec2: {limits: [{operation: CreateSnapshotz, rate: 5}]}\n", `ec2.limits[0].operation "CreateSnapshotz": must be one of`},
		{"zero rate", base + "  nodes: [{name: n1, volumes: [{id: v1}]}]\nec2: {limits: [{operation: CreateSnapshot, rate: 0}]}\n", "ec2.limits[0].rate 0: must be"},
		{"negative burst", base + "  nodes: [{name: n1, volumes: [{id: v1}]}]\nec2: {limits: [{operation: CreateSnapshot, rate: 1, burst: -1}]}\n", "ec2.limits[0].burst -1"},
		{"limit twice", base + "  nodes: [{name: n1, volumes: [{id: v1}]}]\nec2: {limits: [{operation: CreateSnapshot, rate: 1}, {operation: CreateSnapshot, rate: 2}]}\n", "ec2.limits[1]: a second limit"},
		{"limit of a bad region", base + "  nodes: [{name: n1, volumes: [{id: v1}]}]\nec2: {limits: [{operation: CreateSnapshot, rate: 1, region: mars}]}\n", `ec2.limits[0].region "mars"`},
	}
	for _, tc := range cases {
		_, err := config.Parse([]byte(tc.yaml))
		require.Error(t, err, tc.desc)
		require.Contains(t, err.Error(), tc.want, tc.desc)
	}
}

// A cluster copying its snapshots to two regions, one of which keeps its
// copies by rules of its own.
const copyRetention = `
clusters:
- name: orders
  region: us-east-1
  ebs: {copy_regions: [us-west-2, eu-west-1]}
  nodes: [{name: n1, volumes: [{id: v1}]}]
policies:
- name: nightly
  cluster: orders
  keep_daily: 7
  copy_retention:
    us-west-2: {keep_monthly: 12, keep_within: 48h}
`

func TestCopyRetentionLoads(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(copyRetention))
	require.NoError(t, err)
	p, err := c.Policy("orders", "nightly")
	require.NoError(t, err)
	require.Equal(t, map[string]config.RetentionRules{
		"us-west-2": {KeepMonthly: 12, KeepWithin: config.Duration(48 * time.Hour)},
	}, p.CopyRetention)
	require.Equal(t, 7, p.KeepDaily)
}

func TestCopyRetentionErrorsNameTheField(t *testing.T) {
	t.Parallel()
	cluster := "clusters:\n- name: a\n  region: us-east-1\n  ebs: {copy_regions: [us-west-2]}\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n" +
		"- name: b\n  region: us-east-1\n  nodes: [{name: n1, volumes: [{id: v2}]}]\n"
	cases := []struct{ desc, yaml, want string }{
		{"a region that is not a copy region", cluster + "policies:\n- {name: p, cluster: a, copy_retention: {eu-west-1: {keep_last: 3}}}\n",
			"policies[0].copy_retention.eu-west-1: not one of the cluster's ebs.copy_regions (us-west-2)"},
		{"a cluster without copy regions", cluster + "policies:\n- {name: p, cluster: b, copy_retention: {us-west-2: {keep_last: 3}}}\n",
			`policies[0].copy_retention.us-west-2: the cluster "b" has no ebs.copy_regions`},
		{"rules that keep nothing", cluster + "policies:\n- {name: p, cluster: a, copy_retention: {us-west-2: {}}}\n",
			"policies[0].copy_retention.us-west-2: no keep rule, so it keeps nothing"},
		{"count_partial alone keeps nothing", cluster + "policies:\n- {name: p, cluster: a, copy_retention: {us-west-2: {count_partial: true}}}\n",
			"policies[0].copy_retention.us-west-2: no keep rule"},
		{"a keep_within too short", cluster + "policies:\n- {name: p, cluster: a, copy_retention: {us-west-2: {keep_within: 30s}}}\n",
			"policies[0].copy_retention.us-west-2.keep_within 30s: keeps nothing; use at least 1m"},
		{"a negative rule", cluster + "policies:\n- {name: p, cluster: a, copy_retention: {us-west-2: {keep_monthly: -1}}}\n",
			"policies[0].copy_retention.us-west-2.keep_monthly -1: must not be negative"},
		{"an fs cluster", "clusters:\n- name: f\n  snapshotter: fs\n  fs: {store: /s}\n  ebs: {copy_regions: [us-west-2]}\n  nodes: [{name: n1, volumes: [{id: v1, path: /d}]}]\n" +
			"policies:\n- {name: p, cluster: f, copy_retention: {us-west-2: {keep_last: 3}}}\n",
			`policies[0].copy_retention.us-west-2: the cluster "f" has snapshotter "fs", which makes no copies`},
		{"an unknown rule", cluster + "policies:\n- {name: p, cluster: a, copy_retention: {us-west-2: {keep_hourly: 3}}}\n",
			`unknown field "keep_hourly"`},
	}
	for _, tc := range cases {
		_, err := config.Parse([]byte(tc.yaml))
		require.Error(t, err, tc.desc)
		require.Contains(t, err.Error(), tc.want, tc.desc)
	}
}
