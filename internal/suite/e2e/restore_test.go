//go:build cassandra

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/cli"
	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/testkit/cassandra"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker/fs"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/noderestore"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// Sizes of the drill's data: set A before the backup, B after it, and the
// rows of A deleted after it.
const (
	drillRowsA     = 3000
	drillCustomers = 300
	drillRowsB     = 1000
	drillDeleted   = 500
	// A set B id is above every set A id.
	drillBBase = 1_000_000
)

// harnessService starts and stops the harness's nodes: the test stands in
// for systemd. A new cluster's initial tokens (QUIESCE_INITIAL_TOKEN) go to
// the node's cassandra.yaml, as an operator's start wrapper would put them.
type harnessService struct {
	byName map[string]*cassandra.Node
}

func (h harnessService) node(n messages.Node) (*cassandra.Node, error) {
	c, ok := h.byName[n.Name]
	if !ok {
		return nil, fmt.Errorf("no harness node %s", n.Name)
	}
	return c, nil
}

func (h harnessService) Running(_ context.Context, n messages.Node) (bool, error) {
	c, err := h.node(n)
	if err != nil {
		return false, err
	}
	return c.Running(), nil
}

func (h harnessService) Stop(ctx context.Context, n messages.Node) error {
	c, err := h.node(n)
	if err != nil {
		return err
	}
	return c.Stop(ctx)
}

func (h harnessService) Start(ctx context.Context, n messages.Node, env map[string]string) error {
	c, err := h.node(n)
	if err != nil {
		return err
	}
	if tokens := env["QUIESCE_INITIAL_TOKEN"]; tokens != "" {
		spec := c.Spec()
		spec.YAML = map[string]string{"initial_token": `"` + tokens + `"`}
		if err := c.Reconfigure(spec); err != nil {
			return err
		}
	}
	return c.Start(ctx)
}

// drillData is what the drill wrote.
type drillData struct {
	a         []int // ids of set A in shop.orders
	customers int
	// nameHits is how many customers of A are named "name-7".
	nameHits int
}

