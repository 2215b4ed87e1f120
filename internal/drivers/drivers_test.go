package drivers_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
	"github.com/quiesce/quiesce/worker/fs"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// fullCluster sets every field the drivers and the planner read.
func fullCluster() config.Cluster {
	return config.Cluster{
		Name: "orders", Region: "us-east-1", Account: "123456789012",
		RoleARN:  "arn:aws:iam::123456789012:role/quiesce",
		Executor: "ssh", Snapshotter: "ebs",
		Nodetool: []string{"/opt/cassandra/bin/nodetool", "-h", "127.0.0.1"}, NodetoolEnv: map[string]string{"JAVA_HOME": "/opt/java"},
		SSH: config.SSH{
			User: "quiesce", Port: 2222, IdentityFiles: []string{"/k/id_ed25519"}, PassphraseEnv: "PASS", PassphraseFile: "/k/pass",
			Agent: true, KnownHosts: []string{"/k/known_hosts"}, TrustOnFirstUse: true, Bastion: "jump@bastion:22", Sudo: true,
			ConnectTimeout: config.Duration(3 * time.Second), CommandTimeout: config.Duration(time.Minute),
			KeepaliveInterval: config.Duration(5 * time.Second), MaxSessionsPerHost: 4,
		},
		EBS: config.EBS{Endpoint: "http://ec2.local", PerInstance: true, CopyVolumeTags: true, CopyRegions: []string{"us-west-2"}},
		Directories: &config.Directories{Data: []string{"/var/lib/cassandra/data"}, CommitLog: "/var/lib/cassandra/commitlog",
			Hints: "/var/lib/cassandra/hints", SavedCaches: "/var/lib/cassandra/saved_caches", CDCRaw: "/var/lib/cassandra/cdc_raw"},
		DataCenters: []config.DataCenter{{Name: "dc-west", Region: "us-west-2", Account: "210987654321",
			RoleARN: "arn:aws:iam::210987654321:role/quiesce"}},
		Nodes: []config.Node{
			{Name: "n1", DC: "dc-west", Address: "10.0.0.1", InstanceID: "i-1", AZ: "us-west-2a", Nodetool: []string{"/other/nodetool"},
				Volumes:     []config.Volume{{ID: "vol-1", Device: "/dev/xvdf", Path: "/var/lib/cassandra", Tags: map[string]string{"role": "data"}}},
				Directories: &config.Directories{Data: []string{"/data1", "/data2"}}},
			{Name: "n2", Volumes: []config.Volume{{ID: "vol-2"}}},
		},
		Discovery: &config.Discovery{InstanceTags: map[string]string{"cassandra": "orders"}, Devices: []string{"/dev/xvdf"},
			VolumeTags: map[string]string{"role": "data"}, IncludeRoot: true},
		DefaultPolicy: "nightly",
	}
}

// requireAllSet fails for any zero field of a settings struct: a field added
// to a driver's settings must be mapped from the configuration.
func requireAllSet(t *testing.T, v any) {
	t.Helper()
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		require.False(t, rv.Field(i).IsZero(), "%s.%s is not mapped from the configuration", rv.Type(), rv.Type().Field(i).Name)
	}
}

