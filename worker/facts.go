package worker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/messages"
)

// The clear task that follows a node's volume snapshots gathers the node's
// facts for the catalog: what its snapshot holds, read before the tag is
// cleared (a find over the data directories: no JVM), then what the node
// says about itself and the cluster, read after (three nodetool runs, off
// the path of the hard links' removal). Facts are stored as an object in
// BucketPlans for the catalog to read. Gathering never fails the clear:
// what could not be gathered is named in the facts' Errors.

// snapshotFacts stores what the node's snapshot holds and returns the
// object's name, or "" when nothing could be stored. An object an earlier
// attempt stored is kept: the tag may be partly cleared since.
func (w *Worker) snapshotFacts(ctx context.Context, log zerolog.Logger, fg FactGatherer, t messages.Task) string {
	node := *t.Node
	name := messages.NodeFactsObject(t.JobID, node.Name)
	store, err := w.js.ObjectStore(ctx, messages.BucketPlans)
	if err != nil {
		log.Warn().Err(err).Msg("node facts not gathered: no plans bucket")
		return ""
	}
	if _, err := store.GetInfo(ctx, name); err == nil {
		return name
	}
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
		if err != nil {
			f.Errors = append(f.Errors, "snapshot files: "+err.Error())
		}
		f.Tables = tables
	}
	if err := putFacts(ctx, w, name, f); err != nil {
		log.Warn().Err(err).Msg("node facts not stored")
		return ""
	}
	return name
}

// nodeFacts adds what the node says about itself to its stored facts.
func (w *Worker) nodeFacts(ctx context.Context, log zerolog.Logger, fg FactGatherer, t messages.Task, name string) {
	store, err := w.js.ObjectStore(ctx, messages.BucketPlans)
	if err != nil {
		log.Warn().Err(err).Msg("node facts not completed")
		return
	}
	data, err := store.GetBytes(ctx, name)
	if err != nil {
		log.Warn().Err(err).Msg("node facts not completed")
		return
	}
	f, err := messages.DecodeNodeFacts(data)
	if err != nil {
		log.Warn().Err(err).Msg("node facts not completed")
		return
	}
	if f.HostID != "" {
		return // an earlier attempt got this far
	}
	d, err := fg.Describe(ctx, *t.Node)
	if err != nil {
		f.Errors = append(f.Errors, "describe: "+err.Error())
	} else {
		f.HostID, f.Datacenter, f.Rack, f.Address, f.Tokens, f.Version = d.HostID, d.Datacenter, d.Rack, d.Address, d.Tokens, d.Version
		f.ClusterName, f.Partitioner, f.Snitch, f.SchemaVersion, f.Keyspaces = d.ClusterName, d.Partitioner, d.Snitch, d.SchemaVersion, d.Keyspaces
		f.Errors = append(f.Errors, d.Errors...)
	}
	if err := putFacts(ctx, w, name, f); err != nil {
		log.Warn().Err(err).Msg("node facts not completed")
	}
}

func putFacts(ctx context.Context, w *Worker, name string, f messages.NodeFacts) error {
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	store, err := w.js.ObjectStore(ctx, messages.BucketPlans)
	if err != nil {
		return err
	}
	if _, err := store.PutBytes(ctx, name, data); err != nil {
		return fmt.Errorf("node facts %s: %w", name, err)
	}
	return nil
}
