package fs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/simnode"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

type testBundle struct {
	driver *Driver
	store  string
	base   string
	now    *atomic.Int64
}

func setup(t *testing.T, opts Options) *testBundle {
	t.Helper()
	base := t.TempDir()
	b := &testBundle{store: filepath.Join(base, "store"), base: base, now: new(atomic.Int64)}
	b.now.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	if opts.Clock == nil {
		opts.Clock = func() time.Time { return time.Unix(0, b.now.Load()) }
	}
	d, err := NewWithOptions(b.store, opts)
	require.NoError(t, err)
	b.driver = d
	return b
}

// volume makes a directory with files, a subdirectory, a hard link and a
// symbolic link.
func (b *testBundle) volume(t *testing.T, name string) messages.Volume {
	t.Helper()
	dir := filepath.Join(b.base, name)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "ks", "t-1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "top.txt"), []byte("top of "+name), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ks", "t-1", "Data.db"), []byte("rows of "+name), 0o644))
	require.NoError(t, os.Link(filepath.Join(dir, "ks", "t-1", "Data.db"), filepath.Join(dir, "ks", "t-1", "linked.db")))
	require.NoError(t, os.Symlink("top.txt", filepath.Join(dir, "alias")))
	return messages.Volume{ID: "vol-" + name, Path: dir}
}

func req(task string, vols ...messages.Volume) worker.CreateRequest {
	return worker.CreateRequest{
		Node:    messages.Node{Name: "node-1"},
		Volumes: vols,
		Tags: map[string]string{
			messages.TagTask: task, messages.TagJob: "c1-000000000001", messages.TagCluster: "c1",
		},
	}
}

func TestCreateFindDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	va, vb := b.volume(t, "a"), b.volume(t, "b")
	// A socket in a volume is skipped, not an error.
	ln, err := net.Listen("unix", filepath.Join(va.Path, "s.sock"))
	require.NoError(t, err)
	defer ln.Close()

	snaps, err := b.driver.Create(ctx, req("job.snapshot.node-1", va, vb))
	require.NoError(t, err)
	require.Len(t, snaps, 2)
	start := time.Unix(0, b.now.Load()).UTC()
	for i, s := range snaps {
		require.Regexp(t, `^snap-[0-9a-f]{17}$`, s.ID)
		require.Equal(t, []string{"vol-a", "vol-b"}[i], s.VolumeID)
		require.Equal(t, worker.StateCompleted, s.State)
		require.Equal(t, "100%", s.Progress)
		require.True(t, s.StartTime.Equal(start), "the set shares one point in time")
		require.Equal(t, "true", s.Tags[messages.TagManaged])
		require.Equal(t, "job.snapshot.node-1", s.Tags[messages.TagTask])
	}
	require.NotEqual(t, snaps[0].ID, snaps[1].ID)

	data := b.driver.DataDir(snaps[0].ID)
	got, err := os.ReadFile(filepath.Join(data, "ks", "t-1", "Data.db"))
	require.NoError(t, err)
	require.Equal(t, "rows of a", string(got))
	st, err := os.Stat(filepath.Join(data, "top.txt"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm())
	x, err := os.Stat(filepath.Join(data, "ks", "t-1", "Data.db"))
	require.NoError(t, err)
	y, err := os.Stat(filepath.Join(data, "ks", "t-1", "linked.db"))
	require.NoError(t, err)
	require.False(t, os.SameFile(x, y), "hard links become independent copies")
	link, err := os.Readlink(filepath.Join(data, "alias"))
	require.NoError(t, err)
	require.Equal(t, "top.txt", link)
	require.NoFileExists(t, filepath.Join(data, "s.sock"))

	var m meta
	raw, err := os.ReadFile(filepath.Join(b.store, snaps[0].ID, "meta.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &m))
	require.Equal(t, "node-1", m.Node)
	require.Equal(t, worker.StateCompleted, m.State)
	require.Equal(t, int64(len("top of a")+2*len("rows of a")), m.Size)

	found, err := b.driver.Find(ctx, map[string]string{messages.TagCluster: "c1", messages.TagManaged: "true"})
	require.NoError(t, err)
	require.Len(t, found, 2)
	found, err = b.driver.Find(ctx, map[string]string{messages.TagCluster: "c2"})
	require.NoError(t, err)
	require.Empty(t, found)
	all, err := b.driver.Find(ctx, nil)
	require.NoError(t, err)
	require.Len(t, all, 2)

	got1, err := b.driver.Get(ctx, snaps[1].ID)
	require.NoError(t, err)
	require.Equal(t, snaps[1], got1)

	require.NoError(t, b.driver.Delete(ctx, snaps[0].ID))
	require.NoDirExists(t, filepath.Join(b.store, snaps[0].ID))
	require.ErrorIs(t, b.driver.Delete(ctx, snaps[0].ID), worker.ErrSnapshotGone, "a snapshot already gone says so")
	found, err = b.driver.Find(ctx, nil)
	require.NoError(t, err)
	require.Len(t, found, 1)
	_, err = b.driver.Get(ctx, snaps[0].ID)
	require.ErrorIs(t, err, os.ErrNotExist)

	err = b.driver.Delete(ctx, "../store")
	require.True(t, errclass.IsPermanent(err))
}

func TestDeleteRefusesUnmanaged(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	snaps, err := b.driver.Create(ctx, req("t1", b.volume(t, "a")))
	require.NoError(t, err)
	id := snaps[0].ID
	m, err := b.driver.readMeta(id)
	require.NoError(t, err)
	delete(m.Tags, messages.TagManaged)
	require.NoError(t, b.driver.writeMeta(m))

	err = b.driver.Delete(ctx, id)
	require.ErrorIs(t, err, worker.ErrNotManaged)
	require.True(t, errclass.IsPermanent(err))
	require.DirExists(t, filepath.Join(b.store, id))

	m.Tags[messages.TagManaged] = "false"
	require.NoError(t, b.driver.writeMeta(m))
	require.ErrorIs(t, b.driver.Delete(ctx, id), worker.ErrNotManaged)
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	v := b.volume(t, "a")
	file := filepath.Join(b.base, "plain")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	for _, tc := range []struct {
		desc string
		req  worker.CreateRequest
	}{
		{"no task tag", worker.CreateRequest{Volumes: []messages.Volume{v}, Tags: map[string]string{}}},
		{"no volumes", req("t")},
		{"bad volume id", req("t", messages.Volume{ID: "vol a", Path: v.Path})},
		{"relative path", req("t", messages.Volume{ID: "vol-a", Path: "a"})},
		{"missing path", req("t", messages.Volume{ID: "vol-a", Path: filepath.Join(b.base, "nope")})},
		{"not a directory", req("t", messages.Volume{ID: "vol-a", Path: file})},
		{"volume twice", req("t", v, v)},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := b.driver.Create(ctx, tc.req)
			require.Error(t, err)
			require.True(t, errclass.IsPermanent(err), "%v", err)
		})
	}
	found, err := b.driver.Find(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, found, "a rejected request records nothing")
	require.Equal(t, 7, b.driver.CreateCalls())
}

