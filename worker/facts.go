package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/messages"
)

// The clear task that follows a node's volume snapshots gathers the node's
// facts for the catalog: what its snapshot holds, read before the tag is
// cleared (a find over the data directories: no JVM), then what the node
// says about itself and the cluster, read after (nodetool runs, off the
// path of the hard links' removal). The facts are stored once, in the jobs
// bucket (one write; one per part for the rare node whose facts outgrow a
// value), for the catalog to read: keys an agent's NATS user may write for
// its own node (topology.AgentPermissions), where an object store's would
// not be confined to it. Gathering never
// fails the clear: what could not be gathered is named in the facts' Errors.

// Bounds of the facts' gathering: the clear task that does it may run for
// an hour, heartbeating, and must not be held that long by a store that
// stopped answering mid-request or a nodetool that hangs.
const (
	factsTimeout      = 5 * time.Minute
	factsStoreTimeout = 10 * time.Second
	// factsInline is the largest value of facts kept in the jobs bucket,
	// well under the server's default 1 MB message; larger facts are split
	// into parts of this size, at most factsMaxParts of them (a node of
	// thousands of tables, each with its schema.cql).
	factsInline   = 256 << 10
	factsMaxParts = 64
)

// snapshotFacts reads what the node's snapshot holds.
func (w *Worker) snapshotFacts(ctx context.Context, fg FactGatherer, t messages.Task) messages.NodeFacts {
	ctx, cancel := context.WithTimeout(ctx, factsTimeout)
	defer cancel()
	node := *t.Node
	f := messages.NodeFacts{Schema: messages.NodeFactsSchema, Node: node.Name, GatheredAt: w.cfg.Now()}
	if node.Dirs != nil {
		f.Dirs = *node.Dirs
		f.Dirs.Data = append([]string(nil), node.Dirs.Data...)
	}
	if len(f.Dirs.Data) == 0 {
		dirs, err := fg.DataDirs(ctx, node)
		if err != nil {
			f.Errors = append(f.Errors, "data directories: "+err.Error())
		}
		f.Dirs.Data = dirs
	}
	if len(f.Dirs.Data) > 0 {
		tables, err := fg.SnapshotTables(ctx, node, f.Dirs.Data, t.Tag)
		switch {
		case err != nil:
			f.Errors = append(f.Errors, "snapshot files: "+err.Error())
		case len(tables) == 0:
			// A redelivered clear whose first delivery cleared the tag.
			f.Errors = append(f.Errors, fmt.Sprintf("snapshot files: no snapshots/%s directory found (cleared already?)", t.Tag))
		}
		f.Tables = tables
	}
	return f
}

// nodeFacts adds what the node says about itself to f and stores it,
// returning its key, or "" when it could not be stored.
func (w *Worker) nodeFacts(ctx context.Context, log zerolog.Logger, fg FactGatherer, t messages.Task, f messages.NodeFacts) string {
	ctx, cancel := context.WithTimeout(ctx, factsTimeout)
	defer cancel()
	d, err := fg.Describe(ctx, *t.Node)
	if err != nil {
		f.Errors = append(f.Errors, "describe: "+err.Error())
	} else {
		f.HostID, f.Datacenter, f.Rack, f.Address, f.Tokens, f.Version = d.HostID, d.Datacenter, d.Rack, d.Address, d.Tokens, d.Version
		f.ClusterName, f.Partitioner, f.Snitch, f.SchemaVersion, f.Keyspaces = d.ClusterName, d.Partitioner, d.Snitch, d.SchemaVersion, d.Keyspaces
		f.Errors = append(f.Errors, d.Errors...)
	}
	if err := w.putFacts(ctx, t.JobID, f); err != nil {
		log.Warn().Err(err).Msg("node facts not stored: the catalog says so")
		return ""
	}
	return messages.NodeFactsKey(t.JobID, f.Node)
}

// putFacts stores f under key in the jobs bucket or, too large for one
// value, in parts under NodeFactsPartKey, then under key what says how many
// parts there are and their digest: written last, the key never points to
// parts that are not all there.
func (w *Worker) putFacts(ctx context.Context, job string, f messages.NodeFacts) error {
	key := messages.NodeFactsKey(job, f.Node)
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if len(data) > factsInline {
		parts := (len(data) + factsInline - 1) / factsInline
		if parts > factsMaxParts {
			return fmt.Errorf("node facts %s: %d bytes, more than the %d kept", key, len(data), factsMaxParts*factsInline)
		}
		for i := range parts {
			chunk := data[i*factsInline : min(len(data), (i+1)*factsInline)]
			if err := w.putValue(ctx, messages.NodeFactsPartKey(job, f.Node, i+1), chunk); err != nil {
				return err
			}
		}
		sum := sha256.Sum256(data)
		head := messages.NodeFacts{Schema: messages.NodeFactsSchema, Node: f.Node, Parts: parts, SHA256: hex.EncodeToString(sum[:])}
		if data, err = json.Marshal(head); err != nil {
			return err
		}
	}
	return w.putValue(ctx, key, data)
}

// putValue puts one value in the jobs bucket, bounded.
func (w *Worker) putValue(ctx context.Context, key string, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, factsStoreTimeout)
	defer cancel()
	if _, err := w.jobs.Put(ctx, key, data); err != nil {
		return fmt.Errorf("node facts %s: %w", key, err)
	}
	return nil
}