// writeSetA creates the schema and writes set A at consistency ALL.
func writeSetA(t *testing.T, s *gocql.Session) drillData {
	t.Helper()
	ctx := t.Context()
	for _, q := range []string{
		`CREATE KEYSPACE shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}`,
		`CREATE TABLE shop.orders (id int PRIMARY KEY, item text, qty int)`,
		`CREATE TABLE shop.customers (id int PRIMARY KEY, name text)`,
		`CREATE INDEX customers_name ON shop.customers (name) USING 'sai'`,
	} {
		require.NoError(t, s.Query(q).ExecContext(ctx), q)
	}
	d := drillData{customers: drillCustomers}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	ids := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range ids {
				if err := s.Query(`INSERT INTO shop.orders (id, item, qty) VALUES (?, ?, ?)`, i, fmt.Sprintf("item-%d", i), i%7).
					Consistency(gocql.All).ExecContext(ctx); err != nil {
					errs <- err
					return
				}
				if i < drillCustomers {
					if err := s.Query(`INSERT INTO shop.customers (id, name) VALUES (?, ?)`, i, fmt.Sprintf("name-%d", i%50)).
						Consistency(gocql.All).ExecContext(ctx); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	for i := range drillRowsA {
		ids <- i
		d.a = append(d.a, i)
	}
	close(ids)
	wg.Wait()
	close(errs)
	require.NoError(t, <-errs)
	d.nameHits = drillCustomers / 50
	return d
}

// afterTheBarrier writes set B, deletes part of A, alters shop.orders and
// creates a table, then flushes one node so that some of it is in SSTables
// and the rest in the commitlog.
func afterTheBarrier(t *testing.T, c *cassandra.Cluster, s *gocql.Session) {
	t.Helper()
	ctx := t.Context()
	for i := range drillRowsB {
		require.NoError(t, s.Query(`INSERT INTO shop.orders (id, item, qty) VALUES (?, ?, ?)`, drillBBase+i, "b", 1).
			Consistency(gocql.All).ExecContext(ctx))
	}
	for i := range drillDeleted {
		require.NoError(t, s.Query(`DELETE FROM shop.orders WHERE id = ?`, i*2).Consistency(gocql.All).ExecContext(ctx))
	}
	for _, q := range []string{
		`ALTER TABLE shop.orders ADD note text`,
		`CREATE TABLE shop.late (id int PRIMARY KEY)`,
		`INSERT INTO shop.late (id) VALUES (1)`,
	} {
		require.NoError(t, s.Query(q).Consistency(gocql.All).ExecContext(ctx), q)
	}
	c.Node(0).MustNodetool(t, "flush")
}

// phaseTimes are the drill's figures, by phase.
type phaseTimes struct {
	volumes, stop, prepare, start, verify time.Duration
}

func (p phaseTimes) total() time.Duration { return p.volumes + p.stop + p.prepare + p.start + p.verify }

func (p phaseTimes) String() string {
	return fmt.Sprintf("volumes %s, stop %s, prepare %s, start (to CQL) %s, verify (to correct reads at ALL) %s; total %s",
		p.volumes.Round(10*time.Millisecond), p.stop.Round(10*time.Millisecond), p.prepare.Round(10*time.Millisecond),
		p.start.Round(100*time.Millisecond), p.verify.Round(100*time.Millisecond), p.total().Round(100*time.Millisecond))
}

// restoreRun restores a backup onto a cluster's nodes: target node i takes
// source node i's volume snapshot and data.
type restoreRun struct {
	id      string
	bk      messages.Backup
	store   *fs.Driver
	target  *cassandra.Cluster
	spec    func(i int) noderestore.Spec
	service harnessService
	nodes   []messages.Node
}

func newRestorer(svc noderestore.Service, n *cassandra.Node) *noderestore.Restorer {
	r := &local.Runner{}
	tool := nodetool.New(r, nodetool.Settings{Base: []string{n.NodetoolScript()}})
	return noderestore.New(r, tool, svc, noderestore.Settings{Poll: 500 * time.Millisecond})
}

// run restores every node and returns the figures by phase.
func (rr *restoreRun) run(t *testing.T) phaseTimes {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	var pt phaseTimes
	nodes := rr.target.Nodes()
	rr.service = harnessService{byName: map[string]*cassandra.Node{}}
	rr.nodes = nil
	for i, n := range nodes {
		name := nodeName(i)
		rr.service.byName[name] = n
		rr.nodes = append(rr.nodes, messages.Node{Name: name, Address: n.Addr(), Dirs: &messages.NodeDirs{
			Data: []string{n.DataDir()}, CommitLog: n.CommitLogDir(), Hints: n.HintsDir(), SavedCaches: n.SavedCachesDir(), CDCRaw: n.CDCRawDir()}})
	}
	snapOf := map[string]string{}
	for _, s := range rr.bk.Snapshots {
		snapOf[s.Node] = s.SnapshotID
	}

	// Volumes: the fs driver restores each source node's volume snapshot
	// into a staging directory beside the target's data directory (the
	// EBS restore makes a volume instead), idempotently.
	began := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() {
			staged := stagingDir(n.DataDir(), rr.id)
			if _, err := os.Stat(filepath.Join(staged, ".complete")); err == nil {
				return
			}
			_ = os.RemoveAll(staged) // a half-made copy of an earlier attempt: ours, not the node's data
			if err := rr.store.RestoreContext(ctx, snapOf[nodeName(i)], staged); err != nil {
				errs[i] = err
				return
			}
			errs[i] = os.WriteFile(filepath.Join(staged, ".complete"), nil, 0o644)
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	pt.volumes = time.Since(began)

	// Stop, then prepare: every node stopped before any is prepared, every
	// node prepared before any starts.
	each := func(phase string, f func(i int, r *noderestore.Restorer) (noderestore.Report, error)) time.Duration {
		began := time.Now()
		reps := make([]noderestore.Report, len(nodes))
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Go(func() { reps[i], errs[i] = f(i, newRestorer(rr.service, n)) })
		}
		wg.Wait()
		for i := range nodes {
			require.NoError(t, errs[i], "%s %s", phase, nodeName(i))
			r := reps[i]
			t.Logf("%s %s: again %v, %d files in place (%d linked), %d moved aside, %d table dirs emptied, host ID %s, notes %v",
				phase, nodeName(i), r.Again, r.Files, r.Linked, r.Moved, len(r.Emptied), r.HostID, r.Notes)
		}
		return time.Since(began)
	}
	pt.stop = each("stop", func(i int, r *noderestore.Restorer) (noderestore.Report, error) {
		return r.Stop(ctx, rr.nodes[i], rr.spec(i))
	})
	pt.prepare = each("prepare", func(i int, r *noderestore.Restorer) (noderestore.Report, error) {
		return r.Prepare(ctx, rr.nodes[i], rr.spec(i))
	})
	pt.start = each("start", func(i int, r *noderestore.Restorer) (noderestore.Report, error) {
		return r.Start(ctx, rr.nodes[i], rr.spec(i))
	})
	return pt
}

// stagingDir is where the fs driver's copy of a data directory's volume is
// restored: beside it, on the same file system.
func stagingDir(dataDir, restoreID string) string {
	return filepath.Join(filepath.Dir(dataDir), ".quiesce-restore", restoreID, filepath.Base(dataDir))
}

// expect is the verification of a restored cluster on addrs, node i being
// source node i of the backup; keepIDs keeps the host IDs.
func expect(bk messages.Backup, addrs []string, keepIDs bool, d drillData) noderestore.Verify {
	v := noderestore.Verify{ClusterName: bk.Topology.ClusterName, SchemaVersion: bk.Topology.SchemaVersion,
		CQL: []noderestore.CQLCheck{
			{Query: `SELECT count(*) FROM shop.orders`, Expect: int64(len(d.a))},
			{Query: `SELECT count(*) FROM shop.customers`, Expect: int64(d.customers)},
			{Query: `SELECT id FROM shop.customers WHERE name = 'name-7'`, Expect: int64(d.nameHits)},
		}}
	for i, a := range addrs {
		f := bk.Topology.Nodes[i]
		n := noderestore.ExpectNode{Address: a, Tokens: f.Tokens}
		if keepIDs {
			n.HostID = f.HostID
		}
		v.Nodes = append(v.Nodes, n)
	}
	return v
}

// verify runs every node's verification, then reads the data itself.
func (rr *restoreRun) verify(t *testing.T, v noderestore.Verify, d drillData) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	v.RestoreID = rr.id
	nodes := rr.target.Nodes()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			rep, err := newRestorer(rr.service, n).VerifyNode(ctx, rr.nodes[i], n.Addr(), v)
			errs[i] = err
			if err == nil && len(rep.Tokens) != len(v.Nodes[i].Tokens) {
				errs[i] = fmt.Errorf("reported tokens %v, want %v", rep.Tokens, v.Nodes[i].Tokens)
			}
		})
	}
	wg.Wait()
	for i := range nodes {
		require.NoError(t, errs[i], "verify %s", nodeName(i))
	}
	took := time.Since(began)
	requireSetA(t, rr.target, rr.target.Hosts(), d)
	return took
}

