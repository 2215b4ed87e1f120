package nodetool_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/nodetool"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
}

// A data directory laid out as Cassandra 5.0.6 lays it out, snapshot and
// all (manifest.json lists the Data.db of each SSTable only, and has no
// trailing newline).
func cassandraTree(t *testing.T) (dir string) {
	dir = filepath.Join(t.TempDir(), "data")
	orders := filepath.Join(dir, "shop", "orders-834612c0ee0911f1a0286b6c2e0eb17a", "snapshots", "T1")
	write(t, filepath.Join(orders, "manifest.json"), "{\n  \"files\" : [ \"nb-1-big-Data.db\", \"nb-2-big-Data.db\" ],\n  \"created_at\" : \"2026-12-02T04:34:59.433Z\",\n  \"expires_at\" : null,\n  \"ephemeral\" : false\n}")
	write(t, filepath.Join(orders, "schema.cql"), "CREATE TABLE IF NOT EXISTS shop.orders (\n    id int PRIMARY KEY\n) WITH ID = 834612c0-ee09-11f1-a028-6b6c2e0eb17a;\nCREATE CUSTOM INDEX IF NOT EXISTS orders_item_idx ON shop.orders (item) USING 'sai';\n")
	for _, f := range []string{"nb-1-big-Data.db", "nb-1-big-TOC.txt", "nb-2-big-Data.db", "nb-2-big-SAI+aa+GroupMeta.db"} {
		write(t, filepath.Join(orders, f), strings.Repeat("x", 10))
	}
	// A legacy secondary index lives in a subdirectory of the snapshot.
	write(t, filepath.Join(orders, ".orders_idx", "nb-1-big-Data.db"), "idx")
	local := filepath.Join(dir, "system", "local-7ad54392bcdd35a684174e047860b377", "snapshots", "T1")
	write(t, filepath.Join(local, "manifest.json"), `{"files":["nb-8-big-Data.db","nb-9-big-Data.db"]}`)
	write(t, filepath.Join(local, "nb-8-big-Data.db"), "abc")
	empty := filepath.Join(dir, "system", "peers_v2-c4325fbb8e5e3bafbd070f9250ed818e", "snapshots", "T1")
	write(t, filepath.Join(empty, "manifest.json"), `{"files":[]}`)
	// Another tag, and live files, are not listed.
	write(t, filepath.Join(dir, "shop", "orders-834612c0ee0911f1a0286b6c2e0eb17a", "snapshots", "T2", "manifest.json"), `{"files":[]}`)
	write(t, filepath.Join(dir, "shop", "orders-834612c0ee0911f1a0286b6c2e0eb17a", "nb-3-big-Data.db"), "live")
	return dir
}

func TestSnapshotTablesWithFind(t *testing.T) {
	t.Parallel()
	dir := cassandraTree(t)
	c := nodetool.New(&local.Runner{}, nodetool.Settings{})
	tables, err := c.SnapshotTables(context.Background(), messages.Node{Name: "n1"}, []string{dir}, "T1")
	require.NoError(t, err)
	require.Len(t, tables, 3)
	orders := tables[0]
	require.Equal(t, "shop", orders.Keyspace)
	require.Equal(t, "orders", orders.Table)
	require.Equal(t, "834612c0ee0911f1a0286b6c2e0eb17a", orders.ID)
	require.Equal(t, dir, orders.DataDir)
	require.Equal(t, 2, orders.SSTables)
	require.Equal(t, 5, orders.Files)
	require.Equal(t, int64(43), orders.Bytes)
	require.Empty(t, orders.Missing)
	require.Contains(t, orders.CQL, "CREATE CUSTOM INDEX IF NOT EXISTS orders_item_idx")
	require.Equal(t, messages.TableSnapshot{Keyspace: "system", Table: "local", ID: "7ad54392bcdd35a684174e047860b377", DataDir: dir,
		SSTables: 2, Files: 1, Bytes: 3, Missing: []string{"nb-9-big-Data.db"}}, tables[1])
	require.Equal(t, "peers_v2", tables[2].Table)
	require.Zero(t, tables[2].Files)

	// Bad values never reach the node.
	_, err = c.SnapshotTables(context.Background(), messages.Node{Name: "n1"}, []string{"relative/dir"}, "T1")
	require.True(t, errclass.IsPermanent(err))
	_, err = c.SnapshotTables(context.Background(), messages.Node{Name: "n1"}, []string{dir}, "T1;id")
	require.True(t, errclass.IsPermanent(err))
}

func TestParseSnapshotFilesRejectsWhatItCannotRead(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"\x00F 12 /d/ks/t-1/other/x\x00",
		"\x00F x /d/ks/t-1/snapshots/T/x\x00",
		"\x00C /d/ks/t-1/snapshots/T/manifest.json\x00{not json\x00",
		"garbage",
		"\x00C /d/ks/t-1/snapshots/T/manifest.json",
	} {
		_, err := nodetool.ParseSnapshotFiles([]byte(bad), "T")
		require.Error(t, err, "%q", bad)
	}
	tables, err := nodetool.ParseSnapshotFiles(nil, "T")
	require.NoError(t, err)
	require.Empty(t, tables)
}

func TestSyncThroughTheRunner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := nodetool.New(&local.Runner{}, nodetool.Settings{})
	ctx := context.Background()
	require.NoError(t, c.Sync(ctx, messages.Node{Name: "n1"}, []string{dir}))
	require.NoError(t, c.Sync(ctx, messages.Node{Name: "n1"}, nil), "every file system")

	missing := filepath.Join(dir, "nonexistent")
	err := c.Sync(ctx, messages.Node{Name: "n1"}, []string{missing})
	require.Error(t, err)
	require.True(t, errclass.IsPermanent(err))
	require.Contains(t, err.Error(), "sync -f -- "+missing+" exited 1: ")
	require.Contains(t, err.Error(), "No such file or directory")

	for _, bad := range []string{"relative", "/a/../b", "/a b", "/a;id", "/x/"} {
		err := c.Sync(ctx, messages.Node{Name: "n1"}, []string{bad})
		require.True(t, errclass.IsPermanent(err), bad)
		require.ErrorContains(t, err, "data directory", bad)
	}
}
