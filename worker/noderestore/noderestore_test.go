package noderestore_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/noderestore"
	"github.com/quiesce/quiesce/worker/nodetool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeService is a Cassandra that is only a flag: enough for the file
// steps, which the real-Cassandra drill (internal/suite/e2e) covers with the
// real thing.
type fakeService struct {
	mu      sync.Mutex
	running bool
	stops   int
	env     map[string]string
}

func (f *fakeService) Running(context.Context, messages.Node) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running, nil
}

func (f *fakeService) Stop(context.Context, messages.Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = false
	f.stops++
	return nil
}

func (f *fakeService) Start(_ context.Context, _ messages.Node, env map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = true
	f.env = env
	return nil
}

// node is a Cassandra node's directories on the local file system.
type node struct {
	root, data, commitlog, hints, caches, cdc string
}

func newNode(t *testing.T) node {
	root := t.TempDir()
	n := node{root: root, data: filepath.Join(root, "data"), commitlog: filepath.Join(root, "commitlog"),
		hints: filepath.Join(root, "hints"), caches: filepath.Join(root, "saved_caches"), cdc: filepath.Join(root, "cdc_raw")}
	for _, d := range []string{n.data, n.commitlog, n.hints, n.caches, n.cdc} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	return n
}

func (n node) msg() messages.Node {
	return messages.Node{Name: "n1", Address: "127.0.0.1", Dirs: &messages.NodeDirs{Data: []string{n.data},
		CommitLog: n.commitlog, Hints: n.hints, SavedCaches: n.caches, CDCRaw: n.cdc}}
}

func write(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
}

func link(t *testing.T, from, to string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o755))
	require.NoError(t, os.Link(from, to))
}

// files lists the regular files under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	}))
	sort.Strings(out)
	return out
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	sa, err := os.Stat(a)
	require.NoError(t, err)
	sb, err := os.Stat(b)
	require.NoError(t, err)
	return sa.Sys().(*syscall.Stat_t).Ino == sb.Sys().(*syscall.Stat_t).Ino
}

// layout is a node after a backup with tag T: SSTable 1 of shop.orders at
// the barrier (live and in snapshots/T, an SAI component with it); SSTable 2
// written after it; shop.late created after it; system.peers_v2 and
// system.local with their snapshots; a commitlog segment, a hint and a saved
// cache.
func layout(t *testing.T, n node) {
	orders := filepath.Join(n.data, "shop", "orders-0a1b")
	write(t, filepath.Join(orders, "nb-1-big-Data.db"), "rows of A")
	link(t, filepath.Join(orders, "nb-1-big-Data.db"), filepath.Join(orders, "snapshots", "T", "nb-1-big-Data.db"))
	write(t, filepath.Join(orders, "snapshots", "T", "nb-1-big-SAI+aa+orders_item+Meta.db"), "index of A")
	write(t, filepath.Join(orders, "snapshots", "T", "manifest.json"), `{"files":["nb-1-big-Data.db"]}`)
	write(t, filepath.Join(orders, "snapshots", "T", "schema.cql"), "CREATE TABLE shop.orders (...)")
	write(t, filepath.Join(orders, "nb-2-big-Data.db"), "rows of B")
	write(t, filepath.Join(orders, "snapshots", "older", "nb-0-big-Data.db"), "an operator's snapshot")
	write(t, filepath.Join(n.data, "shop", "late-9f9f", "nb-1-big-Data.db"), "a table made after the barrier")
	for _, tb := range []string{"peers_v2-c4c4", "local-7ad5"} {
		d := filepath.Join(n.data, "system", tb)
		write(t, filepath.Join(d, "snapshots", "T", "nb-1-big-Data.db"), tb+" at the barrier")
		write(t, filepath.Join(d, "nb-3-big-Data.db"), tb+" later")
	}
	write(t, filepath.Join(n.commitlog, "CommitLog-7-1.log"), "writes of B")
	write(t, filepath.Join(n.hints, "abc-1-1.hints"), "a hint of B")
	write(t, filepath.Join(n.caches, "KeyCache-g.db"), "cache")
}

