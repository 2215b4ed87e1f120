package planner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// factsReadTimeout bounds the read of a job's facts.
const factsReadTimeout = 30 * time.Second

// nodeFacts reads the facts the clear tasks of the catalogued nodes stored,
// every one (and every part of those split over several values) in a single
// pass over the job's facts keys: a watch of <job>.facts.>, not a read per
// node. A node without facts (its clear ran under the previous release or
// could not store them) or with facts that cannot be put together and
// decoded is named in a warning: the backup's snapshots are whole without
// them, and the record says what it lacks rather than the backup failing.
// A read that fails (a server down) fails the effect, to be retried.
func (e *engine) nodeFacts(ctx context.Context, p *Plan, r *record, nodes []messages.Node) ([]messages.NodeFacts, []string, error) {
	if p.Mode != messages.ModeApplication || len(nodes) == 0 {
		return nil, nil, nil
	}
	values, err := e.factsValues(ctx, r.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("node facts: %w", err)
	}
	var out []messages.NodeFacts
	var missing, unreadable []string
	var warnings []string
	for _, n := range nodes {
		data, ok := values[messages.NodeFactsKey(r.ID, n.Name)]
		if !ok {
			missing = append(missing, n.Name)
			continue
		}
		f, err := decodeFacts(values, r.ID, n.Name, data)
		if err != nil {
			unreadable = append(unreadable, fmt.Sprintf("%s (%v)", n.Name, err))
			continue
		}
		for _, msg := range f.Errors {
			warnings = append(warnings, fmt.Sprintf("node %s: %s", f.Node, msg))
		}
		for _, t := range f.Tables {
			if len(t.Missing) > 0 {
				warnings = append(warnings, fmt.Sprintf("node %s: snapshot of %s.%s lacks files its manifest.json lists: %s",
					f.Node, t.Keyspace, t.Table, summarize(t.Missing)))
			}
		}
		out = append(out, f)
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

// factsValues reads the value of every <job>.facts.> key, bounded: a server
// that stops answering mid-read must not hold the job's effects.
func (e *engine) factsValues(ctx context.Context, job string) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, factsReadTimeout)
	defer cancel()
	w, err := e.h.Jobs.Watch(ctx, job+".facts.>", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	values := map[string][]byte{}
	for {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case entry, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("facts watch closed")
			}
			if entry == nil {
				return values, nil // every current value delivered
			}
			values[entry.Key()] = entry.Value()
		}
	}
}

// decodeFacts decodes a node's facts value, putting its parts together
// first when the facts were too large for one value.
func decodeFacts(values map[string][]byte, job, node string, data []byte) (messages.NodeFacts, error) {
	f, err := messages.DecodeNodeFacts(data)
	if err != nil || f.Parts == 0 {
		return f, err
	}
	var whole []byte
	for i := 1; i <= f.Parts; i++ {
		part, ok := values[messages.NodeFactsPartKey(job, node, i)]
		if !ok {
			return f, fmt.Errorf("part %d of %d missing", i, f.Parts)
		}
		whole = append(whole, part...)
	}
	if sum := sha256.Sum256(whole); hex.EncodeToString(sum[:]) != f.SHA256 {
		return f, fmt.Errorf("its %d parts do not match their digest (rewritten while read?)", f.Parts)
	}
	return messages.DecodeNodeFacts(whole)
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
