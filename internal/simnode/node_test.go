package simnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newNode(t *testing.T, opts Options) *Node {
	t.Helper()
	root := filepath.Join(t.TempDir(), "node1")
	n, err := Create(root, opts)
	require.NoError(t, err)
	return n
}

func writeRows(t *testing.T, n *Node, ks, table string, from, to int) []string {
	t.Helper()
	var rows []string
	for i := from; i < to; i++ {
		r := fmt.Sprintf("%s.%s|%d", ks, table, i)
		require.NoError(t, n.Write(ks, table, []byte(r)))
		rows = append(rows, r)
	}
	return rows
}

func TestCreateOpen(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	vols := []string{filepath.Join(base, "vol-a"), filepath.Join(base, "vol-b")}
	n, err := Create(filepath.Join(base, "n1"), Options{
		Name:      "n1",
		DataDirs:  vols,
		Keyspaces: map[string][]string{"ks1": {"a", "b", "c"}, "ks2": {"d"}},
		NumTokens: 4,
	})
	require.NoError(t, err)
	info := n.Info()
	require.Equal(t, "n1", info.Name)
	require.Equal(t, Version, info.Version)
	require.Equal(t, "dc1", info.DC)
	require.Equal(t, "rack1", info.Rack)
	require.Len(t, info.Tokens, 4)
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, info.HostID)
	require.Equal(t, []string{"ks1", "ks2"}, n.Keyspaces())

	perDir := map[string]int{}
	for _, tb := range n.Tables() {
		require.Regexp(t, `^[0-9a-f]{32}$`, tb.ID)
		require.Equal(t, filepath.Join(tb.DataDir, tb.Keyspace, tb.Name+"-"+tb.ID), tb.Dir)
		require.DirExists(t, tb.Dir)
		perDir[tb.DataDir]++
	}
	require.Equal(t, map[string]int{vols[0]: 2, vols[1]: 2}, perDir, "tables spread round-robin")

	again, err := Open(n.Root())
	require.NoError(t, err)
	require.Equal(t, info, again.Info())

	_, err = Create(n.Root(), Options{})
	require.ErrorContains(t, err, "already exists")
	_, err = Open(filepath.Join(base, "nope"))
	require.Error(t, err)
	_, err = Create(filepath.Join(base, "bad"), Options{Keyspaces: map[string][]string{"bad ks": {"t"}}})
	require.Error(t, err)
}

func TestWriteFlushRows(t *testing.T) {
	t.Parallel()
	n := newNode(t, Options{})
	rows := writeRows(t, n, "app", "events", 0, 10)
	tb := n.Tables()[0]
	require.Equal(t, "events", tb.Name)

	got, err := CountRows(tb.Dir)
	require.NoError(t, err)
	require.Zero(t, got, "unflushed rows live only in the memtable")
	all, err := n.AllRows()
	require.NoError(t, err)
	require.ElementsMatch(t, rows, all)

	require.NoError(t, n.Flush())
	live, err := Rows(tb.Dir)
	require.NoError(t, err)
	require.Equal(t, rows, live)
	for _, c := range components {
		require.FileExists(t, filepath.Join(tb.Dir, "nb-1-big-"+c))
	}
	size, err := n.LiveDataSize()
	require.NoError(t, err)
	require.Positive(t, size)

	// A second flush with an empty memtable makes no generation.
	require.NoError(t, n.Flush("app"))
	_, err = os.Stat(filepath.Join(tb.Dir, "nb-2-big-Data.db"))
	require.ErrorIs(t, err, os.ErrNotExist)

	more := writeRows(t, n, "app", "events", 10, 15)
	require.NoError(t, n.Flush("app"))
	require.FileExists(t, filepath.Join(tb.Dir, "nb-2-big-Data.db"))
	live, err = Rows(tb.Dir)
	require.NoError(t, err)
	require.ElementsMatch(t, append(rows, more...), live)

	require.Error(t, n.Write("app", "events", []byte("two\nlines")))
	require.Error(t, n.Write("app", "events", []byte{}))
	var tnf *TableNotFoundError
	require.ErrorAs(t, n.Write("app", "nope", []byte("x")), &tnf)
	var knf *KeyspaceNotFoundError
	require.ErrorAs(t, n.Write("nope", "events", []byte("x")), &knf)
	require.ErrorAs(t, n.Flush("nope"), &knf)
	require.EqualError(t, n.Flush("nope"), "Keyspace nope does not exist")
}