// ordersAtTheBarrier checks that shop.orders holds the files of the
// barrier, the later one aside, its snapshots untouched, and returns its
// directory.
func ordersAtTheBarrier(t *testing.T, n node, restoreID string) string {
	t.Helper()
	orders := filepath.Join(n.data, "shop", "orders-0a1b")
	require.ElementsMatch(t, []string{
		"nb-1-big-Data.db", "nb-1-big-SAI+aa+orders_item+Meta.db",
		filepath.Join("snapshots", noderestore.AsideName(restoreID), "nb-2-big-Data.db"),
		"snapshots/T/manifest.json", "snapshots/T/nb-1-big-Data.db", "snapshots/T/nb-1-big-SAI+aa+orders_item+Meta.db", "snapshots/T/schema.cql",
		"snapshots/older/nb-0-big-Data.db",
	}, files(t, orders))
	return orders
}

func newRestorer(svc noderestore.Service) *noderestore.Restorer {
	r := &local.Runner{}
	return noderestore.New(r, nodetool.New(r, nodetool.Settings{Base: []string{"false"}}), svc, noderestore.Settings{})
}

func TestPrepareInPlacePutsTheBarrierBackAndKeepsWhatItDisplaces(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	layout(t, n)
	svc := &fakeService{}
	r := newRestorer(svc)
	spec := noderestore.Spec{RestoreID: "r1", Target: noderestore.InPlace, Tag: "T"}

	rep, err := r.Prepare(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	require.False(t, rep.Again)
	orders := ordersAtTheBarrier(t, n, "r1")
	aside := filepath.Join("snapshots", noderestore.AsideName("r1"))
	require.True(t, sameFile(t, filepath.Join(orders, "nb-1-big-SAI+aa+orders_item+Meta.db"),
		filepath.Join(orders, "snapshots", "T", "nb-1-big-SAI+aa+orders_item+Meta.db")), "a hard link, not a copy")
	// A table made after the barrier is emptied, its file kept aside.
	require.Equal(t, []string{filepath.Join(aside, "nb-1-big-Data.db")}, files(t, filepath.Join(n.data, "shop", "late-9f9f")))
	require.Equal(t, []string{filepath.Join(n.data, "shop", "late-9f9f")}, rep.Emptied)
	// In place, the system keyspaces come from the snapshot too.
	for _, tb := range []string{"peers_v2-c4c4", "local-7ad5"} {
		require.ElementsMatch(t, []string{"nb-1-big-Data.db", filepath.Join(aside, "nb-3-big-Data.db"), "snapshots/T/nb-1-big-Data.db"},
			files(t, filepath.Join(n.data, "system", tb)), tb)
	}
	require.Equal(t, []string{".quiesce-displaced-r1/CommitLog-7-1.log"}, files(t, n.commitlog))
	require.Equal(t, []string{".quiesce-displaced-r1/abc-1-1.hints"}, files(t, n.hints))
	require.Equal(t, []string{".quiesce-displaced-r1/KeyCache-g.db"}, files(t, n.caches))
	require.Equal(t, 4, rep.Files, "orders' two, peers_v2's and local's")
	require.Equal(t, 3, rep.Linked, "nb-1-big-Data.db of orders was the snapshot's file already")
	require.Equal(t, 7, rep.Moved)
	progress, err := os.ReadFile(noderestore.ProgressPath(*n.msg().Dirs, "r1"))
	require.NoError(t, err)
	require.Equal(t, "restore r1 tag T target in-place\nprepared\n", string(progress))

	// A rerun finds it done and changes nothing.
	before := files(t, n.root)
	rep, err = r.Prepare(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	require.True(t, rep.Again)
	require.Equal(t, before, files(t, n.root))
}

// A crash between the first moves and the progress record: the next attempt
// runs every step again and finds most of them done.
func TestPrepareContinuesAfterAnInterruptedAttempt(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	layout(t, n)
	r := newRestorer(&fakeService{})
	spec := noderestore.Spec{RestoreID: "r1", Target: noderestore.InPlace, Tag: "T"}
	_, err := r.Prepare(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	want := files(t, n.root)

	// Undo the record and half of the work: one placed file unlinked, as if
	// the first attempt had died before linking it.
	require.NoError(t, os.Remove(noderestore.ProgressPath(*n.msg().Dirs, "r1")))
	require.NoError(t, os.Remove(filepath.Join(n.data, "shop", "orders-0a1b", "nb-1-big-SAI+aa+orders_item+Meta.db")))
	rep, err := r.Prepare(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	require.False(t, rep.Again)
	require.Equal(t, 1, rep.Linked)
	require.Zero(t, rep.Moved, "nothing of the first attempt is moved aside again")
	require.Equal(t, want, files(t, n.root))
}

func TestPrepareNewClusterNeverTakesPeersAndDropsLocalUnlessKept(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{true, false} {
		n := newNode(t)
		layout(t, n)
		r := newRestorer(&fakeService{})
		nc := &noderestore.NewClusterSpec{KeepIdentity: keep}
		if !keep {
			nc.InitialTokens = []string{"-9000", "42"}
		}
		_, err := r.Prepare(t.Context(), n.msg(), noderestore.Spec{RestoreID: "r2", Target: noderestore.NewCluster, Tag: "T", NewCluster: nc})
		require.NoError(t, err)
		aside := filepath.Join("snapshots", "quiesce-displaced-r2")
		require.ElementsMatch(t, []string{filepath.Join(aside, "nb-3-big-Data.db"), "snapshots/T/nb-1-big-Data.db"},
			files(t, filepath.Join(n.data, "system", "peers_v2-c4c4")), "peers never come from the snapshot")
		local := files(t, filepath.Join(n.data, "system", "local-7ad5"))
		if keep {
			require.Contains(t, local, "nb-1-big-Data.db")
		} else {
			require.NotContains(t, local, "nb-1-big-Data.db")
		}
	}
}

// A restore from a copy of the volume (the fs driver's staging directory):
// the copy's snapshots become the live data directory's files, table
// directories missing live are made.
func TestPrepareFromAStagedCopy(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	staged := filepath.Join(n.root, ".staged", "data")
	write(t, filepath.Join(staged, "shop", "orders-0a1b", "snapshots", "T", "nb-1-big-Data.db"), "A")
	write(t, filepath.Join(staged, "shop", "orders-0a1b", "snapshots", "T", "manifest.json"), "{}")
	write(t, filepath.Join(staged, "shop", "dropped-5e5e", "snapshots", "T", "nb-4-big-Data.db"), "a table dropped after the barrier")
	write(t, filepath.Join(n.data, "shop", "orders-0a1b", "nb-2-big-Data.db"), "B")
	r := newRestorer(&fakeService{})
	spec := noderestore.Spec{RestoreID: "r3", Target: noderestore.InPlace, Tag: "T",
		Sources: []noderestore.Source{{DataDir: n.data, From: staged}}}
	rep, err := r.Prepare(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Files)
	require.ElementsMatch(t, []string{"nb-1-big-Data.db", "snapshots/quiesce-displaced-r3/nb-2-big-Data.db"}, files(t, filepath.Join(n.data, "shop", "orders-0a1b")))
	require.Equal(t, []string{"nb-4-big-Data.db"}, files(t, filepath.Join(n.data, "shop", "dropped-5e5e")))
	require.True(t, sameFile(t, filepath.Join(n.data, "shop", "orders-0a1b", "nb-1-big-Data.db"),
		filepath.Join(staged, "shop", "orders-0a1b", "snapshots", "T", "nb-1-big-Data.db")))
}

func TestARunningCassandraIsRefusedUnlessTheRestoreMayStopIt(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	layout(t, n)
	before := files(t, n.root)
	svc := &fakeService{running: true}
	r := newRestorer(svc)
	spec := noderestore.Spec{RestoreID: "r1", Target: noderestore.InPlace, Tag: "T"}

	_, err := r.Prepare(t.Context(), n.msg(), spec)
	require.ErrorIs(t, err, noderestore.ErrCassandraRunning)
	require.True(t, errclass.IsPermanent(err))
	_, err = r.Stop(t.Context(), n.msg(), spec)
	require.ErrorIs(t, err, noderestore.ErrCassandraRunning)
	require.Contains(t, err.Error(), "node n1: cassandra is running on the node")
	require.Equal(t, before, files(t, n.root), "nothing changed on the node")
	require.True(t, svc.running)

	spec.StopRunning = true
	rep, err := r.Stop(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	require.False(t, svc.running)
	require.Len(t, rep.Notes, 1, "the drain failed (nodetool is false here) and is noted: %v", rep.Notes)
	rep, err = r.Stop(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	require.True(t, rep.Again)
	require.Equal(t, 1, svc.stops)
}

func TestStartNeedsAPreparedNodeAndPassesNewClusterFacts(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	layout(t, n)
	svc := &fakeService{}
	// A port nothing listens on: the listener is closed before Start dials it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	runner := &local.Runner{}
	r := noderestore.New(runner, nodetool.New(runner, nodetool.Settings{Base: []string{"false"}}), svc, noderestore.Settings{CQLPort: port})
	spec := noderestore.Spec{RestoreID: "r1", Target: noderestore.NewCluster, Tag: "T", Address: "127.0.0.1",
		NewCluster: &noderestore.NewClusterSpec{ClusterName: "scratch", InitialTokens: []string{"-5", "7"}, Seeds: []string{"127.0.0.4"}}}
	_, err = r.Start(t.Context(), n.msg(), spec)
	require.ErrorContains(t, err, "not prepared for restore r1")
	require.False(t, svc.running)

	_, err = r.Prepare(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 1500*1e6)
	defer cancel()
	_, err = r.Start(ctx, n.msg(), spec)
	require.ErrorContains(t, err, fmt.Sprintf("CQL on 127.0.0.1:%d not answering", port), "nothing serves CQL in this test")
	require.True(t, svc.running)
	require.Equal(t, map[string]string{"QUIESCE_RESTORE_ID": "r1", "QUIESCE_CLUSTER_NAME": "scratch",
		"QUIESCE_INITIAL_TOKEN": "-5,7", "QUIESCE_SEEDS": "127.0.0.4"}, svc.env)
}

func TestABadSpecIsRefusedWithEveryProblemNamed(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	layout(t, n)
	before := files(t, n.root)
	r := newRestorer(&fakeService{})
	spec := noderestore.Spec{RestoreID: "../x", Target: "elsewhere", Tag: "T;rm -rf /", Keyspaces: []string{"shop'"},
		Sources: []noderestore.Source{{DataDir: "/not/a/data/dir", From: "relative"}}}
	_, err := r.Prepare(t.Context(), n.msg(), spec)
	require.ErrorIs(t, err, noderestore.ErrBadSpec)
	require.True(t, errclass.IsPermanent(err))
	for _, want := range []string{`restore ID "../x"`, `target "elsewhere"`, "tag", "keyspace", `source for "/not/a/data/dir"`, "source directory"} {
		require.Contains(t, err.Error(), want)
	}
	nc := noderestore.Spec{RestoreID: "r", Target: noderestore.NewCluster, Tag: "T", NewCluster: &noderestore.NewClusterSpec{InitialTokens: []string{"$(reboot)"}}}
	_, err = r.Prepare(t.Context(), n.msg(), nc)
	require.ErrorContains(t, err, `initial token "$(reboot)" is not a token`)
	require.Equal(t, before, files(t, n.root), "nothing changed on the node")
}

// CommandService runs the configured commands through the executor.
func TestCommandServiceRunsTheConfiguredCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	flag := filepath.Join(dir, "running")
	envOut := filepath.Join(dir, "env")
	svc := &noderestore.CommandService{Runner: &local.Runner{}, Settings: noderestore.ServiceSettings{
		Start:     []string{"sh", "-c", `printf %s "$QUIESCE_INITIAL_TOKEN" > "$1"; touch "$2"`, "start", envOut, flag},
		Stop:      []string{"rm", "-f", flag},
		IsRunning: []string{"test", "-e", flag},
	}}
	require.NoError(t, svc.Settings.Validate())
	node := messages.Node{Name: "n1"}
	running, err := svc.Running(t.Context(), node)
	require.NoError(t, err)
	require.False(t, running)
	require.NoError(t, svc.Start(t.Context(), node, map[string]string{"QUIESCE_INITIAL_TOKEN": "1,2"}))
	running, err = svc.Running(t.Context(), node)
	require.NoError(t, err)
	require.True(t, running)
	got, err := os.ReadFile(envOut)
	require.NoError(t, err)
	require.Equal(t, "1,2", string(got))
	require.NoError(t, svc.Stop(t.Context(), node))
	running, err = svc.Running(t.Context(), node)
	require.NoError(t, err)
	require.False(t, running)

	bad := noderestore.ServiceSettings{Unit: "cassandra; reboot", Start: []string{"x"}}
	require.Error(t, bad.Validate())
	require.ErrorContains(t, noderestore.ServiceSettings{}.Validate(), "start command missing")
	require.ErrorContains(t, noderestore.ServiceSettings{Unit: "a b"}.Validate(), `unit "a b"`)
	err = (&noderestore.CommandService{Runner: &local.Runner{}, Settings: noderestore.ServiceSettings{IsRunning: []string{"sh", "-c", "exit 9"}}}).
		Stop(t.Context(), node)
	require.ErrorContains(t, err, "stop Cassandra on n1: local: empty command", "no stop command configured")
}

func TestTeardownEmptiesOnlyANodeThisRestorePrepared(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	layout(t, n)
	svc := &fakeService{}
	r := newRestorer(svc)
	spec := noderestore.Spec{RestoreID: "drill-1", Target: noderestore.NewCluster, Tag: "T", StopRunning: true,
		NewCluster: &noderestore.NewClusterSpec{KeepIdentity: true}}

	// Not restored by this drill: refused, nothing removed.
	before := files(t, n.root)
	require.NoError(t, r.Teardown(t.Context(), n.msg(), spec), "no record: nothing of this drill to tear down")
	require.Equal(t, before, files(t, n.root))

	_, err := r.Prepare(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	// The record of an earlier drill that was killed before its teardown.
	write(t, noderestore.ProgressPath(*n.msg().Dirs, "drill-0"), "restore drill-0 tag T target new-cluster\n")
	svc.running = true
	require.NoError(t, r.Teardown(t.Context(), n.msg(), spec))
	require.False(t, svc.running, "Cassandra stopped first")
	for _, d := range []string{n.data, n.commitlog, n.hints, n.caches, n.cdc} {
		ents, err := os.ReadDir(d)
		require.NoError(t, err)
		require.Empty(t, ents, d)
	}
	require.NoError(t, r.Teardown(t.Context(), n.msg(), spec), "torn down already")
}

// A source on another file system (an EBS volume restored and mounted for
// the restore) is copied in place of being hard-linked; a file the node
// holds already (same name, size and time: an SSTable that was live at the
// barrier) stays, and a rerun copies nothing again.
func TestPrepareCopiesFromAnotherFileSystem(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	layout(t, n)
	// The volume's copy, as a snapshot restored elsewhere would hold it.
	vol, err := os.MkdirTemp("/dev/shm", "quiesce-volume-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(vol) })
	var a, b syscall.Stat_t
	require.NoError(t, syscall.Stat(vol, &a))
	require.NoError(t, syscall.Stat(n.root, &b))
	require.NotEqual(t, a.Dev, b.Dev, "/dev/shm must be another file system than the test's temporary directory")
	require.NoError(t, exec.Command("cp", "-a", n.data, vol).Run())
	from := filepath.Join(vol, "data")

	r := newRestorer(&fakeService{})
	spec := noderestore.Spec{RestoreID: "r3", Target: noderestore.InPlace, Tag: "T",
		Sources: []noderestore.Source{{DataDir: n.data, From: from}}}
	rep, err := r.Prepare(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	orders := ordersAtTheBarrier(t, n, "r3")
	data, err := os.ReadFile(filepath.Join(orders, "nb-1-big-SAI+aa+orders_item+Meta.db"))
	require.NoError(t, err)
	require.Equal(t, "index of A", string(data))
	require.Equal(t, 4, rep.Files)
	require.Zero(t, rep.Linked)
	require.Equal(t, 3, rep.Copied, "orders' live nb-1-big-Data.db is the snapshot's file already")
	want := files(t, n.root)

	// An attempt that died mid-copy left a partial file and no record.
	require.NoError(t, os.Remove(noderestore.ProgressPath(*n.msg().Dirs, "r3")))
	local := filepath.Join(n.data, "system", "local-7ad5")
	require.NoError(t, os.Rename(filepath.Join(local, "nb-1-big-Data.db"), filepath.Join(local, "nb-1-big-Data.db.quiesce-copy")))
	rep, err = r.Prepare(t.Context(), n.msg(), spec)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Copied, "only the file the first attempt had not finished")
	require.Zero(t, rep.Moved, "nothing of the first attempt is moved aside")
	require.Equal(t, want, files(t, n.root))
}