func TestCreateIsIdempotentOnTaskTag(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	va, vb := b.volume(t, "a"), b.volume(t, "b")
	first, err := b.driver.Create(ctx, req("task-1", va))
	require.NoError(t, err)
	again, err := b.driver.Create(ctx, req("task-1", va))
	require.NoError(t, err)
	require.Equal(t, first, again)

	// A redelivery that covers more volumes creates only the missing one.
	both, err := b.driver.Create(ctx, req("task-1", va, vb))
	require.NoError(t, err)
	require.Len(t, both, 2)
	require.Equal(t, first[0].ID, both[0].ID)
	require.Equal(t, 3, b.driver.CreateCalls())
	require.Equal(t, 2, b.driver.Copies())

	other, err := b.driver.Create(ctx, req("task-2", va))
	require.NoError(t, err)
	require.NotEqual(t, first[0].ID, other[0].ID)
}

// Concurrent deliveries of one task, through drivers that share a store as
// separate workers would, make one snapshot per volume.
func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	va, vb := b.volume(t, "a"), b.volume(t, "b")
	const workers = 8
	var wg sync.WaitGroup
	results := make([][]worker.Snapshot, workers)
	errs := make([]error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := New(b.store)
			if err != nil {
				errs[i] = err
				return
			}
			task := "same-task"
			if i%2 == 1 {
				task = fmt.Sprintf("task-%d", i)
			}
			results[i], errs[i] = d.Create(t.Context(), req(task, va, vb))
		}()
	}
	wg.Wait()
	for i := range workers {
		require.NoError(t, errs[i])
		require.Len(t, results[i], 2)
	}
	same, err := b.driver.Find(t.Context(), map[string]string{messages.TagTask: "same-task"})
	require.NoError(t, err)
	require.Len(t, same, 2, "one snapshot per volume for the shared task")
	for i := 0; i < workers; i += 2 {
		require.ElementsMatch(t, []string{same[0].ID, same[1].ID}, []string{results[i][0].ID, results[i][1].ID})
	}
	all, err := b.driver.Find(t.Context(), nil)
	require.NoError(t, err)
	require.Len(t, all, 2+2*workers/2)
}