// requireSetA reads the restored cluster: every row of A, the deleted ones
// too; nothing of B; the schema as it was at the barrier; no ERROR logged
// since each node's restored start. hosts are the nodes' addresses (nodes
// started by service scripts are not the harness's running ones).
func requireSetA(t *testing.T, target *cassandra.Cluster, hosts []string, d drillData) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cfg := target.SessionConfig()
	cfg.Hosts = hosts
	s, err := cfg.CreateSession()
	require.NoError(t, err, "CQL session on %v", hosts)
	defer s.Close()
	var ids []int
	it := s.Query(`SELECT id FROM shop.orders`).Consistency(gocql.All).IterContext(ctx)
	var id int
	for it.Scan(&id) {
		ids = append(ids, id)
	}
	require.NoError(t, it.Close())
	sort.Ints(ids)
	require.Equal(t, d.a, ids, "exactly set A at consistency ALL")
	var cols []string
	it = s.Query(`SELECT column_name FROM system_schema.columns WHERE keyspace_name = 'shop' AND table_name = 'orders'`).IterContext(ctx)
	var col string
	for it.Scan(&col) {
		cols = append(cols, col)
	}
	require.NoError(t, it.Close())
	require.ElementsMatch(t, []string{"id", "item", "qty"}, cols, "the column added after the barrier is gone")
	var tables []string
	it = s.Query(`SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'shop'`).IterContext(ctx)
	var tb string
	for it.Scan(&tb) {
		tables = append(tables, tb)
	}
	require.NoError(t, it.Close())
	require.ElementsMatch(t, []string{"orders", "customers"}, tables, "the table made after the barrier is gone")
	for _, n := range target.Nodes() {
		require.NotContains(t, n.LogTail(5), "ERROR", "node %s", n.Addr())
	}
}

