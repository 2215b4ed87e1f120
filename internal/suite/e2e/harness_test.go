//go:build cassandra

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/cli"
	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/internal/testkit/cassandra"
	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/fs"
)

// jobTimeout bounds one job on a loaded two-core machine, every nodetool
// call a JVM of its own.
const jobTimeout = 5 * time.Minute

// realCluster is three Cassandra nodes, RF 3, with a writer writing to them.
type realCluster struct {
	c       *cassandra.Cluster
	session *gocql.Session
	writer  *writer
}

// startCluster starts three nodes on 127.0.0.1-3, one rack each, creates
// keyspaces shop (orders, customers with an SAI index) and audit (events),
// RF 3, and starts the writer.
func startCluster(t *testing.T) *realCluster {
	t.Helper()
	began := time.Now()
	c := cassandra.Start(t, cassandra.Options{
		Nodes:       3,
		ClusterName: "quiesce-e2e",
		Topology:    []cassandra.NodeSpec{{Rack: "rack1"}, {Rack: "rack2"}, {Rack: "rack3"}},
	})
	t.Logf("3 nodes UN after %s", time.Since(began).Round(100*time.Millisecond))
	for _, n := range c.Nodes() {
		rss, err := n.RSS()
		require.NoError(t, err)
		t.Logf("node %s: started in %s, RSS %d MiB", n.Addr(), n.StartupTime().Round(100*time.Millisecond), rss>>20)
	}
	s := c.Session(t)
	for _, q := range []string{
		`CREATE KEYSPACE shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}`,
		`CREATE TABLE shop.orders (id int PRIMARY KEY, item text, qty int)`,
		`CREATE TABLE shop.customers (id int PRIMARY KEY, name text)`,
		`CREATE INDEX customers_name ON shop.customers (name) USING 'sai'`,
		`CREATE KEYSPACE audit WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}`,
		`CREATE TABLE audit.events (id int PRIMARY KEY, what text)`,
	} {
		require.NoError(t, s.Query(q).ExecContext(t.Context()), q)
	}
	rc := &realCluster{c: c, session: s, writer: &writer{s: s}}
	rc.writer.start(t)
	return rc
}

// writer writes rows to every table at QUORUM until the test ends.
type writer struct {
	s       *gocql.Session
	written atomic.Int64
	failed  atomic.Int64
}

func (w *writer) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var q *gocql.Query
			switch i % 3 {
			case 0:
				q = w.s.Query(`INSERT INTO shop.orders (id, item, qty) VALUES (?, ?, ?)`, i, fmt.Sprintf("item-%d", i), i%7)
			case 1:
				q = w.s.Query(`INSERT INTO shop.customers (id, name) VALUES (?, ?)`, i, fmt.Sprintf("name-%d", i%50))
			default:
				q = w.s.Query(`INSERT INTO audit.events (id, what) VALUES (?, ?)`, i, "write")
			}
			qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
			if err := q.Consistency(gocql.Quorum).ExecContext(qctx); err != nil {
				w.failed.Add(1)
			} else {
				w.written.Add(1)
			}
			qcancel()
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		t.Logf("the writer wrote %d rows (%d writes failed)", w.written.Load(), w.failed.Load())
	})
}

// bundle is a quiesce on an embedded JetStream: planner, coordinator and
// two workers, with the drivers the configuration file would build.
type bundle struct {
	rc    *realCluster
	env   *testenv.Env
	cfg   *config.Config
	store *fs.Driver
	sshd  *sshtest.SSHD
}

const (
	clusterLocal  = "real-local"
	clusterSSH    = "real-ssh"
	clusterBroken = "real-broken"
)

// nodeName names node i of the Cassandra cluster in quiesce's inventory.
func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }

// newBundle configures three quiesce clusters over the same three nodes:
// one run by the local executor (agent mode) with the nodes' directories
// configured; one behind a real sshd whose directories quiesce finds
// itself; and the local one again with one node whose nodetool cannot be
// run. Each node's volume is its data directory.
func newBundle(t *testing.T, rc *realCluster) *bundle {
	t.Helper()
	return startBundle(t, rc, true, 2)
}