func TestHooksPendingAndRollback(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	entered := make(chan []worker.Snapshot, 1)
	var failCopy atomic.Bool
	b := setup(t, Options{
		BeforeCreate: func(ctx context.Context, r worker.CreateRequest) error {
			if r.Tags[messages.TagTask] == "refused" {
				return errors.New("injected: RequestLimitExceeded")
			}
			return nil
		},
		BeforeCopy: func(ctx context.Context, s []worker.Snapshot) error {
			if failCopy.Load() {
				return errors.New("injected: copy failed")
			}
			entered <- s
			release := hold
			if s[0].Tags[messages.TagTask] != "held" {
				release = nil // only the context ends the wait
			}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	ctx := t.Context()
	v := b.volume(t, "a")

	_, err := b.driver.Create(ctx, req("refused", v))
	require.ErrorContains(t, err, "RequestLimitExceeded")

	done := make(chan error, 1)
	go func() {
		_, err := b.driver.Create(ctx, req("held", v))
		done <- err
	}()
	pending := <-entered
	require.Len(t, pending, 1)
	require.Equal(t, worker.StatePending, pending[0].State)
	found, err := b.driver.Find(ctx, map[string]string{messages.TagTask: "held"})
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.Equal(t, worker.StatePending, found[0].State, "a copy in progress is pending, not orphaned")
	require.ErrorIs(t, b.driver.Delete(ctx, pending[0].ID), worker.ErrSnapshotInUse)
	// Another delivery of the same task meanwhile waits for the copy, and
	// gets the same snapshot once it is whole: never a second copy, and
	// never a success while the copy could still fail.
	dupDone := make(chan []worker.Snapshot, 1)
	go func() {
		dup, err := b.driver.Create(ctx, req("held", v))
		assert.NoError(t, err)
		dupDone <- dup
	}()
	select {
	case <-dupDone:
		t.Fatal("a second delivery returned while the first was still copying")
	case <-time.After(300 * time.Millisecond):
	}
	close(hold)
	require.NoError(t, <-done)
	dup := <-dupDone
	require.Len(t, dup, 1)
	require.Equal(t, pending[0].ID, dup[0].ID)
	require.Equal(t, worker.StateCompleted, dup[0].State)
	got, err := b.driver.Get(ctx, pending[0].ID)
	require.NoError(t, err)
	require.Equal(t, worker.StateCompleted, got.State)

	failCopy.Store(true)
	_, err = b.driver.Create(ctx, req("fails", v))
	require.ErrorContains(t, err, "copy failed")
	found, err = b.driver.Find(ctx, map[string]string{messages.TagTask: "fails"})
	require.NoError(t, err)
	require.Empty(t, found, "a failed copy leaves nothing behind")

	// A cancelled context stops a held copy and rolls it back.
	failCopy.Store(false)
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		<-entered
		cancel()
	}()
	_, err = b.driver.Create(cctx, req("cancelled", v))
	require.ErrorIs(t, err, context.Canceled)
	found, err = b.driver.Find(ctx, map[string]string{messages.TagTask: "cancelled"})
	require.NoError(t, err)
	require.Empty(t, found)
}

// A snapshot whose copying process died stays visible, in state error, and
// the task's next delivery replaces it.
func TestOrphanedCopy(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	v := b.volume(t, "a")
	id, err := b.driver.newID()
	require.NoError(t, err)
	tags := map[string]string{messages.TagTask: "orphan", messages.TagManaged: "true"}
	require.NoError(t, os.WriteFile(filepath.Join(b.store, id, copyingFile), nil, 0o644))
	require.NoError(t, b.driver.writeMeta(meta{ID: id, VolumeID: v.ID, VolumePath: v.Path, State: worker.StatePending, Tags: tags}))

	found, err := b.driver.Find(ctx, map[string]string{messages.TagTask: "orphan"})
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.Equal(t, worker.StateError, found[0].State)
	require.Contains(t, found[0].StateMessage, "interrupted")

	snaps, err := b.driver.Create(ctx, req("orphan", v))
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	require.NotEqual(t, id, snaps[0].ID)
	require.Equal(t, worker.StateCompleted, snaps[0].State)
	require.NoDirExists(t, filepath.Join(b.store, id))
}

func TestCompleteAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{CompleteAfter: time.Minute})
	ctx := t.Context()
	snaps, err := b.driver.Create(ctx, req("slow", b.volume(t, "a")))
	require.NoError(t, err)
	require.Equal(t, worker.StatePending, snaps[0].State)
	require.Equal(t, "0%", snaps[0].Progress)
	b.now.Add(int64(30 * time.Second))
	got, err := b.driver.Get(ctx, snaps[0].ID)
	require.NoError(t, err)
	require.Equal(t, worker.StatePending, got.State)
	require.Equal(t, "50%", got.Progress)
	b.now.Add(int64(30 * time.Second))
	found, err := b.driver.Find(ctx, map[string]string{messages.TagTask: "slow"})
	require.NoError(t, err)
	require.Equal(t, worker.StateCompleted, found[0].State)
	// Only the report lags: the copy is whole and deletable.
	require.NoError(t, b.driver.Delete(ctx, snaps[0].ID))
}