func TestSettingsCarryEveryField(t *testing.T) {
	t.Parallel()
	cl := fullCluster()

	s := drivers.SSH(cl)
	requireAllSet(t, s)
	require.Equal(t, ssh.Config{
		User: "quiesce", Port: 2222, IdentityFiles: []string{"/k/id_ed25519"}, PassphraseEnv: "PASS", PassphraseFile: "/k/pass",
		Agent: true, KnownHosts: []string{"/k/known_hosts"}, TrustOnFirstUse: true, Bastion: "jump@bastion:22",
		ConnectTimeout: 3 * time.Second, CommandTimeout: time.Minute, KeepaliveInterval: 5 * time.Second, MaxSessionsPerHost: 4,
	}, s)

	n := drivers.Nodetool(cl)
	requireAllSet(t, n)
	require.Equal(t, nodetool.Settings{Base: cl.Nodetool, Env: cl.NodetoolEnv, Sudo: true,
		PerNode: map[string][]string{"n1": {"/other/nodetool"}}}, n)

	e := drivers.EBS(cl)
	requireAllSet(t, e)
	require.Equal(t, ebs.Config{Cluster: "orders", Region: "us-east-1", Account: "123456789012", RoleARN: cl.RoleARN, Endpoint: "http://ec2.local",
		PerInstance: true, CopyVolumeTags: true, CopyRegions: []string{"us-west-2"},
		DataCenters: []ebs.DataCenter{{Name: "dc-west", Region: "us-west-2", Account: "210987654321", RoleARN: "arn:aws:iam::210987654321:role/quiesce"}}}, e)
	requireAllSet(t, e.DataCenters[0])
	require.Equal(t, ebs.Config{Cluster: "orders", Region: "us-west-2", Account: "210987654321", RoleARN: "arn:aws:iam::210987654321:role/quiesce",
		Endpoint: "http://ec2.local", PerInstance: true, CopyVolumeTags: true, CopyRegions: []string{"us-west-2"}},
		drivers.DataCenterEBS(cl, cl.DataCenters[0]), "a data centre is discovered in its region, with its account and role")

	d := drivers.Discovery(*cl.Discovery)
	requireAllSet(t, d)
	require.Equal(t, ebs.Discovery{InstanceTags: map[string]string{"cassandra": "orders"}, Devices: []string{"/dev/xvdf"},
		VolumeTags: map[string]string{"role": "data"}, IncludeRoot: true}, d)

	agentCl := cl
	agentCl.Executor = drivers.ExecutorAgent
	pc := drivers.Cluster(agentCl)
	requireAllSet(t, pc)
	require.False(t, drivers.Cluster(cl).Agent, "an ssh cluster's node tasks go to workers")
	clusterDirs := messages.NodeDirs{Data: []string{"/var/lib/cassandra/data"}, CommitLog: "/var/lib/cassandra/commitlog",
		Hints: "/var/lib/cassandra/hints", SavedCaches: "/var/lib/cassandra/saved_caches", CDCRaw: "/var/lib/cassandra/cdc_raw"}
	n1Dirs := clusterDirs
	n1Dirs.Data = []string{"/data1", "/data2"}
	require.Equal(t, planner.Cluster{Name: "orders", DefaultPolicy: "nightly", PerInstance: true, Agent: true, Dirs: &clusterDirs, Snapshotter: "ebs", Nodes: []messages.Node{
		{Name: "n1", Address: "10.0.0.1", InstanceID: "i-1", AZ: "us-west-2a", DC: "dc-west", Region: "us-west-2", Dirs: &n1Dirs,
			Volumes: []messages.Volume{{ID: "vol-1", Device: "/dev/xvdf", Path: "/var/lib/cassandra", Tags: map[string]string{"role": "data"}}}},
		{Name: "n2", Region: "us-east-1", Volumes: []messages.Volume{{ID: "vol-2"}}, Dirs: &clusterDirs},
	}}, pc)

	arm := config.Duration(500 * time.Millisecond)
	p := drivers.Policy(config.Policy{Name: "nightly", Cluster: "orders", Schedule: "0 2 * * *", AllowPartial: true,
		KeepLast: 14, KeepWithin: config.Duration(48 * time.Hour), KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepYearly: 3,
		CountPartial:  true,
		CopyRetention: map[string]config.RetentionRules{"us-west-2": {KeepMonthly: 12, KeepWithin: config.Duration(time.Hour)}},
		Hooks: []config.Hook{{Name: "resume", Point: "after", Command: []string{"/usr/local/bin/resume"},
			Timeout: config.Duration(time.Minute), Retries: 2}},
		FlushTimeout: config.Duration(time.Minute), SnapshotTimeout: config.Duration(2 * time.Minute),
		FinishTimeout: config.Duration(3 * time.Minute), JobTimeout: config.Duration(4 * time.Minute),
		ArmWindow: &arm}, cl.EBS.CopyRegions)
	requireAllSet(t, p)
	require.Equal(t, planner.Policy{Name: "nightly", Cluster: "orders", Schedule: "0 2 * * *", AllowPartial: true,
		Retention: planner.Retention{KeepLast: 14, KeepWithin: 48 * time.Hour, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12,
			KeepYearly: 3, CountPartial: true},
		CopyRegions:   []string{"us-west-2"},
		CopyRetention: map[string]planner.Retention{"us-west-2": {KeepMonthly: 12, KeepWithin: time.Hour}},
		Hooks: []messages.Hook{{Name: "resume", Point: messages.HookAfter, Scope: messages.ScopeNode,
			Command: []string{"/usr/local/bin/resume"}, TimeoutMS: 60_000, OnError: messages.OnErrorFail, Retries: 2}},
		FlushTimeout: time.Minute, SnapshotTimeout: 2 * time.Minute, FinishTimeout: 3 * time.Minute, JobTimeout: 4 * time.Minute,
		ArmWindow: 500 * time.Millisecond}, p)
}