func TestFlushRecoversInterruptedFlush(t *testing.T) {
	t.Parallel()
	n := newNode(t, Options{})
	tb := n.Tables()[0]
	rows := writeRows(t, n, tb.Keyspace, tb.Name, 0, 5)
	// A process that died right after renaming the memtable to its segment.
	mt := n.memtablePath(tb)
	seg := strings.TrimSuffix(mt, ".log") + ".flushing-1"
	require.NoError(t, os.Rename(mt, seg))
	later := writeRows(t, n, tb.Keyspace, tb.Name, 5, 7)
	require.NoError(t, n.Flush())
	live, err := Rows(tb.Dir)
	require.NoError(t, err)
	require.ElementsMatch(t, append(rows, later...), live)
	require.NoFileExists(t, seg)

	// One that died after the SSTable was complete but before removing the
	// segment: the rows are not written twice.
	extra := writeRows(t, n, tb.Keyspace, tb.Name, 7, 9)
	require.NoError(t, os.Rename(mt, strings.TrimSuffix(mt, ".log")+".flushing-3"))
	require.NoError(t, writeSSTable(tb.Dir, 3, strings.TrimSuffix(mt, ".log")+".flushing-3"))
	require.NoError(t, n.Flush())
	live, err = Rows(tb.Dir)
	require.NoError(t, err)
	require.ElementsMatch(t, append(append(rows, later...), extra...), live)
}

func TestSnapshotHardLinksAndClear(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	n, err := Create(filepath.Join(base, "n1"), Options{
		DataDirs:  []string{filepath.Join(base, "v1"), filepath.Join(base, "v2")},
		Keyspaces: map[string][]string{"ks1": {"a", "b"}, "ks2": {"c"}},
	})
	require.NoError(t, err)
	var rows []string
	for _, tb := range n.Tables() {
		rows = append(rows, writeRows(t, n, tb.Keyspace, tb.Name, 0, 3)...)
		require.NoError(t, n.Flush())
		rows = append(rows, writeRows(t, n, tb.Keyspace, tb.Name, 3, 5)...) // left in the memtable
	}

	require.NoError(t, n.Snapshot("t1", nil))
	var snapRows []string
	for _, d := range n.DataDirs() {
		r, err := SnapshotRows(d, "t1")
		require.NoError(t, err)
		snapRows = append(snapRows, r...)
	}
	require.ElementsMatch(t, rows, snapRows, "snapshot flushes the memtable first")

	for _, tb := range n.Tables() {
		dir := filepath.Join(tb.Dir, "snapshots", "t1")
		require.FileExists(t, filepath.Join(dir, "manifest.json"))
		require.FileExists(t, filepath.Join(dir, "schema.cql"))
		live, err := liveFiles(tb.Dir)
		require.NoError(t, err)
		require.NotEmpty(t, live)
		for _, f := range live {
			a, err := os.Stat(filepath.Join(tb.Dir, f))
			require.NoError(t, err)
			b, err := os.Stat(filepath.Join(dir, f))
			require.NoError(t, err)
			require.True(t, os.SameFile(a, b), "%s is a hard link", f)
		}
	}

	err = n.Snapshot("t1", nil)
	var exists *SnapshotExistsError
	require.ErrorAs(t, err, &exists)
	require.ErrorContains(t, err, "Snapshot t1 already exists")

	require.NoError(t, n.Snapshot("t2", []string{"ks2"}))
	entries, err := n.ListSnapshots()
	require.NoError(t, err)
	require.Len(t, entries, 4+len(systemTables), "the system tables are in a snapshot of every keyspace")
	require.Equal(t, "t1", entries[0].Tag)
	last := entries[len(entries)-1]
	require.Equal(t, "t2", last.Tag)
	require.Equal(t, "ks2", last.Keyspace)
	for _, e := range entries {
		if systemKeyspace(e.Keyspace) {
			require.NoFileExists(t, filepath.Join(e.Dir, "schema.cql"), "schema.cql only for user tables")
			continue
		}
		require.FileExists(t, filepath.Join(e.Dir, "schema.cql"))
		require.Positive(t, e.SizeOnDisk)
		require.Less(t, e.TrueSize, e.SizeOnDisk, "live SSTables are not the snapshot's own bytes")
		require.WithinDuration(t, time.Now(), e.Created, time.Hour)
	}
	tags, err := n.Tags()
	require.NoError(t, err)
	require.Equal(t, []string{"t1", "t2"}, tags)

	require.NoError(t, n.ClearSnapshot("t1"))
	require.NoError(t, n.ClearSnapshot("t1"), "a missing tag is fine")
	tags, err = n.Tags()
	require.NoError(t, err)
	require.Equal(t, []string{"t2"}, tags)
	require.NoError(t, n.Snapshot("t3", nil))
	require.NoError(t, n.ClearSnapshot(""))
	tags, err = n.Tags()
	require.NoError(t, err)
	require.Empty(t, tags)
	// The live data is untouched by clearing.
	all, err := n.AllRows()
	require.NoError(t, err)
	require.ElementsMatch(t, rows, all)

	ev, err := Events(n.Root())
	require.NoError(t, err)
	var kinds []string
	for _, e := range ev {
		kinds = append(kinds, e.Kind+" "+e.Tag)
	}
	require.Equal(t, []string{"snapshot t1", "snapshot t2", "clear t1", "clear t1", "snapshot t3", "clear t2", "clear t3"}, kinds)
	for i := 1; i < len(ev); i++ {
		require.False(t, ev[i].Time.Before(ev[i-1].Time))
	}

	require.Error(t, n.Snapshot("bad tag", nil))
	require.Error(t, n.Snapshot("../x", nil))
	require.Error(t, n.ClearSnapshot("a/b"))
	var knf *KeyspaceNotFoundError
	require.ErrorAs(t, n.Snapshot("t4", []string{"nope"}), &knf)
}