func TestVolumeContainingStore(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(base, "f"), []byte("x"), 0o644))
	d, err := New(filepath.Join(base, "store"))
	require.NoError(t, err)
	snaps, err := d.Create(t.Context(), req("t", messages.Volume{ID: "vol-root", Path: base}))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(d.DataDir(snaps[0].ID), "f"))
	require.NoDirExists(t, filepath.Join(d.DataDir(snaps[0].ID), "store"))
}

func TestRestoreRefusesNonEmptyTarget(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	snaps, err := b.driver.Create(t.Context(), req("t", b.volume(t, "a")))
	require.NoError(t, err)
	dst := filepath.Join(b.base, "restored")
	require.NoError(t, b.driver.Restore(snaps[0].ID, dst))
	require.FileExists(t, filepath.Join(dst, "ks", "t-1", "Data.db"))
	require.ErrorContains(t, b.driver.Restore(snaps[0].ID, dst), "not empty")
	require.Error(t, b.driver.Restore("snap-00000000000000000", filepath.Join(b.base, "r2")))
	require.Error(t, b.driver.Restore("../x", filepath.Join(b.base, "r3")))
}

// The whole point: a node written to while "nodetool snapshot" runs, its data
// directories then copied by the driver, restores to volumes whose
// snapshots/<tag>/ SSTables hold every row acknowledged before the snapshot.
func TestRestoreProvesBackup(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	vols := []string{filepath.Join(base, "vol-0"), filepath.Join(base, "vol-1")}
	node, err := simnode.Create(filepath.Join(base, "node"), simnode.Options{
		Name: "node-1", DataDirs: vols,
		Keyspaces: map[string][]string{"shop": {"orders", "carts", "users"}},
	})
	require.NoError(t, err)
	d, err := New(filepath.Join(base, "store"))
	require.NoError(t, err)

	w := &simnode.Writer{Node: node, Interval: 200 * time.Microsecond, Record: true}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	werr := make(chan error, 1)
	go func() { werr <- w.Run(ctx) }()
	require.Eventually(t, func() bool { return w.Count() >= 50 }, 10*time.Second, time.Millisecond)

	fleet := simnode.NewFleet(node)
	require.NoError(t, fleet.Snapshot(ctx, messages.Node{Name: "node-1"}, "bk", nil))
	var mvols []messages.Volume
	for i, p := range vols {
		mvols = append(mvols, messages.Volume{ID: fmt.Sprintf("vol-%d", i), Path: p})
	}
	snaps, err := d.Create(ctx, worker.CreateRequest{
		Node: messages.Node{Name: "node-1"}, Volumes: mvols,
		Tags: map[string]string{messages.TagTask: "j.snapshot.node-1"},
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return w.Count() >= 100 }, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-werr)

	events, err := simnode.Events(node.Root())
	require.NoError(t, err)
	require.Len(t, events, 1)
	for _, s := range snaps {
		require.False(t, s.StartTime.Before(events[0].Time), "volume snapshot after the flush")
	}

	var restored []string
	for _, s := range snaps {
		dst := filepath.Join(base, "restore", s.VolumeID)
		require.NoError(t, d.Restore(s.ID, dst))
		rows, err := simnode.SnapshotRows(dst, "bk")
		require.NoError(t, err)
		restored = append(restored, rows...)
	}
	before := w.AckedBefore(events[0].Time)
	require.GreaterOrEqual(t, len(before), 50)
	require.Subset(t, restored, before)
	seen := map[string]bool{}
	for _, r := range restored {
		require.False(t, seen[r], "row %s restored twice", r)
		seen[r] = true
	}
	require.Less(t, len(restored), int(w.Count()), "rows written after the snapshot are not in it")
}