func TestInventoryResolvesPolicies(t *testing.T) {
	t.Parallel()
	// Data centres with cluster-wide discovery do not validate.
	orders := fullCluster()
	orders.DataCenters, orders.Nodes[0].DC = nil, ""
	cfg := &config.Config{
		Clusters: []config.Cluster{orders, {Name: "plain", Nodes: []config.Node{{Name: "n", Volumes: []config.Volume{{ID: "v"}}}}}},
		Policies: []config.Policy{{Name: "nightly", Cluster: "orders", KeepLast: 14}, {Name: "weekly", Cluster: "orders"}},
	}
	require.NoError(t, cfg.Validate())
	inv := drivers.Inventory(cfg)
	for _, tc := range []struct{ cluster, policy, want, err string }{
		{cluster: "orders", want: "nightly"},
		{cluster: "orders", policy: "weekly", want: "weekly"},
		{cluster: "plain", want: planner.DefaultPolicyName},
		{cluster: "orders", policy: "hourly", err: `cluster "orders" has no policy "hourly"`},
		{cluster: "nowhere", err: `unknown cluster "nowhere"`},
	} {
		p, err := inv.Policy(tc.cluster, tc.policy)
		if tc.err != "" {
			require.EqualError(t, err, tc.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, p.Name)
		require.Equal(t, tc.cluster, p.Cluster)
	}
	require.Len(t, inv.Policies, 2)
	require.Equal(t, []string{"us-west-2"}, inv.Policies[0].CopyRegions, "a policy knows its cluster's copy regions")
}

// Every driver kind the configuration accepts is in the table.
func TestRegistryBuildsEveryKind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := writeKey(t, dir)
	cfg := &config.Config{Clusters: []config.Cluster{
		{Name: "local", Executor: "local", Snapshotter: "fs", FS: config.FS{Store: filepath.Join(dir, "store")},
			Nodes: []config.Node{{Name: "n1", Volumes: []config.Volume{{ID: "v1", Path: dir}}}}},
		{Name: "remote", Region: "us-east-1", EBS: config.EBS{Endpoint: "http://127.0.0.1:1"},
			SSH:   config.SSH{User: "quiesce", IdentityFiles: []string{key}, KnownHosts: []string{filepath.Join(dir, "known_hosts")}},
			Nodes: []config.Node{{Name: "n1", Volumes: []config.Volume{{ID: "v1"}}}}},
	}}
	require.NoError(t, cfg.Validate())
	reg := drivers.New(cfg, drivers.Env{Ctx: t.Context(), Log: zerolog.Nop()})
	t.Cleanup(func() { require.NoError(t, reg.Close()) })

	c, err := reg.Client("local")
	require.NoError(t, err)
	require.IsType(t, &nodetool.Client{}, c)
	snap, err := reg.Snapshotter("local")
	require.NoError(t, err)
	require.IsType(t, &fs.Driver{}, snap)

	c, err = reg.Client("remote")
	require.NoError(t, err)
	require.IsType(t, &ssh.Executor{}, c.Runner)
	again, err := reg.NodeTool("remote")
	require.NoError(t, err)
	require.Same(t, c, again, "a cluster's driver is built once")
	snap, err = reg.Snapshotter("remote")
	require.NoError(t, err)
	require.Implements(t, (*worker.Copier)(nil), snap)

	_, err = reg.Snapshotter("nowhere")
	require.ErrorIs(t, err, worker.ErrUnknownCluster)
	require.ErrorContains(t, err, `cluster "nowhere"`)

	nodes, err := reg.Discover(t.Context(), drivers.Cluster(cfg.Clusters[0]))
	require.NoError(t, err)
	require.Equal(t, drivers.Nodes(cfg.Clusters[0]), nodes)
}

