package simnode

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/quiesce/quiesce/messages"
)

// LiveDataSize returns the bytes of live SSTables, snapshots excluded: what
// nodetool reports as the node's Load.
func (n *Node) LiveDataSize() (int64, error) {
	var total int64
	for _, t := range n.info.Tables {
		files, err := liveFiles(t.Dir)
		if err != nil {
			return 0, err
		}
		for _, f := range files {
			fi, err := os.Stat(filepath.Join(t.Dir, f))
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return 0, err
			}
			total += fi.Size()
		}
	}
	return total, nil
}

// AllRows returns every row the node holds, flushed or still in a memtable,
// in no particular order. Snapshots are not included.
func (n *Node) AllRows() ([]string, error) {
	unlock, err := n.lock(nil)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var rows []string
	for _, t := range n.info.Tables {
		if err := n.recoverTable(t); err != nil {
			return nil, err
		}
		r, err := Rows(t.Dir)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
		data, err := os.ReadFile(n.memtablePath(t))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		rows = append(rows, splitRows(data)...)
	}
	return rows, nil
}

// Rows returns the rows in the complete SSTables under dir, recursively,
// leaving out any "snapshots" directory below dir. Pointed at a table
// directory it gives the live rows; pointed at a snapshots/<tag> directory,
// that snapshot's rows.
func Rows(dir string) ([]string, error) {
	var rows []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && d.Name() == snapshotsDir {
				return filepath.SkipDir
			}
			return nil
		}
		gen, comp, ok := parseComponent(d.Name())
		if !ok || comp != "Data.db" {
			return nil
		}
		if _, err := os.Stat(componentPath(filepath.Dir(p), gen, "TOC.txt")); err != nil {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rows = append(rows, splitRows(data)...)
		return nil
	})
	return rows, err
}

// CountRows returns len(Rows(dir)).
func CountRows(dir string) (int, error) {
	rows, err := Rows(dir)
	return len(rows), err
}

// SnapshotRows returns the rows of snapshot tag in a data directory, or in a
// copy of one (a restored volume): every <keyspace>/<table>-<id>/snapshots/<tag>/.
func SnapshotRows(dataDir, tag string) ([]string, error) {
	if err := messages.ValidateTag(tag); err != nil {
		return nil, err
	}
	dirs, err := filepath.Glob(filepath.Join(dataDir, "*", "*", snapshotsDir, tag))
	if err != nil {
		return nil, err
	}
	var rows []string
	for _, d := range dirs {
		r, err := Rows(d)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

func splitRows(data []byte) []string {
	var rows []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 16<<20)
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			rows = append(rows, sc.Text())
		}
	}
	return rows
}