// startBundle starts quiesce for the local cluster (keeping keepLast
// backups), and with withSSH the others too.
func startBundle(t *testing.T, rc *realCluster, withSSH bool, keepLast int) *bundle {
	t.Helper()
	dir := t.TempDir()
	store := filepath.Join(dir, "snapshot-store")
	policy := func(cluster string) config.Policy {
		return config.Policy{Name: "e2e", Cluster: cluster, KeepLast: keepLast,
			FlushTimeout: config.Duration(3 * time.Minute), SnapshotTimeout: config.Duration(3 * time.Minute),
			FinishTimeout: config.Duration(3 * time.Minute), JobTimeout: config.Duration(jobTimeout)}
	}
	local := config.Cluster{Name: clusterLocal, Executor: "local", Snapshotter: "fs", FS: config.FS{Store: store}, DefaultPolicy: "e2e"}
	for i, n := range rc.c.Nodes() {
		local.Nodes = append(local.Nodes, config.Node{
			Name: nodeName(i), Address: n.Addr(), InstanceID: fmt.Sprintf("i-local%d", i+1), AZ: "local-1a",
			Volumes:  []config.Volume{{ID: fmt.Sprintf("vol-local-%d", i+1), Device: "/dev/xvdf", Path: n.DataDir()}},
			Nodetool: []string{n.NodetoolScript()},
			Directories: &config.Directories{Data: []string{n.DataDir()}, CommitLog: n.CommitLogDir(), Hints: n.HintsDir(),
				SavedCaches: n.SavedCachesDir(), CDCRaw: n.CDCRawDir()},
		})
	}
	cfg := &config.Config{Clusters: []config.Cluster{local}, Policies: []config.Policy{policy(clusterLocal)}}
	var sshd *sshtest.SSHD
	if withSSH {
		keyPath, user := sshtest.UserKey(t, dir)
		sshd = sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
		knownHosts := sshtest.WriteKnownHosts(t, dir, sshd.KnownHosts())
		remote := config.Cluster{Name: clusterSSH, Executor: "ssh", Snapshotter: "fs", FS: config.FS{Store: store}, DefaultPolicy: "e2e",
			SSH: config.SSH{User: sshd.User, IdentityFiles: []string{keyPath}, KnownHosts: []string{knownHosts},
				ConnectTimeout: config.Duration(30 * time.Second), CommandTimeout: config.Duration(2 * time.Minute)}}
		for i, n := range rc.c.Nodes() {
			remote.Nodes = append(remote.Nodes, config.Node{
				Name: nodeName(i), Address: sshd.Addr, InstanceID: fmt.Sprintf("i-ssh%d", i+1), AZ: "local-1a",
				Volumes:  []config.Volume{{ID: fmt.Sprintf("vol-ssh-%d", i+1), Path: n.DataDir()}},
				Nodetool: []string{n.NodetoolScript()},
			})
		}
		// The local cluster again, but node n2's nodetool cannot be run.
		broken := local
		broken.Name, broken.Nodes = clusterBroken, append([]config.Node(nil), local.Nodes...)
		broken.Nodes[1].Nodetool = []string{filepath.Join(dir, "no-such-nodetool")}
		for i := range broken.Nodes {
			broken.Nodes[i].Volumes = []config.Volume{{ID: fmt.Sprintf("vol-broken-%d", i+1), Path: rc.c.Node(i).DataDir()}}
		}
		cfg.Clusters = append(cfg.Clusters, remote, broken)
		cfg.Policies = append(cfg.Policies, policy(clusterSSH), policy(clusterBroken))
	}
	require.NoError(t, cfg.Validate())
	fsd, err := fs.New(store)
	require.NoError(t, err)
	b := &bundle{rc: rc, cfg: cfg, store: fsd, sshd: sshd}
	b.env = testenv.New(t, topology.Options{})
	b.start(t, cfg)
	return b
}

