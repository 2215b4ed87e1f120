package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/messages"
)

// The clear task that follows a node's volume snapshots gathers the node's
// facts for the catalog: what its snapshot holds, read before the tag is
// cleared (a find over the data directories: no JVM), then what the node
// says about itself and the cluster, read after (nodetool runs, off the
// path of the hard links' removal). The facts are stored once, as an object
// in BucketPlans, for the catalog to read. Gathering never fails the clear:
// what could not be gathered is named in the facts' Errors.

// Bounds of the facts' gathering: the clear task that does it may run for
// an hour, heartbeating, and must not be held that long by a store that
// stopped answering mid-request or a nodetool that hangs.
const (
	factsTimeout      = 5 * time.Minute
	factsStoreTimeout = 10 * time.Second
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
// returning the object's name, or "" when it could not be stored.
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
	name := messages.NodeFactsObject(t.JobID, t.Node.Name)
	data, err := json.Marshal(f)
	if err == nil {
		sctx, scancel := context.WithTimeout(ctx, factsStoreTimeout)
		defer scancel()
		var store jetstream.ObjectStore
		if store, err = w.js.ObjectStore(sctx, messages.BucketPlans); err == nil {
			_, err = store.PutBytes(sctx, name, data)
		}
	}
	if err != nil {
		log.Warn().Err(err).Msg("node facts not stored: the catalog says so")
		return ""
	}
	return name
}