func TestSnapshotOfEmptyNode(t *testing.T) {
	t.Parallel()
	n := newNode(t, Options{})
	require.NoError(t, n.Snapshot("empty", nil))
	entries, err := n.ListSnapshots()
	require.NoError(t, err)
	require.Len(t, entries, 2+len(systemTables))
	rows, err := SnapshotRows(n.DataDirs()[0], "empty")
	require.NoError(t, err)
	require.Empty(t, rows)
}

func TestFaults(t *testing.T) {
	t.Parallel()
	n := newNode(t, Options{})
	require.NoError(t, SetFaults(n.Root(), Faults{SnapshotError: "Too many open files", SnapshotFailTimes: 2, ClearError: "boom"}))
	for range 2 {
		err := n.Snapshot("f1", nil)
		var fe *FaultError
		require.ErrorAs(t, err, &fe)
		require.EqualError(t, err, "Too many open files")
	}
	require.NoError(t, n.Snapshot("f1", nil))
	require.Error(t, n.ClearSnapshot("f1"))
	require.Error(t, n.ClearSnapshot("f1"), "fail times 0 means always")
	calls, err := CallCounts(n.Root())
	require.NoError(t, err)
	require.Equal(t, Calls{Snapshot: 3, ClearSnapshot: 2}, calls)
	ev, err := Events(n.Root())
	require.NoError(t, err)
	require.Len(t, ev, 1, "only successes are events")

	require.NoError(t, SetFaults(n.Root(), Faults{}))
	require.NoFileExists(t, filepath.Join(n.Root(), faultsFile))
	require.NoError(t, n.ClearSnapshot("f1"))
	calls, err = CallCounts(n.Root())
	require.NoError(t, err)
	require.Equal(t, Calls{ClearSnapshot: 1}, calls, "SetFaults restarts the counts")

	// A delay is cut short by the context.
	require.NoError(t, SetFaults(n.Root(), Faults{SnapshotDelay: Duration(time.Hour)}))
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
	}()
	err = n.SnapshotContext(ctx, "slow", nil)
	require.ErrorIs(t, err, context.Canceled)
	tags, err := n.Tags()
	require.NoError(t, err)
	require.NotContains(t, tags, "slow")

	// faults.json is plain JSON anyone can write.
	require.NoError(t, os.WriteFile(filepath.Join(n.Root(), faultsFile),
		[]byte(`{"snapshot_error":"disk full","snapshot_delay":"1ms"}`), 0o644))
	require.EqualError(t, n.Snapshot("x", nil), "disk full")
}