// start runs the roles over cfg.
func (b *bundle) start(t *testing.T, cfg *config.Config) {
	t.Helper()
	reg := drivers.New(cfg, drivers.Env{Ctx: t.Context(), Log: zerolog.Nop()})
	t.Cleanup(func() { _ = reg.Close() })
	stack.Start(t, b.env, stack.Config{
		Planner:     planner.PlannerConfig{Inventory: drivers.Inventory(cfg), Discoverer: reg},
		Coordinator: planner.CoordinatorConfig{SweepInterval: 500 * time.Millisecond},
		Worker: worker.Config{BackoffBase: 500 * time.Millisecond, BackoffMax: 2 * time.Second, AwaitPoll: 200 * time.Millisecond,
			Kinds: backupKinds()},
		Drivers: reg,
		Workers: 2,
	})
}

// backupKinds are the kinds the bundle's workers take: a restore's tasks
// are left to the worker processes a restore test starts.
func backupKinds() []messages.Kind {
	var out []messages.Kind
	for _, k := range messages.Kinds {
		if !k.IsRestore() {
			out = append(out, k)
		}
	}
	return out
}

// backup submits a request and waits for the job to end.
func (b *bundle) backup(t *testing.T, req messages.JobRequest) (messages.Job, messages.Backup) {
	t.Helper()
	req.Schema = messages.JobRequestSchema
	req.RequestedBy = "e2e"
	job := b.env.Submit(t, req)
	j := b.env.WaitTerminal(t, job, jobTimeout)
	if j.Phase != messages.PhaseSucceeded {
		return j, messages.Backup{}
	}
	backups, err := planner.Backups(t.Context(), b.env.H.Catalog, req.Cluster)
	require.NoError(t, err)
	for _, bk := range backups {
		if bk.JobID == job {
			full, err := planner.LoadBackup(t.Context(), b.env.H, bk)
			require.NoError(t, err)
			return j, full
		}
	}
	t.Fatalf("job %s succeeded without a catalog record", job)
	return j, messages.Backup{}
}

// logFigures records a job's flush spread and barrier release.
func logFigures(t *testing.T, j messages.Job) {
	t.Helper()
	t.Logf("job %s: %s in %s; flushing %s, flush spread %s, barrier released %s after the last flush",
		j.ID, j.Phase, j.UpdatedAt.Sub(j.CreatedAt).Round(time.Millisecond),
		j.PhaseTimes[messages.PhaseSnapshotting].Sub(j.PhaseTimes[messages.PhaseFlushing]).Round(time.Millisecond),
		j.FlushLast.Sub(j.FlushFirst).Round(time.Millisecond), j.BarrierAt.Sub(j.FlushLast).Round(time.Millisecond))
}

// status runs `quiesce status JOB` and returns what it printed.
func (b *bundle) status(t *testing.T, job string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Main([]string{"status", "--nats", b.env.URL, job}, &out, &errOut)
	require.Equal(t, cli.ExitOK, code, errOut.String())
	return out.String()
}

// flushResults reads the flush results a job's workers published.
func (b *bundle) flushResults(t *testing.T, job string) map[string]messages.TaskResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cons, err := b.env.JS.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectTaskEvent(job, messages.KindFlush)}})
	require.NoError(t, err)
	out := map[string]messages.TaskResult{}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			logCommandSpread(t, out)
			return out
		}
		var r messages.TaskResult
		require.NoError(t, json.Unmarshal(msg.Data(), &r))
		if r.Outcome == messages.OutcomeSucceeded || out[r.Target].Outcome != messages.OutcomeSucceeded {
			out[r.Target] = r
		}
	}
}

// logCommandSpread logs how far apart the nodes' nodetool snapshot commands
// started (the width of the cut) and how long the longest took, then drops
// those times from the reports, so that callers compare what was made.
func logCommandSpread(t *testing.T, res map[string]messages.TaskResult) {
	t.Helper()
	var first, last time.Time
	var longest time.Duration
	for node, r := range res {
		if r.Flush == nil {
			continue
		}
		f := *r.Flush
		require.False(t, f.Started.IsZero(), "%s: flush report without its command's start", node)
		require.False(t, f.Returned.Before(f.Started), node)
		if first.IsZero() || f.Started.Before(first) {
			first = f.Started
		}
		if f.Started.After(last) {
			last = f.Started
		}
		longest = max(longest, f.Returned.Sub(f.Started))
		f.Started, f.Returned = time.Time{}, time.Time{}
		r.Flush = &f
		res[node] = r
	}
	if !first.IsZero() {
		t.Logf("nodetool snapshot started on %d nodes within %s of each other (longest command %s)",
			len(res), last.Sub(first).Round(time.Millisecond), longest.Round(time.Millisecond))
	}
}

