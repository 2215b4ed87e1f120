package simnode_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/quiesce/quiesce/internal/simnode"
)

// A node takes writes into its memtable; a snapshot flushes them and
// hard-links the SSTables under the tag, where they survive later writes.
func Example() {
	dir, _ := os.MkdirTemp("", "simnode-example")
	defer os.RemoveAll(dir)

	node, err := simnode.Create(filepath.Join(dir, "node-1"), simnode.Options{
		Keyspaces: map[string][]string{"shop": {"orders"}},
	})
	if err != nil {
		panic(err)
	}
	for i := range 3 {
		_ = node.Write("shop", "orders", fmt.Appendf(nil, "order-%d", i))
	}
	_ = node.Snapshot("nightly", nil)
	_ = node.Write("shop", "orders", []byte("order-3"))

	rows, _ := simnode.SnapshotRows(node.DataDirs()[0], "nightly")
	tags, _ := node.Tags()
	fmt.Println(rows, tags)

	code := simnode.Main([]string{"--root", node.Root(), "snapshot", "-t", "nightly"}, os.Stdout, os.Stdout)
	fmt.Println("exit", code)
	// Output:
	// [order-0 order-1 order-2] [nightly]
	// Requested creating snapshot(s) for [all keyspaces] with snapshot name [nightly] and options {skipFlush=false}
	// error: Snapshot nightly already exists.
	// -- StackTrace --
	// java.io.IOException: Snapshot nightly already exists.
	// exit 2
}