// What a killed process leaves part-way (a snapshot directory it made but
// never recorded, a snapshot renamed away but not yet removed) is never a
// snapshot, and the next operation on the store removes it.
func TestDebrisIsNeverCountedAndIsSwept(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	v := b.volume(t, "a")
	unrecorded, err := b.driver.newID()
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(b.store, unrecorded, dataDir, "ks"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(b.store, unrecorded, dataDir, "ks", "half.db"), []byte("half"), 0o644))
	deleting := filepath.Join(b.store, deletingPrefix+"snap-0123456789abcdef0-beef")
	require.NoError(t, os.MkdirAll(filepath.Join(deleting, dataDir), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(deleting, dataDir, "rest.db"), []byte("rest"), 0o644))

	found, err := b.driver.Find(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, found, "debris is no snapshot")
	require.NoDirExists(t, filepath.Join(b.store, unrecorded), "a reader removes debris when the store is free")
	require.NoDirExists(t, deleting)

	// With the store lock held by a writer, a reader leaves a directory
	// without meta.json alone: it may be one being recorded.
	again, err := b.driver.newID()
	require.NoError(t, err)
	unlock, err := lockFile(ctx, filepath.Join(b.store, storeLock))
	require.NoError(t, err)
	found, err = b.driver.Find(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, found)
	require.DirExists(t, filepath.Join(b.store, again))
	unlock()

	// A writer removes it under the lock.
	snaps, err := b.driver.Create(ctx, req("t1", v))
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	require.NoDirExists(t, filepath.Join(b.store, again))
	ents, err := os.ReadDir(b.store)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{storeLock, snaps[0].ID}, names)
	require.Equal(t, 3, b.driver.Swept())
}

// A second delivery that finds the task's snapshot being copied by another
// process waits for that copy. When that process dies instead of finishing,
// the snapshot is in error, and the waiting delivery copies the volume again.
func TestCreateWaitsForAnotherCopierAndRetakesWhenItDies(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	v := b.volume(t, "a")
	id, err := b.driver.newID()
	require.NoError(t, err)
	// The other copier: its lock held by an open file, as a process would.
	copier, err := os.OpenFile(filepath.Join(b.store, id, copyingFile), os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	require.NoError(t, syscall.Flock(int(copier.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	tags := map[string]string{messages.TagTask: "t1", messages.TagManaged: "true", messages.TagJob: "c1-000000000001"}
	require.NoError(t, b.driver.writeMeta(meta{ID: id, VolumeID: v.ID, VolumePath: v.Path, State: worker.StatePending, Tags: tags}))

	done := make(chan []worker.Snapshot, 1)
	go func() {
		snaps, err := b.driver.Create(ctx, req("t1", v))
		assert.NoError(t, err)
		done <- snaps
	}()
	select {
	case <-done:
		t.Fatal("returned while another process was copying")
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, copier.Close()) // the copier dies: its lock goes with it
	snaps := <-done
	require.Len(t, snaps, 1)
	require.NotEqual(t, id, snaps[0].ID, "the interrupted copy is replaced")
	require.Equal(t, worker.StateCompleted, snaps[0].State)
	require.NoDirExists(t, filepath.Join(b.store, id))
}

// Create asks the request's fence before it records anything, and creates
// nothing when the fence says the lease is lost.
func TestCreateAsksTheFence(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	v := b.volume(t, "a")
	lost := errors.New("lease lost")
	r := req("t1", v)
	r.Fence = func(context.Context) error { return lost }
	_, err := b.driver.Create(ctx, r)
	require.ErrorIs(t, err, lost)
	found, err := b.driver.Find(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, found)

	r.Fence = nil
	first, err := b.driver.Create(ctx, r)
	require.NoError(t, err)
	asked := false
	r.Fence = func(context.Context) error { asked = true; return lost }
	again, err := b.driver.Create(ctx, r)
	require.NoError(t, err, "nothing to create: the fence is not asked")
	require.False(t, asked)
	require.Equal(t, first[0].ID, again[0].ID)
}
