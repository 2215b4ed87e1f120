package simnode

import (
	"fmt"
	"path/filepath"
	"testing"
)

func BenchmarkWrite(b *testing.B) {
	n, err := Create(filepath.Join(b.TempDir(), "n"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	row := []byte("app.events|0123456789")
	b.ResetTimer()
	for b.Loop() {
		if err := n.Write("app", "events", row); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshotClear measures one nodetool snapshot (flush of 100 rows
// per table, hard links) and its clearsnapshot on a node with 6 tables.
func BenchmarkSnapshotClear(b *testing.B) {
	n, err := Create(filepath.Join(b.TempDir(), "n"), Options{
		Keyspaces: map[string][]string{"ks1": {"a", "b", "c"}, "ks2": {"d", "e", "f"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	rows := make([][]byte, 100)
	for i := range rows {
		rows[i] = fmt.Appendf(nil, "row-%d", i)
	}
	i := 0
	for b.Loop() {
		b.StopTimer()
		for _, t := range n.Tables() {
			if err := n.Write(t.Keyspace, t.Name, rows...); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		tag := fmt.Sprintf("b%d", i)
		i++
		if err := n.Snapshot(tag, nil); err != nil {
			b.Fatal(err)
		}
		if err := n.ClearSnapshot(tag); err != nil {
			b.Fatal(err)
		}
	}
}
