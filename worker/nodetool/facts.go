package nodetool

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

var _ worker.FactGatherer = (*Client)(nil)

// DataDirs finds the node's data directories with "nodetool datapaths".
func (c *Client) DataDirs(ctx context.Context, node messages.Node) ([]string, error) {
	out, err := c.run(ctx, node, "datapaths")
	if err != nil {
		return nil, classify(err)
	}
	tables, err := ParseDataPaths(out.Stdout)
	if err != nil {
		return nil, errclass.Permanent(err)
	}
	dirs := DataDirs(tables)
	for _, d := range dirs {
		if err := messages.ValidateDir("data directory", d); err != nil {
			return nil, errclass.Permanent(fmt.Errorf("datapaths: %w", err))
		}
	}
	if len(dirs) == 0 {
		return nil, errclass.Permanent(fmt.Errorf("datapaths: no data directory in its output"))
	}
	return dirs, nil
}

// SnapshotFilesArgs is the find(1) command that lists snapshots/<tag> under
// dirs in one run: every file's size and path, and the contents of each
// manifest.json and schema.cql, framed by NUL bytes (which neither paths
// nor those files hold).
func SnapshotFilesArgs(dirs []string, tag string) ([]string, error) {
	if err := messages.ValidateTag(tag); err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no data directory to list")
	}
	argv := []string{"find"}
	for _, d := range dirs {
		if err := messages.ValidateDir("data directory", d); err != nil {
			return nil, err
		}
		argv = append(argv, d)
	}
	return append(argv, "-path", "*/snapshots/"+tag+"/*", "-type", "f",
		"(", "(", "-name", "manifest.json", "-o", "-name", "schema.cql", ")",
		"-printf", `\0C %p\0`, "-exec", "cat", "{}", ";",
		"-o", "-printf", `\0F %s %p\0`, ")"), nil
}

// SnapshotTables lists what snapshots/<tag> holds in every table directory
// under dirs.
func (c *Client) SnapshotTables(ctx context.Context, node messages.Node, dirs []string, tag string) ([]messages.TableSnapshot, error) {
	argv, err := SnapshotFilesArgs(dirs, tag)
	if err != nil {
		return nil, errclass.Permanent(err)
	}
	label := "find " + strings.Join(dirs, " ") + " -path */snapshots/" + tag + "/*"
	out, err := c.exec(ctx, node, Command{Argv: argv, Sudo: c.Sudo, Label: bound200(label)})
	if err != nil {
		return nil, classify(err)
	}
	return ParseSnapshotFiles(out.Stdout, tag)
}

// manifestJSON is the part of a snapshot's manifest.json read here.
type manifestJSON struct {
	Files []string `json:"files"`
}

// ParseSnapshotFiles reads the output of SnapshotFilesArgs's command into
// one TableSnapshot per table directory, sorted by keyspace and table.
func ParseSnapshotFiles(out []byte, tag string) ([]messages.TableSnapshot, error) {
	type entry struct {
		t       messages.TableSnapshot
		files   map[string]bool
		listed  []string
		haveMan bool
	}
	tables := map[string]*entry{}
	get := func(p string) (*entry, string, error) {
		sep := "/snapshots/" + tag + "/"
		i := strings.Index(p, sep)
		if i <= 0 {
			return nil, "", fmt.Errorf("path %q is not in a snapshots/%s directory", p, tag)
		}
		tableDir, rel := p[:i], p[i+len(sep):]
		e := tables[tableDir]
		if e == nil {
			name := path.Base(tableDir)
			table, id := name, ""
			if k := strings.LastIndexByte(name, '-'); k > 0 {
				table, id = name[:k], name[k+1:]
			}
			e = &entry{files: map[string]bool{}, t: messages.TableSnapshot{
				Keyspace: path.Base(path.Dir(tableDir)), Table: table, ID: id, DataDir: path.Dir(path.Dir(tableDir)),
			}}
			tables[tableDir] = e
		}
		return e, rel, nil
	}
	parts := strings.Split(string(out), "\x00")
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		switch {
		case p == "":
		case strings.HasPrefix(p, "F "):
			size, file, ok := strings.Cut(p[2:], " ")
			n, err := strconv.ParseInt(size, 10, 64)
			if !ok || err != nil || n < 0 {
				return nil, fmt.Errorf("snapshot listing: bad entry %q", p)
			}
			e, rel, err := get(file)
			if err != nil {
				return nil, fmt.Errorf("snapshot listing: %w", err)
			}
			e.t.Files++
			e.t.Bytes += n
			e.files[rel] = true
		case strings.HasPrefix(p, "C "):
			if i+1 >= len(parts) {
				return nil, fmt.Errorf("snapshot listing: %s has no contents", p[2:])
			}
			i++
			body := parts[i]
			e, rel, err := get(p[2:])
			if err != nil {
				return nil, fmt.Errorf("snapshot listing: %w", err)
			}
			switch rel {
			case "manifest.json":
				var m manifestJSON
				if err := json.Unmarshal([]byte(body), &m); err != nil {
					return nil, fmt.Errorf("snapshot listing: %s: %w", p[2:], err)
				}
				e.listed, e.haveMan = m.Files, true
			case "schema.cql":
				e.t.CQL = strings.TrimSpace(body)
			}
		default:
			return nil, fmt.Errorf("snapshot listing: unexpected output %q", bound(p))
		}
	}
	out2 := make([]messages.TableSnapshot, 0, len(tables))
	for _, e := range tables {
		if !e.haveMan {
			e.t.Missing = append(e.t.Missing, "manifest.json")
		}
		e.t.SSTables = len(e.listed)
		for _, f := range e.listed {
			if !e.files[f] {
				e.t.Missing = append(e.t.Missing, f)
			}
		}
		out2 = append(out2, e.t)
	}
	sort.Slice(out2, func(i, j int) bool {
		a, b := out2[i], out2[j]
		if a.Keyspace != b.Keyspace {
			return a.Keyspace < b.Keyspace
		}
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		return a.DataDir < b.DataDir
	})
	return out2, nil
}

