package planner

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/internal/topology"
	"github.com/quiesce/quiesce/messages"
)

// A catalog record must name every snapshot the job record says was taken.
// When the task results are not all visible yet (a replica that restarted
// and is still catching up can serve a short key listing), writing the
// catalog fails and is retried, instead of recording a backup without its
// snapshots.
func TestCatalogWaitsForEverySnapshotResult(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	ctx := context.Background()
	e := newEngine(env.JS, env.H, Options{})
	nodes := []messages.Node{
		{Name: "n1", Volumes: []messages.Volume{{ID: "v1"}}},
		{Name: "n2", Volumes: []messages.Volume{{ID: "v2"}}},
	}
	p, err := BuildPlan(testenv.Request("c1", "cat"), config.Policy{Name: "p", Cluster: "c1"}, nodes, false, time.Now())
	require.NoError(t, err)
	r := newRecord(p, time.Now())
	r.Flushed.set(0)
	r.Flushed.set(1)
	r.SnapDone.set(0)
	r.SnapDone.set(1)

	// Only one of the two results is visible.
	_, err = env.H.Jobs.Put(ctx, resultKey(messages.TaskID(p.JobID, messages.KindSnapshot, "v1")),
		[]byte(`[{"snapshot_id":"snap-1","volume_id":"v1","node":"n1"}]`))
	require.NoError(t, err)
	require.Error(t, e.writeCatalog(ctx, p, r))
	_, err = env.H.Catalog.Get(ctx, messages.CatalogKey("c1", p.JobID))
	require.Error(t, err, "no catalog record without every snapshot")

	_, err = env.H.Jobs.Put(ctx, resultKey(messages.TaskID(p.JobID, messages.KindSnapshot, "v2")),
		[]byte(`[{"snapshot_id":"snap-2","volume_id":"v2","node":"n2"}]`))
	require.NoError(t, err)
	require.NoError(t, e.writeCatalog(ctx, p, r))
}