// tagDirs lists the snapshots/<tag> directories under a data directory (or
// a copy of one): <dir>/<keyspace>/<table>-<id>/snapshots/<tag>.
func tagDirs(t *testing.T, dataDir, tag string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(dataDir, "*", "*", "snapshots", tag))
	require.NoError(t, err)
	sort.Strings(dirs)
	return dirs
}

// waitNoTag waits until no node holds the tag: after a failed job, a flush
// still running nodetool when its node's clean-up ran reports afterwards,
// and its tag is cleared then.
func (rc *realCluster) waitNoTag(t *testing.T, tag string, nodes ...int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var left []string
		for i, n := range rc.c.Nodes() {
			if len(nodes) == 0 || contains(nodes, i) {
				left = append(left, tagDirs(t, n.DataDir(), tag)...)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshots/%s left on the nodes: %v", tag, left)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// requireNoTag checks that no node holds the tag.
func (rc *realCluster) requireNoTag(t *testing.T, tag string) {
	t.Helper()
	for _, n := range rc.c.Nodes() {
		require.Empty(t, tagDirs(t, n.DataDir(), tag), "node %s holds no snapshots/%s", n.Addr(), tag)
	}
}

// requireSnapshotsWhole checks every volume snapshot of a backup: each
// table directory of the node's data directory at the barrier has
// snapshots/<tag>, holding every file its manifest.json lists; keyspaces,
// when set, are the only ones snapshotted. It returns the tables counted.
func (b *bundle) requireSnapshotsWhole(t *testing.T, bk messages.Backup, keyspaces []string) int {
	t.Helper()
	require.Len(t, bk.Snapshots, 3)
	tables := 0
	for _, s := range bk.Snapshots {
		copyDir := b.store.DataDir(s.SnapshotID)
		tableDirs, err := filepath.Glob(filepath.Join(copyDir, "*", "*-*"))
		require.NoError(t, err)
		require.NotEmpty(t, tableDirs, "volume %s", s.VolumeID)
		for _, td := range tableDirs {
			ks := filepath.Base(filepath.Dir(td))
			snap := filepath.Join(td, "snapshots", bk.Tag)
			if len(keyspaces) > 0 && !contains(keyspaces, ks) {
				require.NoDirExists(t, snap, "keyspace %s is not in a snapshot of %v", ks, keyspaces)
				continue
			}
			require.DirExists(t, snap, "volume %s of %s", s.VolumeID, s.Node)
			data, err := os.ReadFile(filepath.Join(snap, "manifest.json"))
			require.NoError(t, err)
			var m struct {
				Files []string `json:"files"`
			}
			require.NoError(t, json.Unmarshal(data, &m), snap)
			for _, f := range m.Files {
				require.FileExists(t, filepath.Join(snap, f), "listed by %s/manifest.json", snap)
			}
			tables++
		}
	}
	return tables
}

func contains[T comparable](xs []T, x T) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// requireNoVolumeSnapshot checks that a job took no volume snapshot.
func (b *bundle) requireNoVolumeSnapshot(t *testing.T, job string) {
	t.Helper()
	snaps, err := b.store.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Empty(t, snaps, "job %s took no volume snapshot", job)
}

// hostIDs reads each node's host ID from the node itself.
func (rc *realCluster) hostIDs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range rc.c.Nodes() {
		r := n.MustNodetool(t, "info")
		for _, line := range strings.Split(r.Stdout, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "ID" {
				out[n.Addr()] = strings.TrimSpace(v)
			}
		}
	}
	return out
}