// Describe gathers what the node says about itself and its cluster with
// three nodetool runs, side by side (each is a JVM start of its own): info -T
// (host ID, tokens, DC, rack), status (its address) and describecluster
// (cluster name, snitch, partitioner, schema version, Cassandra version,
// keyspaces); "version" runs only when describecluster does not list the
// node's release. What could not be gathered is named in Errors; the error
// is for a node whose info could not be read.
func (c *Client) Describe(ctx context.Context, node messages.Node) (messages.NodeFacts, error) {
	f := messages.NodeFacts{Schema: messages.NodeFactsSchema, Node: node.Name}
	var (
		wg               sync.WaitGroup
		info             Info
		status           []StatusNode
		cluster          Cluster
		infoErr, statErr error
		clusterErr       error
	)
	wg.Go(func() { info, infoErr = c.Info(ctx, node, true) })
	wg.Go(func() { status, statErr = c.Status(ctx, node, "") })
	wg.Go(func() {
		out, err := c.run(ctx, node, "describecluster")
		if err != nil {
			clusterErr = classify(err)
			return
		}
		cluster, clusterErr = ParseDescribeCluster(out.Stdout)
	})
	wg.Wait()
	if infoErr != nil {
		return f, fmt.Errorf("info -T: %w", infoErr)
	}
	f.HostID, f.Datacenter, f.Rack, f.Tokens = info.HostID, info.Datacenter, info.Rack, info.Tokens
	if statErr != nil {
		f.Errors = append(f.Errors, "status: "+statErr.Error())
	}
	for _, n := range status {
		if n.HostID == f.HostID {
			f.Address = n.Address
		}
	}
	if clusterErr != nil {
		f.Errors = append(f.Errors, "describecluster: "+clusterErr.Error())
	} else {
		f.ClusterName, f.Snitch, f.Partitioner = cluster.Name, cluster.Snitch, cluster.Partitioner
		for v, hosts := range cluster.SchemaVersions {
			for _, h := range hosts {
				if h == f.Address || strings.HasPrefix(h, f.Address+":") {
					f.SchemaVersion = v
				}
			}
		}
		if f.SchemaVersion == "" && len(cluster.SchemaVersions) == 1 {
			for v := range cluster.SchemaVersions {
				f.SchemaVersion = v
			}
		}
		for v, hosts := range cluster.Versions {
			for _, h := range hosts {
				if f.Address != "" && (h == f.Address || strings.HasPrefix(h, f.Address+":")) {
					f.Version = v
				}
			}
		}
		for _, ks := range cluster.Keyspaces {
			f.Keyspaces = append(f.Keyspaces, messages.KeyspaceFacts{Name: ks.Name, Class: ks.Class, Options: ks.Options})
		}
	}
	if f.Version == "" {
		if v, err := c.Version(ctx, node); err != nil {
			f.Errors = append(f.Errors, "version: "+err.Error())
		} else {
			f.Version = v
		}
	}
	return f, nil
}
