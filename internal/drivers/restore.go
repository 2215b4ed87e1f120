package drivers

import (
	"context"
	"errors"
	"fmt"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/noderestore"
)

var _ worker.RestoreDrivers = (*Registry)(nil)

// RestoreNodes gives the worker the cluster's node restore (noderestore)
// behind worker.NodeRestorer.
func (r *Registry) RestoreNodes(cluster string) (worker.NodeRestorer, error) {
	nr, err := r.NodeRestorer(cluster)
	if err != nil {
		return nil, err
	}
	return NodeRestore(nr), nil
}

// NodeRestore puts r behind worker.NodeRestorer.
func NodeRestore(r *noderestore.Restorer) worker.NodeRestorer { return nodeRestore{r} }

// nodeRestore maps the restore job's messages onto noderestore's own types.
type nodeRestore struct{ r *noderestore.Restorer }

func restoreSpec(node messages.Node, s messages.NodeRestore) noderestore.Spec {
	spec := noderestore.Spec{RestoreID: s.RestoreID, Target: noderestore.Target(s.Target), Tag: s.Tag,
		StopRunning: s.StopRunning, Keyspaces: s.Keyspaces, Dirs: s.Dirs, Address: node.Address}
	for _, src := range s.Sources {
		spec.Sources = append(spec.Sources, noderestore.Source{DataDir: src.DataDir, From: src.From, Mount: src.Mount, Devices: src.Devices})
	}
	if nc := s.NewCluster; nc != nil {
		spec.NewCluster = &noderestore.NewClusterSpec{ClusterName: nc.ClusterName, KeepIdentity: !nc.DropSystemLocal,
			InitialTokens: nc.InitialTokens, Seeds: nc.Seeds}
	}
	return spec
}

func restoreReport(rep noderestore.Report, err error) (messages.RestoreReport, error) {
	out := messages.RestoreReport{Step: string(rep.Step), Again: rep.Again, Aside: rep.Aside, Files: rep.Files,
		HostID: rep.HostID, Tokens: rep.Tokens, Notes: rep.Notes}
	for _, e := range rep.Emptied {
		out.Notes = append(out.Notes, "emptied (created after the barrier): "+e)
	}
	if errors.Is(err, noderestore.ErrCassandraRunning) {
		err = fmt.Errorf("%w: %w", worker.ErrCassandraRunning, err)
	}
	return out, err
}

func (n nodeRestore) Stop(ctx context.Context, node messages.Node, s messages.NodeRestore) (messages.RestoreReport, error) {
	return restoreReport(n.r.Stop(ctx, node, restoreSpec(node, s)))
}

func (n nodeRestore) Prepare(ctx context.Context, node messages.Node, s messages.NodeRestore) (messages.RestoreReport, error) {
	return restoreReport(n.r.Prepare(ctx, node, restoreSpec(node, s)))
}

func (n nodeRestore) Start(ctx context.Context, node messages.Node, s messages.NodeRestore) (messages.RestoreReport, error) {
	return restoreReport(n.r.Start(ctx, node, restoreSpec(node, s)))
}

func (n nodeRestore) Verify(ctx context.Context, node messages.Node, v messages.RestoreVerify) (messages.RestoreReport, error) {
	nv := noderestore.Verify{SchemaVersion: v.SchemaVersion}
	for _, x := range v.Nodes {
		nv.Nodes = append(nv.Nodes, noderestore.ExpectNode{Address: x.Address, HostID: x.HostID, Tokens: x.Tokens})
	}
	if v.CQL != "" {
		check := noderestore.CQLCheck{Query: v.CQL}
		if v.ExpectRows != nil {
			check.Expect = *v.ExpectRows
		}
		nv.CQL = []noderestore.CQLCheck{check}
	}
	return restoreReport(n.r.VerifyNode(ctx, node, node.Address, nv))
}
