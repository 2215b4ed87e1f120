package fs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/fs"
)

// A volume is a directory; a snapshot is a tagged copy of it that can be
// found by tag and restored.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "fs-example")
	defer os.RemoveAll(dir)
	vol := filepath.Join(dir, "vol")
	_ = os.MkdirAll(vol, 0o755)
	_ = os.WriteFile(filepath.Join(vol, "data"), []byte("hello"), 0o644)

	d, _ := fs.New(filepath.Join(dir, "store"))
	snaps, err := d.Create(ctx, worker.CreateRequest{
		Volumes: []messages.Volume{{ID: "vol-1", Path: vol}},
		Tags:    map[string]string{messages.TagTask: "job.snapshot.node-1"},
	})
	if err != nil {
		panic(err)
	}
	found, _ := d.Find(ctx, map[string]string{messages.TagTask: "job.snapshot.node-1"})
	fmt.Println(len(found), found[0].State, found[0].Tags[messages.TagManaged])

	_ = d.Restore(snaps[0].ID, filepath.Join(dir, "restored"))
	b, _ := os.ReadFile(filepath.Join(dir, "restored", "data"))
	fmt.Println(string(b))
	// Output:
	// 1 completed true
	// hello
}
