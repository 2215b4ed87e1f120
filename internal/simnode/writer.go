package simnode

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Writer keeps writing rows to a node's tables, round-robin, until its
// context ends: the application traffic of the demo. Each row is
// "<prefix>|<keyspace>.<table>|<seq>", unique per writer.
type Writer struct {
	Node *Node
	// Tables to write to (default every table of the node).
	Tables []Table
	// Interval between writes (default 10ms). Each write appends Batch rows.
	Interval time.Duration
	// Batch is the number of rows per write (default 1).
	Batch int
	// Prefix makes rows of several writers distinct (default the node name).
	Prefix string
	// Record keeps every acknowledged row with its time, for Acked.
	Record bool

	written atomic.Int64
	mu      sync.Mutex
	acked   []Written
}

// Written is one row a Writer wrote, and when the node acknowledged it.
type Written struct {
	Row   string
	Acked time.Time
}

// Run writes until ctx ends, then returns nil; it returns the first write error.
func (w *Writer) Run(ctx context.Context) error {
	tables := w.Tables
	if len(tables) == 0 {
		tables = w.Node.Tables()
	}
	if len(tables) == 0 {
		return fmt.Errorf("simnode: writer: node %s has no tables", w.Node.Name())
	}
	interval := w.Interval
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	batch := w.Batch
	if batch <= 0 {
		batch = 1
	}
	prefix := w.Prefix
	if prefix == "" {
		prefix = w.Node.Name()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var seq int64
	for i := 0; ; i++ {
		t := tables[i%len(tables)]
		rows := make([][]byte, batch)
		for j := range rows {
			seq++
			rows[j] = fmt.Appendf(nil, "%s|%s.%s|%d", prefix, t.Keyspace, t.Name, seq)
		}
		if err := w.Node.Write(t.Keyspace, t.Name, rows...); err != nil {
			return fmt.Errorf("simnode: writer: %w", err)
		}
		w.written.Add(int64(batch))
		if w.Record {
			now := time.Now()
			w.mu.Lock()
			for _, r := range rows {
				w.acked = append(w.acked, Written{Row: string(r), Acked: now})
			}
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Count returns how many rows the writer has written.
func (w *Writer) Count() int64 { return w.written.Load() }

// Acked returns the rows written so far (Record must be set), oldest first.
func (w *Writer) Acked() []Written {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Written(nil), w.acked...)
}

// AckedBefore returns the rows acknowledged before t (Record must be set):
// rows a snapshot whose event is at or after t must hold.
func (w *Writer) AckedBefore(t time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, a := range w.acked {
		if a.Acked.Before(t) {
			out = append(out, a.Row)
		}
	}
	return out
}
