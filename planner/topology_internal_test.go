package planner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
)

func TestSnapshotKeyspacesAddWhatARestoreNeeds(t *testing.T) {
	t.Parallel()
	require.Nil(t, SnapshotKeyspaces(nil), "every keyspace, the system ones included")
	require.Equal(t, []string{"shop", "system_schema", "system"}, SnapshotKeyspaces([]string{"shop"}))
	require.Equal(t, []string{"system", "shop", "system_schema"}, SnapshotKeyspaces([]string{"system", "shop"}))
	p, err := BuildPlan(messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: "r", Cluster: "c1", Keyspaces: []string{"shop"}},
		Policy{Name: "p"}, []messages.Node{{Name: "n1", Volumes: []messages.Volume{{ID: "v1"}}}}, false, time.Now())
	require.NoError(t, err)
	require.Equal(t, []string{"shop", "system_schema", "system"}, p.flushTask(0, time.Time{}).Keyspaces)
	require.True(t, p.Intents)
}

func TestPlanRefusesABadDirectory(t *testing.T) {
	t.Parallel()
	_, err := BuildPlan(messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: "r", Cluster: "c1"}, Policy{Name: "p"},
		[]messages.Node{{Name: "n1", Volumes: []messages.Volume{{ID: "v1"}}, Dirs: &messages.NodeDirs{Data: []string{"/d; reboot"}}}},
		false, time.Now())
	require.ErrorContains(t, err, `node "n1": data directory "/d; reboot"`)
}

// A clear after a node's snapshots asks for its facts; a clean-up's does
// not; a plan of the previous release (no intents) clears every node.
func TestClearTasksSayWhatTheWorkerNeeds(t *testing.T) {
	t.Parallel()
	p, err := BuildPlan(messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: "r", Cluster: "c1"}, Policy{Name: "p"},
		[]messages.Node{{Name: "n1", Volumes: []messages.Volume{{ID: "v1"}}}}, false, time.Now())
	require.NoError(t, err)
	task := p.clearTask(0, time.Time{}, true, true)
	require.True(t, task.Flushed)
	require.True(t, task.Facts)
	task = p.clearTask(0, time.Time{}, false, false)
	require.False(t, task.Flushed)
	p.Intents = false
	require.True(t, p.clearTask(0, time.Time{}, false, false).Flushed)
}

