package simnode

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// Version is the Cassandra release the simulated node reports.
const Version = "5.0.6"

// systemTables are the system tables every node has, a few of each system
// keyspace, with the IDs Cassandra 5.0.6 gives them: "nodetool snapshot"
// without a keyspace snapshots them too.
var systemTables = []struct{ keyspace, table, id string }{
	{"system", "local", "7ad54392bcdd35a684174e047860b377"},
	{"system", "peers_v2", "c4325fbb8e5e3bafbd070f9250ed818e"},
	{"system_auth", "roles", "5bc52802de2535edaeab188eecebb090"},
	{"system_distributed", "repair_history", "759fffad624b318180eefa9a52d1f627"},
	{"system_schema", "columns", "24101c25a2ae3af787c1b40ee1aca33f"},
	{"system_schema", "keyspaces", "abac5682dea631c5b535b3d6cffd0fb6"},
	{"system_schema", "tables", "afddfb9dbc1e30688056eed6c302ba09"},
	{"system_traces", "sessions", "c5e99f1686773914b17e960613512345"},
}

// systemKeyspace reports whether ks is one of Cassandra's own keyspaces.
func systemKeyspace(ks string) bool { return strings.HasPrefix(ks, "system") }

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
	// NumTokens is the number of vnodes (default 16, as in Cassandra 5.0).
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
	Name     string   `json:"name"`
	HostID   string   `json:"host_id"`
	Address  string   `json:"address"`
	DC       string   `json:"dc"`
	Rack     string   `json:"rack"`
	Tokens   []string `json:"tokens"`
	DataDirs []string `json:"data_dirs"`
	Tables   []Table  `json:"tables"`
	// SystemTables are the system keyspaces' tables: snapshotted with the
	// rest, never written to by a Writer.
	SystemTables []Table   `json:"system_tables,omitempty"`
	Version      string    `json:"cassandra_version"`
	SchemaID     string    `json:"schema_version"`
	CreatedAt    time.Time `json:"created_at"`
	ClusterName  string    `json:"cluster_name"`
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
	for _, st := range systemTables {
		dd := info.DataDirs[0]
		info.SystemTables = append(info.SystemTables, Table{
			Keyspace: st.keyspace, Name: st.table, ID: st.id, DataDir: dd,
			Dir: filepath.Join(dd, st.keyspace, st.table+"-"+st.id),
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
	for _, t := range info.SystemTables {
		// One SSTable each, with no rows of the writer's: what a node holds
		// in its system tables is not application data.
		if err := os.MkdirAll(t.Dir, 0o755); err != nil {
			return nil, err
		}
		if err := writeSSTableData(t.Dir, 1, nil, nil); err != nil {
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
	i.SystemTables = append([]Table(nil), n.info.SystemTables...)
	return i
}

// DataDirs returns the node's data directories.
func (n *Node) DataDirs() []string { return append([]string(nil), n.info.DataDirs...) }

// Tables returns the node's tables, sorted by keyspace and name; the system
// keyspaces' are not among them.
func (n *Node) Tables() []Table { return append([]Table(nil), n.info.Tables...) }

// allTables returns the node's tables and its system tables.
func (n *Node) allTables() []Table {
	return append(append([]Table(nil), n.info.Tables...), n.info.SystemTables...)
}

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

// tables selects the tables of keyspaces (all, the system ones included,
// when empty), validating names.
func (n *Node) tables(keyspaces []string) ([]Table, error) {
	all := n.allTables()
	if len(keyspaces) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, ks := range keyspaces {
		if err := messages.ValidateKeyspace(ks); err != nil {
			return nil, err
		}
		found := false
		for _, t := range all {
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
	for _, t := range all {
		if want[t.Keyspace] {
			out = append(out, t)
		}
	}
	return out, nil
}

func (n *Node) table(keyspace, table string) (Table, error) {
	for _, t := range n.allTables() {
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