// A cluster that pins host keys on first use needs the fleet's key store,
// handed over as a typed field of Env.
func TestTrustOnFirstUseNeedsHostKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := &config.Config{Clusters: []config.Cluster{{Name: "tofu",
		SSH:   config.SSH{User: "quiesce", IdentityFiles: []string{writeKey(t, dir)}, TrustOnFirstUse: true},
		Nodes: []config.Node{{Name: "n1", Volumes: []config.Volume{{ID: "v1"}}}}}}}
	require.True(t, drivers.NeedsHostKeys(cfg))
	require.False(t, drivers.NeedsHostKeys(&config.Config{Clusters: []config.Cluster{{Name: "x", Executor: "local",
		SSH: config.SSH{TrustOnFirstUse: true}}}}), "the local executor pins nothing")

	_, err := drivers.New(cfg, drivers.Env{Ctx: t.Context()}).NodeTool("tofu")
	require.ErrorContains(t, err, "trust_on_first_use needs")

	reg := drivers.New(cfg, drivers.Env{Ctx: t.Context(), HostKeys: &ssh.FileKeyStore{Path: filepath.Join(dir, "pins")}})
	t.Cleanup(func() { require.NoError(t, reg.Close()) })
	_, err = reg.NodeTool("tofu")
	require.NoError(t, err)
}

func writeKey(t *testing.T, dir string) string {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := gossh.MarshalPrivateKey(k, "")
	require.NoError(t, err)
	path := filepath.Join(dir, "id_ed25519")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
	return path
}

func TestUsesEC2(t *testing.T) {
	t.Parallel()
	one := func(cl config.Cluster) *config.Config { return &config.Config{Clusters: []config.Cluster{cl}} }
	require.True(t, drivers.UsesEC2(one(config.Cluster{Name: "a"})), "ebs is the default snapshotter")
	require.True(t, drivers.UsesEC2(one(config.Cluster{Name: "a", Snapshotter: "ebs"})))
	require.True(t, drivers.UsesEC2(one(config.Cluster{Name: "a", Snapshotter: "fs",
		Discovery: &config.Discovery{InstanceTags: map[string]string{"c": "a"}}})), "discovery calls EC2")
	require.False(t, drivers.UsesEC2(one(config.Cluster{Name: "a", Snapshotter: "fs"})))
	require.False(t, drivers.UsesEC2(&config.Config{}))
}

// The pacer's limit for a key is the most specific configured one, else
// AWS's default; a limit without a burst keeps the default bucket.
func TestPaceLimitsMostSpecificWins(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{EC2: config.EC2{Limits: []config.EC2Limit{
		{Operation: "CreateSnapshots", Rate: 4},
		{Operation: "CreateSnapshots", Region: "us-east-1", Rate: 6, Burst: 120},
		{Operation: "CreateSnapshots", Account: "111111111111", Rate: 8},
		{Operation: "CreateSnapshots", Account: "111111111111", Region: "us-east-1", Rate: 10, Burst: 200},
	}}}
	limit := drivers.PaceLimits(cfg)
	key := func(account, region, op string) pace.Key { return pace.Key{Account: account, Region: region, Op: op} }
	for _, tt := range []struct {
		key  pace.Key
		want pace.Limit
	}{
		{key("111111111111", "us-east-1", "CreateSnapshots"), pace.Limit{Rate: 10, Burst: 200}},
		{key("111111111111", "eu-west-1", "CreateSnapshots"), pace.Limit{Rate: 8, Burst: 100}},
		{key("222222222222", "us-east-1", "CreateSnapshots"), pace.Limit{Rate: 6, Burst: 120}},
		{key("222222222222", "eu-west-1", "CreateSnapshots"), pace.Limit{Rate: 4, Burst: 100}},
		{key("111111111111", "us-east-1", "CreateSnapshot"), pace.Limit{Rate: 5, Burst: 100}},
		{key("111111111111", "us-east-1", "DescribeSnapshots"), pace.Limit{Rate: 20, Burst: 100}},
	} {
		require.Equal(t, tt.want, limit(tt.key), "%+v", tt.key)
	}
}

// The configuration accepts limits for exactly the operations the EBS
// driver calls.
func TestConfigKnowsEveryPacedOperation(t *testing.T) {
	t.Parallel()
	require.ElementsMatch(t, ebs.Operations, config.EC2Operations)
}