func TestBuildTopology(t *testing.T) {
	t.Parallel()
	nodes := []messages.Node{
		{Name: "n1", InstanceID: "i-1", AZ: "us-east-1a", Volumes: []messages.Volume{{ID: "vol-1", Device: "/dev/xvdf", Path: "/var/lib/cassandra"}}},
		{Name: "n2", InstanceID: "i-2", AZ: "us-east-1b", Volumes: []messages.Volume{{ID: "vol-2", Device: "/dev/xvdf", Path: "/var/lib/cassandra"}}},
	}
	ks := []messages.KeyspaceFacts{
		{Name: "Shop", Class: "NetworkTopologyStrategy", Options: map[string]string{"us-east": "3", "eu": "2"}},
		{Name: "audit", Class: "SimpleStrategy", Options: map[string]string{"replication_factor": "1"}},
		{Name: "system_schema", Class: "LocalStrategy"},
	}
	table := func(ks, t, cql string) messages.TableSnapshot {
		return messages.TableSnapshot{Keyspace: ks, Table: t, SSTables: 1, Files: 8, Bytes: 100, CQL: cql}
	}
	facts := []messages.NodeFacts{
		{Node: "n1", ClusterName: "orders", Partitioner: "Murmur3Partitioner", Version: "5.0.6", SchemaVersion: "v1", Keyspaces: ks,
			Tokens: []string{"1", "2", "3"}, Tables: []messages.TableSnapshot{
				table("Shop", "orders", "CREATE TABLE IF NOT EXISTS \"Shop\".orders (id int PRIMARY KEY);"),
				table("system_schema", "tables", "")}},
		{Node: "n2", ClusterName: "orders", Partitioner: "Murmur3Partitioner", Version: "5.0.5", SchemaVersion: "v1", Keyspaces: ks,
			Tokens: []string{"4", "5"}, Tables: []messages.TableSnapshot{
				table("Shop", "orders", "CREATE TABLE IF NOT EXISTS \"Shop\".orders (id int PRIMARY KEY) -- a later copy;"),
				table("Shop", "customers", "CREATE TABLE IF NOT EXISTS \"Shop\".customers (id int PRIMARY KEY);")}},
	}
	vols := []messages.VolumeFacts{{VolumeID: "vol-2", AZ: "us-east-1b", SizeGiB: 500, Type: "gp3", IOPS: 3000, Throughput: 125,
		Encrypted: true, KMSKeyID: "arn:aws:kms:us-east-1:1:key/k", InstanceID: "i-2", Device: "/dev/sdf"}}
	topo := buildTopology(nodes, facts, vols)
	require.Equal(t, "orders", topo.ClusterName)
	require.Equal(t, "5.0.6", topo.CassandraVersion, "the first of equals")
	require.Equal(t, 3, topo.NumTokens)
	require.Equal(t, "CREATE KEYSPACE IF NOT EXISTS \"Shop\" WITH replication = {'class': 'NetworkTopologyStrategy', 'eu': '2', 'us-east': '3'};\n"+
		"CREATE TABLE IF NOT EXISTS \"Shop\".customers (id int PRIMARY KEY);\n"+
		"CREATE TABLE IF NOT EXISTS \"Shop\".orders (id int PRIMARY KEY);\n", topo.Schema,
		"only keyspaces in the snapshot, no system one; each table once")
	require.Len(t, topo.Nodes, 2)
	for _, n := range topo.Nodes {
		require.Nil(t, n.Keyspaces)
		for _, tb := range n.Tables {
			require.Empty(t, tb.CQL)
		}
	}
	require.Equal(t, []messages.VolumeFacts{
		{VolumeID: "vol-1", Node: "n1", InstanceID: "i-1", AZ: "us-east-1a", Device: "/dev/xvdf", MountPoint: "/var/lib/cassandra"},
		{VolumeID: "vol-2", Node: "n2", InstanceID: "i-2", AZ: "us-east-1b", SizeGiB: 500, Type: "gp3", IOPS: 3000, Throughput: 125,
			Encrypted: true, KMSKeyID: "arn:aws:kms:us-east-1:1:key/k", Device: "/dev/sdf", MountPoint: "/var/lib/cassandra"},
	}, topo.Volumes)
	require.Nil(t, buildTopology(nodes, nil, nil))
}