// TestRestoreDrillOnRealCassandra is the restore drill: a backup of three
// nodes, RF 3, restored in place after the cluster changed and died (a
// restore job run by worker processes, one SIGKILLed mid-way), then into a
// new cluster on other addresses, then by `quiesce drill`, each verified at
// consistency ALL.
func TestRestoreDrillOnRealCassandra(t *testing.T) {
	began := time.Now()
	c := cassandra.Start(t, cassandra.Options{
		Nodes:       3,
		ClusterName: "quiesce-e2e",
		Topology:    []cassandra.NodeSpec{{Rack: "rack1"}, {Rack: "rack2"}, {Rack: "rack3"}},
	})
	s := c.Session(t)
	d := writeSetA(t, s)
	t.Logf("3 nodes up and set A written (%d orders, %d customers) after %s", len(d.a), d.customers, time.Since(began).Round(100*time.Millisecond))

	b := startBundle(t, &realCluster{c: c, session: s}, false, 2)
	j, bk := b.backup(t, messages.JobRequest{RequestID: "drill-1", Cluster: clusterLocal})
	require.Equal(t, messages.PhaseSucceeded, j.Phase, b.status(t, j.ID))
	require.NotNil(t, bk.Topology)
	t.Logf("backup %s (tag %s): %d volume snapshots", j.ID, bk.Tag, len(bk.Snapshots))

	afterTheBarrier(t, c, s)
	s.Close()
	for _, n := range c.Nodes() {
		n.Kill()
	}

	t.Run("in place, as a restore job", func(t *testing.T) {
		restoreJobInPlace(t, b, c, bk, d)
	})

	t.Run("new cluster", func(t *testing.T) {
		ctx := t.Context()
		// The restore job's nodes, started by their service scripts, were
		// killed when its subtest ended.
		for _, n := range c.Nodes() {
			require.NoError(t, n.Stop(ctx))
		}
		nc := cassandra.New(t, cassandra.Options{
			Nodes:       3,
			BaseAddr:    "127.0.0.4",
			ClusterName: "quiesce-e2e",
			Topology:    []cassandra.NodeSpec{{Rack: "rack1"}, {Rack: "rack2"}, {Rack: "rack3"}},
		})
		seeds := []string{nc.Node(0).Addr()}
		rr := &restoreRun{id: "drill-new", bk: bk, store: b.store, target: nc,
			spec: func(i int) noderestore.Spec {
				return noderestore.Spec{RestoreID: "drill-new", Target: noderestore.NewCluster, Tag: bk.Tag,
					Sources:    []noderestore.Source{{DataDir: nc.Node(i).DataDir(), From: stagingDir(nc.Node(i).DataDir(), "drill-new")}},
					NewCluster: &noderestore.NewClusterSpec{ClusterName: "quiesce-e2e", KeepIdentity: true, Seeds: seeds}}
			}}
		pt := rr.run(t)
		pt.verify = rr.verify(t, expect(bk, nc.Hosts(), true, d), d)
		t.Logf("restore of 3 nodes into a new cluster: %s", pt)
		for _, n := range nc.Nodes() {
			require.NoError(t, n.Stop(ctx))
		}
	})

	t.Run("quiesce drill", func(t *testing.T) {
		runDrill(t, b, bk, d)
	})
}

