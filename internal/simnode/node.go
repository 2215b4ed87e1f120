// Package simnode simulates an Apache Cassandra node on the local filesystem:
// a memtable that a writer appends rows to, data directories holding
// SSTable-like file sets, and nodetool's snapshot semantics (flush, then
// hard-link every live SSTable into snapshots/<tag>/). It backs the embedded
// demo, the test suite and the SSH integration tier.
//
// Every operation that touches the memtable, the SSTables or the snapshots
// holds an exclusive flock on root/.lock, so a writer in one process and
// "nodetool snapshot" in another never lose or duplicate a row.
package simnode

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// Version is the Cassandra release the simulated node reports.
const Version = "4.1.5"

// SSTable components written for every generation, in TOC order. TOC.txt is
// written last: a generation without it is incomplete.
var components = []string{"Data.db", "Index.db", "Summary.db", "Statistics.db", "Digest.crc32", "TOC.txt"}

const (
	metaFile      = "node.json"
	lockFile      = ".lock"
	commitlogDir  = "commitlog"
	snapshotsDir  = "snapshots"
	manifestFile  = "manifest.json"
	schemaFile    = "schema.cql"
	defaultTokens = 16
)

// Options describe a node to create. Zero values take the defaults in comments.
type Options struct {
	// Name is the node's name (default: the base name of root).
	Name string
	// Address is the node's listen address (default 127.0.0.1).
	Address string
	// DataDirs are the data directories, each a volume to the fs driver
	// (default root/data). They may lie outside root.
	DataDirs []string
	// Keyspaces maps keyspace to tables (default {"app": ["events", "users"]}).
	Keyspaces map[string][]string
	// DC is the datacenter (default dc1).
	DC string
	// Rack is the rack (default rack1).
	Rack string
	// NumTokens is the number of vnodes (default 16, as in Cassandra 4.1).
	NumTokens int
	// ReplicationFactor of every keyspace, for the ownership nodetool shows
	// once nodes are joined into a cluster (default 3).
	ReplicationFactor int
}

// Table is one table of a node and the directory that holds its SSTables.
type Table struct {
	Keyspace string `json:"keyspace"`
	Name     string `json:"table"`
	// ID is the table's 32-hex-digit ID, the suffix of its directory name.
	ID string `json:"id"`
	// Dir is <data dir>/<keyspace>/<table>-<id>.
	Dir string `json:"dir"`
	// DataDir is the data directory (volume) holding Dir.
	DataDir string `json:"data_dir"`
}

// Info is what node.json records about a node.
type Info struct {
	Name        string    `json:"name"`
	HostID      string    `json:"host_id"`
	Address     string    `json:"address"`
	DC          string    `json:"dc"`
	Rack        string    `json:"rack"`
	Tokens      []string  `json:"tokens"`
	DataDirs    []string  `json:"data_dirs"`
	Tables      []Table   `json:"tables"`
	Version     string    `json:"cassandra_version"`
	SchemaID    string    `json:"schema_version"`
	CreatedAt   time.Time `json:"created_at"`
	ClusterName string    `json:"cluster_name"`
	// ReplicationFactor of every keyspace (SimpleStrategy).
	ReplicationFactor int `json:"replication_factor"`
}

// Node is a handle on a simulated node. Handles are cheap and safe for
// concurrent use; any number of them, in any number of processes, may be open
// on the same root.
type Node struct {
	root string
	info Info
}

