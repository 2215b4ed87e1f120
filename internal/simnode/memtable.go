package simnode

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Write appends rows to the memtable of keyspace.table. A row is any
// non-empty byte string without a newline.
func (n *Node) Write(keyspace, table string, rows ...[]byte) error {
	t, err := n.table(keyspace, table)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, r := range rows {
		if len(r) == 0 || bytes.IndexByte(r, '\n') >= 0 {
			return fmt.Errorf("simnode: row %q: rows must be non-empty and hold no newline", r)
		}
		buf.Write(r)
		buf.WriteByte('\n')
	}
	if buf.Len() == 0 {
		return nil
	}
	unlock, err := n.lock(nil)
	if err != nil {
		return err
	}
	defer unlock()
	f, err := os.OpenFile(n.memtablePath(t), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (n *Node) memtablePath(t Table) string {
	return filepath.Join(n.root, commitlogDir, t.Keyspace+"."+t.Name+".log")
}

// Flush writes the memtables of keyspaces (all when none given) to new SSTable
// generations and empties them.
func (n *Node) Flush(keyspaces ...string) error {
	tables, err := n.tables(keyspaces)
	if err != nil {
		return err
	}
	unlock, err := n.lock(nil)
	if err != nil {
		return err
	}
	defer unlock()
	return n.flushLocked(tables)
}

// flushLocked flushes tables; the caller holds the lock. The memtable is first
// renamed to a segment named after the generation it becomes, so a process
// that dies mid-flush leaves a state the next flush completes without losing
// or repeating a row.
func (n *Node) flushLocked(tables []Table) error {
	for _, t := range tables {
		if err := n.recoverTable(t); err != nil {
			return err
		}
		mt := n.memtablePath(t)
		st, err := os.Stat(mt)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && st.Size() == 0) {
			continue
		}
		if err != nil {
			return err
		}
		gen, err := nextGeneration(t.Dir)
		if err != nil {
			return err
		}
		seg := fmt.Sprintf("%s.flushing-%d", strings.TrimSuffix(mt, ".log"), gen)
		if err := os.Rename(mt, seg); err != nil {
			return err
		}
		if err := writeSSTable(t.Dir, gen, seg); err != nil {
			return fmt.Errorf("simnode: flush %s.%s: %w", t.Keyspace, t.Name, err)
		}
		if err := os.Remove(seg); err != nil {
			return err
		}
		if err := compact(t.Dir); err != nil {
			return fmt.Errorf("simnode: compact %s.%s: %w", t.Keyspace, t.Name, err)
		}
	}
	return nil
}