// runDrill runs `quiesce drill` on the backup: a new identity this time (the
// snapshot's system.local dropped, each node started with its source's
// tokens), into scratch nodes on 127.0.0.4-6 that the cluster's
// cassandra_service starts and stops with scripts, as systemd would.
func runDrill(t *testing.T, b *bundle, bk messages.Backup, d drillData) {
	scratch := cassandra.New(t, cassandra.Options{
		Nodes:       3,
		BaseAddr:    "127.0.0.4",
		ClusterName: "quiesce-e2e",
		Topology:    []cassandra.NodeSpec{{Rack: "rack1"}, {Rack: "rack2"}, {Rack: "rack3"}},
	})
	cfg := *b.cfg
	cfg.Clusters = append([]config.Cluster(nil), b.cfg.Clusters...)
	src := &cfg.Clusters[0]
	require.Equal(t, clusterLocal, src.Name)
	src.Drill = &config.Drill{Target: "scratch", NewIdentity: true, Checks: []config.DrillCheck{
		{Query: `SELECT count(*) FROM shop.orders`, Expect: int64(len(d.a))},
		{Query: `SELECT count(*) FROM shop.orders WHERE id >= 1000000 ALLOW FILTERING`, Expect: 0},
		{Query: `SELECT id FROM shop.orders WHERE id = 0`, Expect: 1},
		{Query: `SELECT count(*) FROM shop.customers`, Expect: int64(d.customers)},
		{Query: `SELECT id FROM shop.customers WHERE name = 'name-7'`, Expect: int64(d.nameHits)},
		{Query: `SELECT column_name FROM system_schema.columns WHERE keyspace_name = 'shop' AND table_name = 'orders'`, Expect: 3},
		{Query: `SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'shop'`, Expect: 2},
	}}
	script := func(name string) []string {
		return []string{"sh", "-c", `exec "$1/$QUIESCE_NODE/bin/` + name + `"`, "sh", scratch.Dir()}
	}
	sc := config.Cluster{Name: "scratch", Executor: "local", Snapshotter: "fs", FS: config.FS{Store: filepath.Join(scratch.Dir(), "store")},
		CassandraService: &config.CassandraService{Start: script("cassandra-start"), Stop: script("cassandra-stop"), IsRunning: script("cassandra-running")}}
	for i, n := range scratch.Nodes() {
		n.WriteServiceScripts(t)
		sc.Nodes = append(sc.Nodes, config.Node{
			Name: fmt.Sprintf("node%d", i+1), Address: n.Addr(),
			Volumes:  []config.Volume{{ID: fmt.Sprintf("vol-scratch-%d", i+1), Path: n.DataDir()}},
			Nodetool: []string{n.NodetoolScript()},
			Directories: &config.Directories{Data: []string{n.DataDir()}, CommitLog: n.CommitLogDir(), Hints: n.HintsDir(),
				SavedCaches: n.SavedCachesDir(), CDCRaw: n.CDCRawDir()},
		})
	}
	cfg.Clusters = append(cfg.Clusters, sc)
	require.NoError(t, cfg.Validate())
	data, err := yaml.Marshal(&cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "quiesce.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o600))

	began := time.Now()
	var out, errOut bytes.Buffer
	code := cli.Main([]string{"drill", "--config", path, "--nats", b.env.URL, "--timeout", "15m", clusterLocal}, &out, &errOut)
	t.Logf("quiesce drill %s (exit %d after %s):\n%s%s", clusterLocal, code, time.Since(began).Round(100*time.Millisecond), out.String(), errOut.String())
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out.String(), "backup "+bk.JobID)

	// The record, in the catalog beside the backups (never among them).
	lister, err := b.env.H.Catalog.ListKeysFiltered(t.Context(), messages.DrillKey(clusterLocal, "*"))
	require.NoError(t, err)
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	require.Len(t, keys, 1)
	e, err := b.env.H.Catalog.Get(t.Context(), keys[0])
	require.NoError(t, err)
	rec, err := messages.DecodeDrill(e.Value())
	require.NoError(t, err)
	require.Equal(t, messages.DrillSucceeded, rec.Outcome, rec.Error)
	require.Equal(t, bk.JobID, rec.BackupJob)
	require.True(t, rec.TornDown)
	var phases []string
	for _, p := range rec.Phases {
		phases = append(phases, fmt.Sprintf("%s %.1fs", p.Name, p.Seconds))
	}
	t.Logf("drill phases: %s", strings.Join(phases, ", "))
	backups, err := planner.Backups(t.Context(), b.env.H.Catalog, clusterLocal)
	require.NoError(t, err)
	for _, x := range backups {
		require.NotEmpty(t, x.JobID, "a drill record listed as a backup")
	}

	// Torn down: nothing runs, nothing is left on the scratch nodes.
	for _, n := range scratch.Nodes() {
		r, err := n.Nodetool(t.Context(), "status")
		require.NoError(t, err)
		require.NotZero(t, r.ExitCode, "node %s stopped", n.Addr())
		for _, dir := range []string{n.DataDir(), n.CommitLogDir(), n.HintsDir()} {
			ents, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Empty(t, ents, "%s emptied", dir)
		}
		_, err = os.Stat(filepath.Join(n.Dir(), ".quiesce-restore"))
		require.True(t, os.IsNotExist(err), "the staged volume copies removed")
	}
}