// Create makes a new node at root. It fails if root already holds one.
func Create(root string, opts Options) (*Node, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, metaFile)); err == nil {
		return nil, fmt.Errorf("simnode: a node already exists at %s", root)
	}
	if opts.Name == "" {
		opts.Name = filepath.Base(root)
	}
	if err := messages.ValidateTarget("node", opts.Name); err != nil {
		return nil, fmt.Errorf("simnode: %w", err)
	}
	if opts.Address == "" {
		opts.Address = "127.0.0.1"
	}
	if opts.DC == "" {
		opts.DC = "dc1"
	}
	if opts.Rack == "" {
		opts.Rack = "rack1"
	}
	if opts.NumTokens <= 0 {
		opts.NumTokens = defaultTokens
	}
	if opts.ReplicationFactor <= 0 {
		opts.ReplicationFactor = 3
	}
	if len(opts.DataDirs) == 0 {
		opts.DataDirs = []string{filepath.Join(root, "data")}
	}
	if opts.Keyspaces == nil {
		opts.Keyspaces = map[string][]string{"app": {"events", "users"}}
	}
	info := Info{
		Name:        opts.Name,
		HostID:      uuid(),
		Address:     opts.Address,
		DC:          opts.DC,
		Rack:        opts.Rack,
		Tokens:      tokens(opts.NumTokens),
		Version:     Version,
		SchemaID:    uuid(),
		CreatedAt:   time.Now().UTC().Truncate(time.Millisecond),
		ClusterName: "Test Cluster",

		ReplicationFactor: opts.ReplicationFactor,
	}
	for _, d := range opts.DataDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, err
		}
		info.DataDirs = append(info.DataDirs, abs)
	}
	var names []string
	for ks, tables := range opts.Keyspaces {
		if err := messages.ValidateKeyspace(ks); err != nil {
			return nil, fmt.Errorf("simnode: %w", err)
		}
		for _, t := range tables {
			if err := messages.ValidateKeyspace(t); err != nil {
				return nil, fmt.Errorf("simnode: table: %w", err)
			}
			names = append(names, ks+"."+t)
		}
	}
	sort.Strings(names)
	for i, n := range names {
		if i > 0 && names[i-1] == n {
			return nil, fmt.Errorf("simnode: table %s listed twice", n)
		}
	}
	// Round-robin over the sorted names: deterministic, and every data dir
	// gets a table whenever there are at least as many tables as dirs.
	for i, n := range names {
		ks, t, _ := strings.Cut(n, ".")
		id := randomHex(16)
		dd := info.DataDirs[i%len(info.DataDirs)]
		info.Tables = append(info.Tables, Table{
			Keyspace: ks, Name: t, ID: id, DataDir: dd,
			Dir: filepath.Join(dd, ks, t+"-"+id),
		})
	}
	if err := os.MkdirAll(filepath.Join(root, commitlogDir), 0o755); err != nil {
		return nil, err
	}
	for _, d := range info.DataDirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, t := range info.Tables {
		if err := os.MkdirAll(t.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(root, metaFile), append(data, '\n')); err != nil {
		return nil, err
	}
	return &Node{root: root, info: info}, nil
}

// Open opens the node at root.
func Open(root string) (*Node, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, metaFile))
	if err != nil {
		return nil, fmt.Errorf("simnode: open %s: %w", root, err)
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("simnode: %s: %w", filepath.Join(root, metaFile), err)
	}
	return &Node{root: root, info: info}, nil
}

// Root returns the node's root directory.
func (n *Node) Root() string { return n.root }

// Name returns the node's name.
func (n *Node) Name() string { return n.info.Name }

// Info returns what node.json records.
func (n *Node) Info() Info {
	i := n.info
	i.Tokens = append([]string(nil), n.info.Tokens...)
	i.DataDirs = append([]string(nil), n.info.DataDirs...)
	i.Tables = append([]Table(nil), n.info.Tables...)
	return i
}

// DataDirs returns the node's data directories.
func (n *Node) DataDirs() []string { return append([]string(nil), n.info.DataDirs...) }

// Tables returns the node's tables, sorted by keyspace and name.
func (n *Node) Tables() []Table { return append([]Table(nil), n.info.Tables...) }

// Keyspaces returns the node's keyspaces, sorted.
func (n *Node) Keyspaces() []string {
	var out []string
	for _, t := range n.info.Tables {
		if len(out) == 0 || out[len(out)-1] != t.Keyspace {
			out = append(out, t.Keyspace)
		}
	}
	return out
}

// KeyspaceNotFoundError is a keyspace the node does not have.
type KeyspaceNotFoundError struct{ Keyspace string }

func (e *KeyspaceNotFoundError) Error() string {
	return "Keyspace " + e.Keyspace + " does not exist"
}

// SnapshotExistsError is returned by Snapshot for a tag already present.
type SnapshotExistsError struct{ Tag string }

func (e *SnapshotExistsError) Error() string { return "Snapshot " + e.Tag + " already exists." }

// tables selects the tables of keyspaces (all when empty), validating names.
func (n *Node) tables(keyspaces []string) ([]Table, error) {
	if len(keyspaces) == 0 {
		return n.Tables(), nil
	}
	want := map[string]bool{}
	for _, ks := range keyspaces {
		if err := messages.ValidateKeyspace(ks); err != nil {
			return nil, err
		}
		found := false
		for _, t := range n.info.Tables {
			if t.Keyspace == ks {
				found = true
				break
			}
		}
		if !found {
			return nil, &KeyspaceNotFoundError{ks}
		}
		want[ks] = true
	}
	var out []Table
	for _, t := range n.info.Tables {
		if want[t.Keyspace] {
			out = append(out, t)
		}
	}
	return out, nil
}