// A catalog record too large to keep inline keeps its topology in the
// manifest, with its nodes and snapshots; LoadBackup gives it back whole.
func TestLargeCatalogKeepsTheTopologyInItsManifest(t *testing.T) {
	ctx := context.Background()
	e, env, p, r := catalogFixture(t)
	r.Listing = putListing(t, env, p.JobID, []messages.SnapshotRef{
		{SnapshotID: "snap-1", VolumeID: "v1", Node: "n1", State: "completed"},
		{SnapshotID: "snap-2", VolumeID: "v2", Node: "n2", State: "completed"},
	})
	big := make([]string, 20000)
	for i := range big {
		big[i] = "-9223372036854775808"
	}
	// Facts too large for one value of the jobs bucket, in parts.
	f := messages.NodeFacts{Schema: messages.NodeFactsSchema, Node: "n1", HostID: "6d194555-f6eb-41d0-c000-000000000001", Tokens: big}
	data, err := json.Marshal(f)
	require.NoError(t, err)
	putFactsParts(t, env, p.JobID, "n1", data, 3)

	res, err := e.writeCatalog(ctx, p, r)
	require.NoError(t, err)
	require.Empty(t, res.failed)
	backups, err := Backups(ctx, env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	require.Nil(t, backups[0].Topology)
	require.NotEmpty(t, backups[0].Manifest)
	require.Equal(t, []string{"no facts gathered for node n2: the catalog lacks their topology"}, backups[0].Warnings)
	full, err := LoadBackup(ctx, env.H, backups[0])
	require.NoError(t, err)
	require.Len(t, full.Topology.Nodes, 1)
	require.Len(t, full.Topology.Nodes[0].Tokens, 20000)
}

// Facts that cannot be read never keep a backup from its catalog record:
// the record and the job say which node's topology it lacks.
func TestUnreadableFactsAreAWarningNotAFailure(t *testing.T) {
	ctx := context.Background()
	e, env, p, r := catalogFixture(t)
	r.Listing = putListing(t, env, p.JobID, []messages.SnapshotRef{
		{SnapshotID: "snap-1", VolumeID: "v1", Node: "n1", State: "completed"},
		{SnapshotID: "snap-2", VolumeID: "v2", Node: "n2", State: "completed"},
	})
	_, err := env.H.Jobs.Put(ctx, messages.NodeFactsKey(p.JobID, "n1"), []byte(`{"schema":"quiesce.node-facts/v0"}`))
	require.NoError(t, err)
	good, err := json.Marshal(messages.NodeFacts{Schema: messages.NodeFactsSchema, Node: "n2", HostID: "6d194555-f6eb-41d0-c000-000000000002"})
	require.NoError(t, err)
	_, err = env.H.Jobs.Put(ctx, messages.NodeFactsKey(p.JobID, "n2"), good)
	require.NoError(t, err)
	// n3's facts in parts, one of them rewritten after the digest was taken.
	n3, err := json.Marshal(messages.NodeFacts{Schema: messages.NodeFactsSchema, Node: "n3", HostID: "6d194555-f6eb-41d0-c000-000000000003"})
	require.NoError(t, err)
	putFactsParts(t, env, p.JobID, "n3", n3, 2)
	_, err = env.H.Jobs.Put(ctx, messages.NodeFactsPartKey(p.JobID, "n3", 2), []byte(`}}`))
	require.NoError(t, err)
	// n4's head says there are two parts; the second never came.
	n4, err := json.Marshal(messages.NodeFacts{Schema: messages.NodeFactsSchema, Node: "n4", HostID: "6d194555-f6eb-41d0-c000-000000000004"})
	require.NoError(t, err)
	putFactsParts(t, env, p.JobID, "n4", n4, 2)
	require.NoError(t, env.H.Jobs.Delete(ctx, messages.NodeFactsPartKey(p.JobID, "n4", 2)))
	p.Nodes = append(p.Nodes, messages.Node{Name: "n3"}, messages.Node{Name: "n4"})
	r.Flushed.set(2)
	r.Flushed.set(3)

	res, err := e.writeCatalog(ctx, p, r)
	require.NoError(t, err)
	require.Empty(t, res.failed)
	require.Len(t, res.warnings, 1)
	require.Contains(t, res.warnings[0], "catalog: facts of node n1 (node facts schema \"quiesce.node-facts/v0\"")
	require.Contains(t, res.warnings[0], "n3 (its 2 parts do not match their digest")
	require.Contains(t, res.warnings[0], "n4 (part 2 of 2 missing)")
	backups, err := Backups(ctx, env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	require.Len(t, backups[0].Topology.Nodes, 1)
	require.Equal(t, "n2", backups[0].Topology.Nodes[0].Node)
}

// putFactsParts stores data as a node's facts split into n parts, as a
// worker stores facts too large for one value.
func putFactsParts(t *testing.T, env *testenv.Env, job, node string, data []byte, n int) {
	t.Helper()
	ctx := context.Background()
	size := (len(data) + n - 1) / n
	for i := range n {
		_, err := env.H.Jobs.Put(ctx, messages.NodeFactsPartKey(job, node, i+1), data[i*size:min(len(data), (i+1)*size)])
		require.NoError(t, err)
	}
	sum := sha256.Sum256(data)
	head, err := json.Marshal(messages.NodeFacts{Schema: messages.NodeFactsSchema, Node: node, Parts: n, SHA256: hex.EncodeToString(sum[:])})
	require.NoError(t, err)
	_, err = env.H.Jobs.Put(ctx, messages.NodeFactsKey(job, node), head)
	require.NoError(t, err)
}
