//go:build cassandra

package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

// TestBackupsOfRealCassandra backs up one three-node cluster, RF 3, with a
// writer writing throughout, in every way the tier covers; the nodes are
// started once (the expensive part) and the jobs run one after another.
func TestBackupsOfRealCassandra(t *testing.T) {
	rc := startCluster(t)
	b := newBundle(t, rc)
	ids := rc.hostIDs(t)

	t.Run("local executor", func(t *testing.T) {
		j, bk := b.backup(t, messages.JobRequest{RequestID: "local-1", Cluster: clusterLocal})
		require.Equal(t, messages.PhaseSucceeded, j.Phase, b.status(t, j.ID))
		logFigures(t, j)
		tables := b.requireSnapshotsWhole(t, bk, nil)
		t.Logf("%d table snapshots in 3 volume snapshots", tables)
		rc.requireNoTag(t, bk.Tag)

		// Every flush was verified and made durable: the data directory's
		// file system synced before the node counted as flushed.
		res := b.flushResults(t, j.ID)
		for i, n := range rc.c.Nodes() {
			r := res[nodeName(i)]
			require.Equal(t, &messages.FlushReport{Tag: bk.Tag, Synced: []string{n.DataDir()}}, r.Flush, nodeName(i))
			t.Logf("flush of %s: %s (nodetool snapshot, then sync -f)", r.Target, r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
		}

		// The catalog is enough to rebuild the cluster.
		require.Empty(t, bk.Warnings)
		topo := bk.Topology
		require.NotNil(t, topo)
		require.Equal(t, "quiesce-e2e", topo.ClusterName)
		require.Equal(t, "org.apache.cassandra.dht.Murmur3Partitioner", topo.Partitioner)
		require.Equal(t, "org.apache.cassandra.locator.GossipingPropertyFileSnitch", topo.Snitch)
		require.Equal(t, "5.0.6", topo.CassandraVersion)
		require.Equal(t, 16, topo.NumTokens)
		require.Regexp(t, `^[0-9a-f-]{36}$`, topo.SchemaVersion)
		for _, want := range []string{
			"CREATE KEYSPACE IF NOT EXISTS shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'};",
			"CREATE KEYSPACE IF NOT EXISTS audit WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'};",
			"CREATE TABLE IF NOT EXISTS shop.orders (", "CREATE TABLE IF NOT EXISTS shop.customers (",
			"CREATE CUSTOM INDEX IF NOT EXISTS customers_name ON shop.customers (name) USING 'sai';",
			"CREATE TABLE IF NOT EXISTS audit.events (",
		} {
			require.Contains(t, topo.Schema, want)
		}
		require.NotContains(t, topo.Schema, "system_schema")
		require.Len(t, topo.Nodes, 3)
		for i, n := range rc.c.Nodes() {
			f := topo.Nodes[i]
			require.Equal(t, nodeName(i), f.Node)
			require.Equal(t, ids[n.Addr()], f.HostID)
			require.Equal(t, n.Addr(), f.Address)
			require.Equal(t, []string{"dc1", n.Spec().Rack}, []string{f.Datacenter, f.Rack})
			require.Len(t, f.Tokens, 16)
			require.Equal(t, messages.NodeDirs{Data: []string{n.DataDir()}, CommitLog: n.CommitLogDir(), Hints: n.HintsDir(),
				SavedCaches: n.SavedCachesDir(), CDCRaw: n.CDCRawDir()}, f.Dirs)
			byName := map[string]messages.TableSnapshot{}
			for _, tb := range f.Tables {
				require.Empty(t, tb.Missing, "%s %s.%s", f.Node, tb.Keyspace, tb.Table)
				byName[tb.Keyspace+"."+tb.Table] = tb
			}
			require.Positive(t, byName["shop.orders"].SSTables, "the writer's rows were flushed into shop.orders on %s", f.Node)
			require.Positive(t, byName["shop.orders"].Bytes)
			require.Contains(t, byName, "system_schema.tables", "every keyspace, the system ones included")
			require.Contains(t, byName, "system.local")
		}
		require.Len(t, topo.Volumes, 3)
		for i, v := range topo.Volumes {
			require.Equal(t, rc.c.Node(i).DataDir(), v.MountPoint)
			require.Equal(t, "/dev/xvdf", v.Device)
			require.Positive(t, v.SizeBytes)
		}
	})

	t.Run("ssh executor", func(t *testing.T) {
		j, bk := b.backup(t, messages.JobRequest{RequestID: "ssh-1", Cluster: clusterSSH})
		require.Equal(t, messages.PhaseSucceeded, j.Phase, b.status(t, j.ID))
		logFigures(t, j)
		b.requireSnapshotsWhole(t, bk, nil)
		rc.requireNoTag(t, bk.Tag)
		// No directories configured: the flush synced every file system,
		// and the catalog has the data directories nodetool datapaths gave.
		res := b.flushResults(t, j.ID)
		for i, n := range rc.c.Nodes() {
			r := res[nodeName(i)]
			require.Equal(t, &messages.FlushReport{Tag: bk.Tag, SyncedAll: true}, r.Flush)
			t.Logf("flush of %s over SSH: %s (nodetool snapshot, then sync)", r.Target, r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
			require.Equal(t, []string{n.DataDir()}, bk.Topology.Nodes[i].Dirs.Data)
			require.Equal(t, ids[n.Addr()], bk.Topology.Nodes[i].HostID)
		}
		require.Empty(t, bk.Warnings)
	})

	t.Run("keyspace filtered", func(t *testing.T) {
		j, bk := b.backup(t, messages.JobRequest{RequestID: "shop-1", Cluster: clusterLocal, Keyspaces: []string{"shop"}})
		require.Equal(t, messages.PhaseSucceeded, j.Phase, b.status(t, j.ID))
		want := []string{"shop", "system_schema", "system"}
		require.Equal(t, want, bk.Keyspaces)
		tables := b.requireSnapshotsWhole(t, bk, want)
		t.Logf("%d table snapshots of %v", tables, want)
		rc.requireNoTag(t, bk.Tag)
		require.Contains(t, bk.Topology.Schema, "CREATE TABLE IF NOT EXISTS shop.orders (")
		require.NotContains(t, bk.Topology.Schema, "audit")
	})

	// requireFailedCleanly checks what a job that failed at the barrier
	// leaves: each node it names failed with nodetool's reason in quiesce
	// status, every clean-up succeeded, no tag, no volume snapshot.
	requireFailedCleanly := func(t *testing.T, j messages.Job, tag string, failed map[string]string, nodes ...int) string {
		t.Helper()
		require.Equal(t, messages.PhaseFailed, j.Phase)
		j = b.env.WaitFor(t, j.ID, jobTimeout, func(j messages.Job) bool {
			return j.Progress.Cleared+j.Progress.ClearFailed == j.Progress.ClearTasks
		})
		rc.waitNoTag(t, tag, nodes...)
		status := b.status(t, j.ID)
		t.Logf("quiesce status %s:\n%s", j.ID, status)
		for node, reason := range failed {
			require.Contains(t, status, "FAILED flush "+node+": ", status)
			require.Contains(t, status, reason)
		}
		require.NotContains(t, status, "FAILED clear")
		require.NotContains(t, status, "WARNING")
		require.Zero(t, j.Progress.ClearFailed)
		b.requireNoVolumeSnapshot(t, j.ID)
		return status
	}

	t.Run("missing keyspace", func(t *testing.T) {
		j, _ := b.backup(t, messages.JobRequest{RequestID: "nosuchks-1", Cluster: clusterLocal, Keyspaces: []string{"nosuchks"}})
		require.Contains(t, j.Error, "Keyspace nosuchks does not exist")
		requireFailedCleanly(t, j, j.Tag, map[string]string{"n1": "Keyspace nosuchks does not exist"})
	})

	t.Run("nodetool cannot be run", func(t *testing.T) {
		j, _ := b.backup(t, messages.JobRequest{RequestID: "broken-1", Cluster: clusterBroken})
		requireFailedCleanly(t, j, j.Tag, map[string]string{"n2": "no-such-nodetool: no such file or directory"})
	})

	t.Run("tag of an operator's snapshot", func(t *testing.T) {
		const tag = "operator-keep"
		op := rc.c.Node(0)
		op.MustNodetool(t, "snapshot", "-t", tag, "shop")
		theirs := tagDirs(t, op.DataDir(), tag)
		require.NotEmpty(t, theirs)
		j, _ := b.backup(t, messages.JobRequest{RequestID: "foreign-1", Cluster: clusterLocal, Tag: tag})
		// The other nodes' tags, the job's own, are cleared; the operator's
		// snapshot is untouched by the job's clean-up.
		requireFailedCleanly(t, j, tag, map[string]string{"n1": "snapshot tag operator-keep already exists on node n1 and is not job"}, 1, 2)
		require.Equal(t, theirs, tagDirs(t, op.DataDir(), tag))
		op.MustNodetool(t, "clearsnapshot", "-t", tag)
	})

	t.Run("cassandra down", func(t *testing.T) {
		down := rc.c.Node(2)
		down.Kill()
		began := time.Now()
		j, _ := b.backup(t, messages.JobRequest{RequestID: "down-1", Cluster: clusterLocal})
		t.Logf("a node down failed the job after %s (JMX refused, retried with backoff)", time.Since(began).Round(100*time.Millisecond))
		status := requireFailedCleanly(t, j, j.Tag, map[string]string{"n3": "Failed to connect to '127.0.0.1:7399'"})
		require.Contains(t, status, "Connection refused")
	})

	backups, err := planner.Backups(t.Context(), b.env.H.Catalog, clusterLocal)
	require.NoError(t, err)
	require.Len(t, backups, 2, "the successful local backups, and nothing of the failed jobs")
}