func (n *Node) table(keyspace, table string) (Table, error) {
	for _, t := range n.info.Tables {
		if t.Keyspace == keyspace && t.Name == table {
			return t, nil
		}
	}
	if _, err := n.tables([]string{keyspace}); err != nil {
		return Table{}, err
	}
	return Table{}, &TableNotFoundError{keyspace, table}
}

// TableNotFoundError is a table the node does not have.
type TableNotFoundError struct{ Keyspace, Table string }

func (e *TableNotFoundError) Error() string {
	return "Unknown table " + e.Table + " in keyspace " + e.Keyspace
}

// lock takes the node's exclusive flock. With a non-nil done it polls, so a
// caller whose context ends stops waiting; with nil it blocks.
func (n *Node) lock(done <-chan struct{}) (func(), error) {
	f, err := os.OpenFile(filepath.Join(n.root, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("simnode: lock: %w", err)
	}
	unlock := func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}
	if done == nil {
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
			if err != syscall.EINTR {
				break
			}
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("simnode: lock: %w", err)
		}
		return unlock, nil
	}
	wait := 200 * time.Microsecond
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return unlock, nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			_ = f.Close()
			return nil, fmt.Errorf("simnode: lock: %w", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-done:
			t.Stop()
			_ = f.Close()
			return nil, errCancelled
		case <-t.C:
		}
		if wait < 10*time.Millisecond {
			wait *= 2
		}
	}
}

var errCancelled = errors.New("simnode: cancelled")

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

// CompactionThreshold is how many live generations a table may hold before a
// flush compacts them into one, as size-tiered compaction would. Snapshots
// keep the replaced files through their hard links, which is what gives a
// snapshot a non-zero true size.
const CompactionThreshold = 8

// compact merges the live generations of dir into a new one once there are
// CompactionThreshold of them. The new generation records its ancestors, so
// a process that dies before removing them leaves a state recoverTable
// finishes: no row is lost or counted twice.
func compact(dir string) error {
	gens, err := liveGenerations(dir)
	if err != nil || len(gens) < CompactionThreshold {
		return err
	}
	var data []byte
	for _, g := range gens {
		d, err := os.ReadFile(componentPath(dir, g, "Data.db"))
		if err != nil {
			return err
		}
		data = append(data, d...)
	}
	next := gens[len(gens)-1] + 1
	if err := writeSSTableData(dir, next, data, gens); err != nil {
		return err
	}
	for _, g := range gens {
		if err := removeGeneration(dir, g); err != nil {
			return err
		}
	}
	return nil
}

// liveGenerations lists the complete generations of dir, ascending.
func liveGenerations(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var gens []int
	for _, e := range ents {
		if g, c, ok := parseComponent(e.Name()); ok && c == "TOC.txt" {
			gens = append(gens, g)
		}
	}
	sort.Ints(gens)
	return gens, nil
}