func TestLockHonoursContext(t *testing.T) {
	t.Parallel()
	n := newNode(t, Options{})
	unlock, err := n.lock(nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err = n.SnapshotContext(ctx, "locked", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	unlock()
	require.NoError(t, n.SnapshotContext(t.Context(), "locked", nil))
}

// Writers and snapshotters on separate handles, as separate processes would
// have, never lose or repeat a row, and each snapshot holds every row acked
// before it.
func TestConcurrentHandles(t *testing.T) {
	t.Parallel()
	n := newNode(t, Options{Keyspaces: map[string][]string{"ks": {"a", "b", "c"}}})
	const writers, perWriter, snapshots = 4, 150, 8

	var mu sync.Mutex
	type acked struct {
		row string
		at  time.Time
	}
	var written []acked
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := Open(n.Root())
			if err != nil {
				errs <- err
				return
			}
			tables := h.Tables()
			for i := range perWriter {
				tb := tables[i%len(tables)]
				row := fmt.Sprintf("w%d|%d", w, i)
				if err := h.Write(tb.Keyspace, tb.Name, []byte(row)); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				written = append(written, acked{row, time.Now()})
				mu.Unlock()
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		h, err := Open(n.Root())
		if err != nil {
			errs <- err
			return
		}
		for i := range snapshots {
			if err := h.Snapshot(fmt.Sprintf("s%d", i), nil); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		h, err := Open(n.Root())
		if err != nil {
			errs <- err
			return
		}
		for range snapshots {
			if err := h.Flush(); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	all, err := n.AllRows()
	require.NoError(t, err)
	var want []string
	for _, w := range written {
		want = append(want, w.row)
	}
	sort.Strings(all)
	sort.Strings(want)
	require.Equal(t, want, all, "no row lost or duplicated")

	events, err := Events(n.Root())
	require.NoError(t, err)
	require.Len(t, events, snapshots)
	for _, ev := range events {
		got, err := SnapshotRows(n.DataDirs()[0], ev.Tag)
		require.NoError(t, err)
		have := map[string]int{}
		for _, r := range got {
			have[r]++
		}
		for _, w := range written {
			if w.at.Before(ev.Time) {
				require.Equal(t, 1, have[w.row], "snapshot %s lacks %s acked before it", ev.Tag, w.row)
			}
		}
		for r, c := range have {
			require.Equal(t, 1, c, "row %s twice in %s", r, ev.Tag)
		}
	}
}

func TestFormatSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0 bytes"}, {1023, "1023 bytes"}, {1024, "1 KiB"}, {5181, "5.06 KiB"},
		{1258291, "1.2 MiB"}, {3 << 30, "3 GiB"}, {5 << 40, "5 TiB"},
	} {
		require.Equal(t, tc.want, FormatSize(tc.in), "%d", tc.in)
	}
}

func TestCompaction(t *testing.T) {
	t.Parallel()
	n := newNode(t, Options{Keyspaces: map[string][]string{"ks": {"a"}}})
	tb := n.Tables()[0]
	var rows []string
	for i := range CompactionThreshold - 1 {
		rows = append(rows, writeRows(t, n, "ks", "a", i*10, i*10+10)...)
		require.NoError(t, n.Flush())
	}
	gens, err := liveGenerations(tb.Dir)
	require.NoError(t, err)
	require.Len(t, gens, CompactionThreshold-1)
	require.NoError(t, n.Snapshot("before", nil))
	entries, err := n.ListSnapshots()
	require.NoError(t, err)
	require.Zero(t, entries[0].TrueSize)

	rows = append(rows, writeRows(t, n, "ks", "a", 1000, 1010)...)
	require.NoError(t, n.Flush())
	gens, err = liveGenerations(tb.Dir)
	require.NoError(t, err)
	require.Equal(t, []int{CompactionThreshold + 1}, gens, "compacted into one generation")
	live, err := Rows(tb.Dir)
	require.NoError(t, err)
	require.ElementsMatch(t, rows, live)

	entries, err = n.ListSnapshots()
	require.NoError(t, err)
	require.Positive(t, entries[0].TrueSize, "the snapshot alone now holds the replaced SSTables")
	snap, err := SnapshotRows(tb.DataDir, "before")
	require.NoError(t, err)
	require.Len(t, snap, (CompactionThreshold-1)*10)

	// A compaction that died before removing its ancestors is finished by
	// the next operation, without counting a row twice.
	more := writeRows(t, n, "ks", "a", 2000, 2005)
	require.NoError(t, n.Flush())
	gens, err = liveGenerations(tb.Dir)
	require.NoError(t, err)
	var data []byte
	for _, g := range gens {
		d, err := os.ReadFile(componentPath(tb.Dir, g, "Data.db"))
		require.NoError(t, err)
		data = append(data, d...)
	}
	require.NoError(t, writeSSTableData(tb.Dir, gens[len(gens)-1]+1, data, gens))
	all, err := n.AllRows()
	require.NoError(t, err)
	require.ElementsMatch(t, append(rows, more...), all)
	gens2, err := liveGenerations(tb.Dir)
	require.NoError(t, err)
	require.Equal(t, []int{gens[len(gens)-1] + 1}, gens2)
}
