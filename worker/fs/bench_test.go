package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
)

// BenchmarkCreate copies a 200-file, 2 MiB volume per op.
func BenchmarkCreate(b *testing.B) {
	base := b.TempDir()
	vol := filepath.Join(base, "vol")
	for i := range 200 {
		dir := filepath.Join(vol, fmt.Sprintf("t%d", i%10))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), make([]byte, 10<<10), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	d, err := New(filepath.Join(base, "store"))
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		_, err := d.Create(b.Context(), worker.CreateRequest{
			Volumes: []messages.Volume{{ID: "vol-1", Path: vol}},
			Tags:    map[string]string{messages.TagTask: fmt.Sprintf("t%d", i)},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFind scans a store of 1000 snapshots for one task tag.
func BenchmarkFind(b *testing.B) {
	base := b.TempDir()
	vol := filepath.Join(base, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		b.Fatal(err)
	}
	d, err := New(filepath.Join(base, "store"))
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if _, err := d.Create(b.Context(), worker.CreateRequest{
			Volumes: []messages.Volume{{ID: "vol-1", Path: vol}},
			Tags:    map[string]string{messages.TagTask: fmt.Sprintf("t%d", i)},
		}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		s, err := d.Find(b.Context(), map[string]string{messages.TagTask: "t500"})
		if err != nil || len(s) != 1 {
			b.Fatal(len(s), err)
		}
	}
}