// removeGeneration deletes a generation, TOC.txt first so that it stops
// being live before any component goes.
func removeGeneration(dir string, gen int) error {
	for i := len(components) - 1; i >= 0; i-- {
		if err := os.Remove(componentPath(dir, gen, components[i])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// ancestors reads the generations a compacted generation replaced.
func ancestors(dir string, gen int) []int {
	data, err := os.ReadFile(componentPath(dir, gen, "Statistics.db"))
	if err != nil {
		return nil
	}
	var out []int
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(line, "ancestors=")
		if !ok {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if g, err := strconv.Atoi(f); err == nil {
				out = append(out, g)
			}
		}
	}
	return out
}

func (n *Node) recoverTable(t Table) error {
	// A compaction that died before removing what it replaced.
	gens, err := liveGenerations(t.Dir)
	if err != nil {
		return err
	}
	live := map[int]bool{}
	for _, g := range gens {
		live[g] = true
	}
	for _, g := range gens {
		for _, a := range ancestors(t.Dir, g) {
			if live[a] {
				if err := removeGeneration(t.Dir, a); err != nil {
					return err
				}
				live[a] = false
			}
		}
	}
	segs, err := filepath.Glob(filepath.Join(n.root, commitlogDir, t.Keyspace+"."+t.Name+".flushing-*"))
	if err != nil {
		return err
	}
	for _, seg := range segs {
		gen, err := strconv.Atoi(seg[strings.LastIndexByte(seg, '-')+1:])
		if err != nil {
			continue
		}
		if _, err := os.Stat(componentPath(t.Dir, gen, "TOC.txt")); err != nil {
			if err := writeSSTable(t.Dir, gen, seg); err != nil {
				return err
			}
		}
		if err := os.Remove(seg); err != nil {
			return err
		}
	}
	return nil
}

func componentPath(dir string, gen int, comp string) string {
	return filepath.Join(dir, fmt.Sprintf("nb-%d-big-%s", gen, comp))
}

// parseComponent splits "nb-<gen>-big-<component>".
func parseComponent(name string) (gen int, comp string, ok bool) {
	rest, found := strings.CutPrefix(name, "nb-")
	if !found {
		return 0, "", false
	}
	g, comp, found := strings.Cut(rest, "-big-")
	if !found {
		return 0, "", false
	}
	gen, err := strconv.Atoi(g)
	if err != nil || gen <= 0 {
		return 0, "", false
	}
	return gen, comp, true
}

func nextGeneration(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	max := 0
	for _, e := range ents {
		if g, _, ok := parseComponent(e.Name()); ok && g > max {
			max = g
		}
	}
	return max + 1, nil
}

// writeSSTable writes generation gen from the rows in segment seg.
func writeSSTable(dir string, gen int, seg string) error {
	data, err := os.ReadFile(seg)
	if err != nil {
		return err
	}
	// A torn last line (a writer killed mid-append) is not a row.
	if i := bytes.LastIndexByte(data, '\n'); i < len(data)-1 {
		data = data[:i+1]
	}
	return writeSSTableData(dir, gen, data, nil)
}

// writeSSTableData writes generation gen holding data, newline-separated rows.
func writeSSTableData(dir string, gen int, data []byte, ancestors []int) error {
	var index bytes.Buffer
	rows := 0
	for off := 0; off < len(data); {
		_ = binary.Write(&index, binary.BigEndian, uint64(off))
		rows++
		off += bytes.IndexByte(data[off:], '\n') + 1
	}
	var summary bytes.Buffer
	_ = binary.Write(&summary, binary.BigEndian, uint32(rows))
	_ = binary.Write(&summary, binary.BigEndian, uint64(len(data)))
	stats := fmt.Sprintf("format=nb\nrows=%d\nbytes=%d\nflushed_at=%d\n", rows, len(data), time.Now().UnixNano())
	if len(ancestors) > 0 {
		as := make([]string, len(ancestors))
		for i, a := range ancestors {
			as[i] = strconv.Itoa(a)
		}
		stats += "ancestors=" + strings.Join(as, ",") + "\n"
	}
	digest := strconv.FormatUint(uint64(crc32.ChecksumIEEE(data)), 10)
	contents := map[string][]byte{
		"Data.db":       data,
		"Index.db":      index.Bytes(),
		"Summary.db":    summary.Bytes(),
		"Statistics.db": []byte(stats),
		"Digest.crc32":  []byte(digest),
		"TOC.txt":       []byte(strings.Join(components, "\n") + "\n"),
	}
	for _, c := range components {
		if err := writeFileAtomic(componentPath(dir, gen, c), contents[c]); err != nil {
			return err
		}
	}
	return nil
}

// liveFiles lists the complete live SSTable files of a table directory.
func liveFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	complete := map[int]bool{}
	for _, e := range ents {
		if g, c, ok := parseComponent(e.Name()); ok && c == "TOC.txt" {
			complete[g] = true
		}
	}
	var out []string
	for _, e := range ents {
		if g, _, ok := parseComponent(e.Name()); ok && complete[g] && e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

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
	m := manifest{Files: files, CreatedAt: created}
	if m.Files == nil {
		m.Files = []string{}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, manifestFile), data, 0o644); err != nil {
		return err
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
	for _, t := range n.info.Tables {
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

func sleep(done <-chan struct{}, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-done:
		return errCancelled
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = io.ReadFull(rand.Reader, b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return dashed(hex.EncodeToString(b))
}

func dashed(h string) string {
	if len(h) != 32 {
		return h
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// tokens draws n distinct Murmur3 tokens, sorted.
func tokens(n int) []string {
	seen := map[int64]bool{}
	var ts []int64
	span := new(big.Int).Lsh(big.NewInt(1), 64)
	for len(ts) < n {
		v, _ := rand.Int(rand.Reader, span)
		t := new(big.Int).Sub(v, new(big.Int).Lsh(big.NewInt(1), 63)).Int64()
		if t == -1<<63 || seen[t] {
			continue
		}
		seen[t] = true
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	out := make([]string, n)
	for i, t := range ts {
		out[i] = strconv.FormatInt(t, 10)
	}
	return out
}
