package planner

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

func catalogFixture(t *testing.T) (*engine, *testenv.Env, *Plan, *record) {
	t.Helper()
	env := testenv.New(t, topology.Options{})
	e := newEngine(env.JS, env.H, Options{})
	nodes := []messages.Node{
		{Name: "n1", Volumes: []messages.Volume{{ID: "v1"}}},
		{Name: "n2", Volumes: []messages.Volume{{ID: "v2"}}},
	}
	p, err := BuildPlan(testenv.Request("c1", "cat"), Policy{Name: "p", Cluster: "c1"}, nodes, false, time.Now())
	require.NoError(t, err)
	r := newRecord(p, time.Now())
	r.Flushed.set(0)
	r.Flushed.set(1)
	r.SnapDone.set(0)
	r.SnapDone.set(1)
	return e, env, p, r
}

func putListing(t *testing.T, env *testenv.Env, job string, refs []messages.SnapshotRef) string {
	t.Helper()
	data, err := json.Marshal(refs)
	require.NoError(t, err)
	name := messages.SnapshotListing(job)
	_, err = env.H.Plans.PutBytes(context.Background(), name, data)
	require.NoError(t, err)
	return name
}

// The catalog is written from the await task's listing alone: the state of
// every snapshot is the one seen when all had completed; a volume with two
// snapshots (a task that ran twice at once) is catalogued with the earliest.
func TestCatalogIsWrittenFromTheListing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, env, p, r := catalogFixture(t)
	t0 := time.Unix(1_700_000_000, 0).UTC()
	r.Listing = putListing(t, env, p.JobID, []messages.SnapshotRef{
		{SnapshotID: "snap-late", VolumeID: "v2", Node: "n2", State: "completed", StartTime: t0.Add(time.Minute)},
		{SnapshotID: "snap-2", VolumeID: "v2", Node: "n2", State: "completed", StartTime: t0},
		{SnapshotID: "snap-1", VolumeID: "v1", Node: "n1", State: "completed", StartTime: t0},
	})
	res, err := e.writeCatalog(ctx, p, r)
	require.NoError(t, err)
	require.Empty(t, res.failed)
	require.Equal(t, []string{"volume v2 has more than one snapshot of this job; the earliest is catalogued",
		"catalog: no facts gathered for node n1, n2: the catalog lacks their topology"}, res.warnings,
		"and the job says what its catalog record lacks")

	backups, err := Backups(ctx, env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	require.Equal(t, []messages.SnapshotRef{
		{SnapshotID: "snap-1", VolumeID: "v1", Node: "n1", State: "completed", StartTime: t0},
		{SnapshotID: "snap-2", VolumeID: "v2", Node: "n2", State: "completed", StartTime: t0},
	}, backups[0].Snapshots)
	require.False(t, backups[0].Partial)
}

// A listing that lacks a volume of the backup is no backup: the catalog
// effect says so, and writes nothing.
func TestCatalogRefusesAListingMissingAVolume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, env, p, r := catalogFixture(t)
	r.Listing = putListing(t, env, p.JobID, []messages.SnapshotRef{{SnapshotID: "snap-1", VolumeID: "v1", Node: "n1", State: "completed"}})
	res, err := e.writeCatalog(ctx, p, r)
	require.NoError(t, err)
	require.Equal(t, "no completed snapshot found for volume v2", res.failed)
	_, err = env.H.Catalog.Get(ctx, messages.CatalogKey("c1", p.JobID))
	require.Error(t, err)
}

// A partial backup says so in its catalog record, with the nodes it lacks.
func TestPartialBackupIsCataloguedAsPartial(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, env, p, r := catalogFixture(t)
	r.Flushed = newBitset(2)
	r.Flushed.set(0)
	r.FlushFailed.set(1)
	r.SnapDone = newBitset(2)
	r.SnapDone.set(0)
	r.Listing = putListing(t, env, p.JobID, []messages.SnapshotRef{{SnapshotID: "snap-1", VolumeID: "v1", Node: "n1", State: "completed"}})
	res, err := e.writeCatalog(ctx, p, r)
	require.NoError(t, err)
	require.Empty(t, res.failed)
	backups, err := Backups(ctx, env.H.Catalog, "c1")
	require.NoError(t, err)
	require.True(t, backups[0].Partial)
	require.Equal(t, []string{"n2"}, backups[0].MissingNodes)
	require.Equal(t, 1, backups[0].NodeCount)
}

