package planner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// factsReadTimeout bounds the read of one node's facts.
const factsReadTimeout = 10 * time.Second

// nodeFacts reads the facts the clear tasks of the catalogued nodes stored,
// several at a time. A node without facts (its clear ran under the previous
// release, could not store them, or they cannot be read now) is named in a
// warning: the backup's snapshots are whole without them, and the record
// says what it lacks rather than the backup failing.
func (e *engine) nodeFacts(ctx context.Context, p *Plan, r *record, nodes []messages.Node) ([]messages.NodeFacts, []string, error) {
	if p.Mode != messages.ModeApplication {
		return nil, nil, nil
	}
	facts := make([]*messages.NodeFacts, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, effectConcurrency)
	for i, n := range nodes {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			facts[i], errs[i] = e.readFacts(ctx, r.ID, n.Name)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var out []messages.NodeFacts
	var missing, unreadable []string
	var warnings []string
	for i, f := range facts {
		if errs[i] != nil {
			unreadable = append(unreadable, fmt.Sprintf("%s (%v)", nodes[i].Name, errs[i]))
			continue
		}
		if f == nil {
			missing = append(missing, nodes[i].Name)
			continue
		}
		for _, msg := range f.Errors {
			warnings = append(warnings, fmt.Sprintf("node %s: %s", f.Node, msg))
		}
		for _, t := range f.Tables {
			if len(t.Missing) > 0 {
				warnings = append(warnings, fmt.Sprintf("node %s: snapshot of %s.%s lacks %s, which its manifest.json lists",
					f.Node, t.Keyspace, t.Table, summarize(t.Missing)))
			}
		}
		out = append(out, *f)
	}
	if len(unreadable) > 0 {
		warnings = append([]string{fmt.Sprintf("facts of node %s could not be read: the catalog lacks their topology", summarize(unreadable))}, warnings...)
	}
	if len(missing) > 0 {
		warnings = append([]string{fmt.Sprintf("no facts gathered for node %s: the catalog lacks their topology", summarize(missing))}, warnings...)
	}
	if len(warnings) > maxFailures {
		warnings = append(warnings[:maxFailures], fmt.Sprintf("and %d more", len(warnings)-maxFailures))
	}
	return out, warnings, nil
}

// readFacts reads one node's facts: nil when there are none, an error when
// three reads, each bounded, did not give them.
func (e *engine) readFacts(ctx context.Context, job, node string) (*messages.NodeFacts, error) {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		// A read the server stopped answering mid-transfer must not hold
		// the job's effects.
		rctx, cancel := context.WithTimeout(ctx, factsReadTimeout)
		var data []byte
		data, err = e.h.Plans.GetBytes(rctx, messages.NodeFactsObject(job, node))
		cancel()
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, nil
		}
		if err != nil {
			continue
		}
		f, derr := messages.DecodeNodeFacts(data)
		if derr != nil {
			return nil, derr
		}
		return &f, nil
	}
	return nil, err
}

// buildTopology assembles a backup's topology from its nodes' facts and its
// volumes as the snapshot driver described them. The cluster's settings are
// those most nodes reported; the schema's CQL is each snapshotted user
// keyspace with the replication it had, then each table's schema.cql as the
// first node holding it gave it.
func buildTopology(nodes []messages.Node, facts []messages.NodeFacts, vols []messages.VolumeFacts) *messages.Topology {
	if len(facts) == 0 && len(vols) == 0 {
		return nil
	}
	t := &messages.Topology{}
	t.ClusterName = majority(facts, func(f messages.NodeFacts) string { return f.ClusterName })
	t.Partitioner = majority(facts, func(f messages.NodeFacts) string { return f.Partitioner })
	t.Snitch = majority(facts, func(f messages.NodeFacts) string { return f.Snitch })
	t.CassandraVersion = majority(facts, func(f messages.NodeFacts) string { return f.Version })
	t.SchemaVersion = majority(facts, func(f messages.NodeFacts) string { return f.SchemaVersion })
	tables := map[string]string{}
	var tableNames []string
	snapshotted := map[string]bool{}
	for _, f := range facts {
		t.NumTokens = max(t.NumTokens, len(f.Tokens))
		if len(t.Keyspaces) == 0 && f.SchemaVersion == t.SchemaVersion {
			t.Keyspaces = f.Keyspaces
		}
		nf := f
		nf.Tables = make([]messages.TableSnapshot, len(f.Tables))
		for k, tb := range f.Tables {
			snapshotted[tb.Keyspace] = true
			name := tb.Keyspace + "." + tb.Table
			if tb.CQL != "" {
				if _, ok := tables[name]; !ok {
					tables[name] = tb.CQL
					tableNames = append(tableNames, name)
				}
			}
			tb.CQL = ""
			nf.Tables[k] = tb
		}
		nf.Keyspaces = nil
		t.Nodes = append(t.Nodes, nf)
	}
	if len(t.Keyspaces) == 0 {
		for _, f := range facts {
			if len(f.Keyspaces) > 0 {
				t.Keyspaces = f.Keyspaces
				break
			}
		}
	}
	var cql strings.Builder
	for _, ks := range t.Keyspaces {
		if !snapshotted[ks.Name] || strings.HasPrefix(ks.Name, "system") {
			continue
		}
		fmt.Fprintf(&cql, "CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s;\n", ident(ks.Name), replication(ks))
	}
	sort.Strings(tableNames)
	for _, name := range tableNames {
		cql.WriteString(strings.TrimSpace(tables[name]) + "\n")
	}
	t.Schema = cql.String()

	// Volumes as the driver described them, with what the inventory knows
	// (device, mount point) where the driver could not say.
	byID := map[string]messages.VolumeFacts{}
	for _, v := range vols {
		byID[v.VolumeID] = v
	}
	for _, n := range nodes {
		for _, v := range n.Volumes {
			f, ok := byID[v.ID]
			if !ok {
				f = messages.VolumeFacts{VolumeID: v.ID}
			}
			f.Node = n.Name
			if f.InstanceID == "" {
				f.InstanceID = n.InstanceID
			}
			if f.AZ == "" {
				f.AZ = n.AZ
			}
			if f.Device == "" {
				f.Device = v.Device
			}
			if f.MountPoint == "" {
				f.MountPoint = v.Path
			}
			t.Volumes = append(t.Volumes, f)
		}
	}
	return t
}

// replication writes a keyspace's replication as CQL's map.
func replication(ks messages.KeyspaceFacts) string {
	keys := make([]string, 0, len(ks.Options))
	for k := range ks.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{fmt.Sprintf("'class': '%s'", ks.Class)}
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("'%s': '%s'", k, ks.Options[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// majority returns the value most facts give (the first of equals), "" for
// none.
func majority(facts []messages.NodeFacts, get func(messages.NodeFacts) string) string {
	counts := map[string]int{}
	best, n := "", 0
	for _, f := range facts {
		v := get(f)
		if v == "" {
			continue
		}
		counts[v]++
		if counts[v] > n {
			best, n = v, counts[v]
		}
	}
	return best
}

// ident writes a keyspace name as CQL reads it: quoted when it is not all
// lower case, as Cassandra folds unquoted names.
func ident(name string) string {
	if strings.ToLower(name) == name {
		return name
	}
	return `"` + name + `"`
}
