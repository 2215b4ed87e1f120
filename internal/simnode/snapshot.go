package simnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// manifest is Cassandra's snapshots/<tag>/manifest.json.
type manifest struct {
	Files     []string   `json:"files"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	Ephemeral bool       `json:"ephemeral"`
}

// Snapshot flushes the memtables of keyspaces (all when none given) and
// hard-links every live SSTable file into <table dir>/snapshots/<tag>/, like
// "nodetool snapshot -t tag". A tag already present on any selected table is a
// *SnapshotExistsError. Faults set with SetFaults apply.
func (n *Node) Snapshot(tag string, keyspaces []string) error {
	return n.snapshot(nil, tag, keyspaces, false)
}

func (n *Node) snapshot(done <-chan struct{}, tag string, keyspaces []string, skipFlush bool) error {
	if err := messages.ValidateTag(tag); err != nil {
		return err
	}
	tables, err := n.tables(keyspaces)
	if err != nil {
		return err
	}
	f, err := readFaults(n.root)
	if err != nil {
		return err
	}
	if err := sleep(done, time.Duration(f.SnapshotDelay)); err != nil {
		return err
	}
	unlock, err := n.lock(done)
	if err != nil {
		return err
	}
	defer unlock()
	calls, err := n.countCall(opSnapshot)
	if err != nil {
		return err
	}
	if f.SnapshotError != "" && (f.SnapshotFailTimes == 0 || calls <= f.SnapshotFailTimes) {
		return &FaultError{Op: opSnapshot, Msg: f.SnapshotError}
	}
	for _, t := range tables {
		if _, err := os.Lstat(filepath.Join(t.Dir, snapshotsDir, tag)); err == nil {
			return &SnapshotExistsError{tag}
		}
	}
	if !skipFlush {
		if err := n.flushLocked(tables); err != nil {
			return err
		}
	} else {
		for _, t := range tables {
			if err := n.recoverTable(t); err != nil {
				return err
			}
		}
	}
	created := time.Now().UTC().Truncate(time.Millisecond)
	var made []string
	for _, t := range tables {
		dir := filepath.Join(t.Dir, snapshotsDir, tag)
		if err := n.linkTable(t, dir, created); err != nil {
			made = append(made, dir)
			for _, d := range made {
				_ = os.RemoveAll(d)
			}
			return fmt.Errorf("simnode: snapshot %s of %s.%s: %w", tag, t.Keyspace, t.Name, err)
		}
		made = append(made, dir)
	}
	return n.appendEvent("snapshot", tag)
}

func (n *Node) linkTable(t Table, dir string, created time.Time) error {
	files, err := liveFiles(t.Dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range files {
		if err := os.Link(filepath.Join(t.Dir, name), filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	// As Cassandra 5.0.6 writes it: the Data.db of each SSTable, indented
	// JSON without a trailing newline.
	m := manifest{Files: []string{}, CreatedAt: created}
	for _, f := range files {
		if _, comp, ok := parseComponent(f); ok && comp == "Data.db" {
			m.Files = append(m.Files, f)
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, manifestFile), data, 0o644); err != nil {
		return err
	}
	if systemKeyspace(t.Keyspace) {
		return nil // schema.cql only for user tables
	}
	schema := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s (\n    id text PRIMARY KEY,\n    value blob\n) WITH ID = %s;\n",
		t.Keyspace, t.Name, dashed(t.ID))
	return os.WriteFile(filepath.Join(dir, schemaFile), []byte(schema), 0o644)
}

// ClearSnapshot removes the snapshot tag from every table, like "nodetool
// clearsnapshot -t tag". A missing tag is success; an empty tag removes every
// snapshot. Faults set with SetFaults apply.
func (n *Node) ClearSnapshot(tag string) error {
	return n.clearSnapshot(nil, tag, nil)
}

func (n *Node) clearSnapshot(done <-chan struct{}, tag string, keyspaces []string) error {
	if tag != "" {
		if err := messages.ValidateTag(tag); err != nil {
			return err
		}
	}
	tables, err := n.tables(keyspaces)
	if err != nil {
		return err
	}
	f, err := readFaults(n.root)
	if err != nil {
		return err
	}
	if err := sleep(done, time.Duration(f.ClearDelay)); err != nil {
		return err
	}
	unlock, err := n.lock(done)
	if err != nil {
		return err
	}
	defer unlock()
	calls, err := n.countCall(opClear)
	if err != nil {
		return err
	}
	if f.ClearError != "" && (f.ClearFailTimes == 0 || calls <= f.ClearFailTimes) {
		return &FaultError{Op: opClear, Msg: f.ClearError}
	}
	cleared := map[string]bool{}
	if tag != "" {
		cleared[tag] = true
	}
	for _, t := range tables {
		base := filepath.Join(t.Dir, snapshotsDir)
		if tag != "" {
			if err := os.RemoveAll(filepath.Join(base, tag)); err != nil {
				return err
			}
			continue
		}
		ents, err := os.ReadDir(base)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(base, e.Name())); err != nil {
				return err
			}
			cleared[e.Name()] = true
		}
	}
	tags := make([]string, 0, len(cleared))
	for t := range cleared {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	for _, t := range tags {
		if err := n.appendEvent("clear", t); err != nil {
			return err
		}
	}
	return nil
}

// Entry is one table's snapshot, as "nodetool listsnapshots" shows it.
type Entry struct {
	Tag      string
	Keyspace string
	Table    string
	// Dir is <table dir>/snapshots/<tag>.
	Dir string
	// TrueSize counts the SSTable bytes only the snapshot holds (files no
	// longer live); SizeOnDisk counts every file of the snapshot.
	TrueSize   int64
	SizeOnDisk int64
	Created    time.Time
}

// ListSnapshots returns every table snapshot, sorted by tag, keyspace, table.
func (n *Node) ListSnapshots() ([]Entry, error) {
	var out []Entry
	for _, t := range n.allTables() {
		base := filepath.Join(t.Dir, snapshotsDir)
		ents, err := os.ReadDir(base)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			en, err := snapshotEntry(t, filepath.Join(base, e.Name()))
			if err != nil {
				return nil, err
			}
			en.Tag = e.Name()
			out = append(out, en)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Tag != b.Tag {
			return a.Tag < b.Tag
		}
		if a.Keyspace != b.Keyspace {
			return a.Keyspace < b.Keyspace
		}
		return a.Table < b.Table
	})
	return out, nil
}

func snapshotEntry(t Table, dir string) (Entry, error) {
	en := Entry{Keyspace: t.Keyspace, Table: t.Name, Dir: dir}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return en, err
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return en, err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		en.SizeOnDisk += fi.Size()
		// As in Cassandra, the true size counts SSTable components only,
		// and only those compaction has removed from the live set.
		if _, _, ok := parseComponent(e.Name()); !ok {
			continue
		}
		live, err := os.Stat(filepath.Join(t.Dir, e.Name()))
		if err != nil || !os.SameFile(fi, live) {
			en.TrueSize += fi.Size()
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, manifestFile)); err == nil {
		var m manifest
		if json.Unmarshal(data, &m) == nil {
			en.Created = m.CreatedAt
		}
	}
	if en.Created.IsZero() {
		if fi, err := os.Stat(dir); err == nil {
			en.Created = fi.ModTime().UTC()
		}
	}
	return en, nil
}

// Tags returns the distinct snapshot tags on the node, sorted.
func (n *Node) Tags() ([]string, error) {
	entries, err := n.ListSnapshots()
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, e := range entries {
		if len(tags) == 0 || tags[len(tags)-1] != e.Tag {
			tags = append(tags, e.Tag)
		}
	}
	return tags, nil
}

// SnapshotExistsError is returned by Snapshot for a tag already present.
type SnapshotExistsError struct{ Tag string }

func (e *SnapshotExistsError) Error() string { return "Snapshot " + e.Tag + " already exists." }