// A record whose await ended under the previous release has no listing; its
// snapshot tasks' results kept beside the record stand in. When they are not
// all visible yet (a replica that restarted and is still catching up can
// serve a short key listing), writing the catalog fails and is retried,
// instead of recording a backup without its snapshots.
func TestLegacyCatalogWaitsForEverySnapshotResult(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, env, p, r := catalogFixture(t)

	// Only one of the two results is visible.
	_, err := env.H.Jobs.Put(ctx, resultKey(messages.TaskID(p.JobID, messages.KindSnapshot, "v1")),
		[]byte(`[{"snapshot_id":"snap-1","volume_id":"v1","node":"n1"}]`))
	require.NoError(t, err)
	_, err = e.writeCatalog(ctx, p, r)
	require.Error(t, err)
	_, err = env.H.Catalog.Get(ctx, messages.CatalogKey("c1", p.JobID))
	require.Error(t, err, "no catalog record without every snapshot")

	_, err = env.H.Jobs.Put(ctx, resultKey(messages.TaskID(p.JobID, messages.KindSnapshot, "v2")),
		[]byte(`[{"snapshot_id":"snap-2","volume_id":"v2","node":"n2"}]`))
	require.NoError(t, err)
	res, err := e.writeCatalog(ctx, p, r)
	require.NoError(t, err)
	require.Empty(t, res.failed)
}

// A backup of a cluster whose data centres are in two regions says where
// every snapshot and node is, and which regions it spans, so that retention
// and a restore can work region by region; snapshot tasks carry their
// node's data centre.
func TestCatalogOfATwoRegionCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := testenv.New(t, topology.Options{})
	e := newEngine(env.JS, env.H, Options{})
	nodes := []messages.Node{
		{Name: "e1", DC: "east", Region: "us-east-1", AZ: "us-east-1a", Volumes: []messages.Volume{{ID: "v1"}}},
		{Name: "w1", DC: "west", Region: "us-west-2", AZ: "us-west-2b", Volumes: []messages.Volume{{ID: "v2"}}},
	}
	p, err := BuildPlan(testenv.Request("c1", "regions"), Policy{Name: "p", Cluster: "c1"}, nodes, false, time.Now())
	require.NoError(t, err)
	task := p.snapshotTask(1, time.Now())
	require.Equal(t, "west", task.Node.DC)
	require.Equal(t, "us-west-2", task.Node.Region)
	require.Equal(t, "west", task.SnapshotTags[messages.TagDC])

	r := newRecord(p, time.Now())
	for i := range nodes {
		r.Flushed.set(i)
		r.SnapDone.set(i)
	}
	t0 := time.Unix(1_700_000_000, 0).UTC()
	r.Listing = putListing(t, env, p.JobID, []messages.SnapshotRef{
		{SnapshotID: "snap-2", VolumeID: "v2", Region: "us-west-2", Node: "w1", State: "completed", StartTime: t0},
		{SnapshotID: "snap-1", VolumeID: "v1", Region: "us-east-1", Node: "e1", State: "completed", StartTime: t0},
	})
	res, err := e.writeCatalog(ctx, p, r)
	require.NoError(t, err)
	require.Empty(t, res.failed)
	backups, err := Backups(ctx, env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	b := backups[0]
	require.Equal(t, []string{"us-east-1", "us-west-2"}, b.Regions)
	require.Equal(t, "us-west-2", b.Snapshots[1].Region)
	require.Equal(t, "west", b.Nodes[1].DC)
	require.Equal(t, "us-west-2", b.Nodes[1].Region)
}
