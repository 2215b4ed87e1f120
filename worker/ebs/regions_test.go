package ebs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
)

// A cluster with a data centre in us-east-1 (the cluster's region) and one
// in us-west-2 in another account.
func twoRegionConfig() Config {
	return Config{Cluster: "c1", Region: "us-east-1", Account: "111111111111", DataCenters: []DataCenter{
		{Name: "east", Region: "us-east-1"},
		{Name: "west", Region: "us-west-2", Account: "222222222222"},
	}}
}

func TestDataCentreNodesSnapshottedInTheirRegion(t *testing.T) {
	t.Parallel()
	b := setupPace(t)
	b.ec2.on("CreateSnapshot", fakeAnswer{body: createAnswer})
	d := b.driver(t, twoRegionConfig(), b.pacer(t, func(k pace.Key) pace.Limit { return DefaultLimit(k.Op) }))
	require.Equal(t, []string{"us-east-1", "us-west-2"}, d.Regions())

	for _, tt := range []struct {
		node       messages.Node
		wantRegion string
	}{
		{messages.Node{Name: "e1", DC: "east", Region: "us-east-1"}, "us-east-1"},
		{messages.Node{Name: "w1", DC: "west", Region: "us-west-2"}, "us-west-2"},
		// A node of a data centre not configured (any more) is snapshotted
		// where the plan put it.
		{messages.Node{Name: "x1", DC: "gone", Region: "eu-west-1"}, "eu-west-1"},
		{messages.Node{Name: "n1"}, "us-east-1"},
	} {
		req := createRequest("c1-000000000001.snapshot.vol-"+tt.node.Name, "vol-1")
		req.Node = tt.node
		snaps, err := d.Create(t.Context(), req)
		require.NoError(t, err)
		require.Equal(t, tt.wantRegion, snaps[0].Region, tt.node.Name)
		regions := b.ec2.regionsOf("CreateSnapshot")
		require.Equal(t, tt.wantRegion, regions[len(regions)-1], tt.node.Name)
	}

	// Each call was charged to its data centre's account and region: those
	// budgets were written, and no other.
	_, js := b.env.Connect(t)
	kv, err := js.KeyValue(t.Context(), messages.BucketPace)
	require.NoError(t, err)
	keys, err := kv.Keys(t.Context())
	require.NoError(t, err)
	require.ElementsMatch(t, []string{
		"111111111111.us-east-1.CreateSnapshot", "222222222222.us-west-2.CreateSnapshot", "111111111111.eu-west-1.CreateSnapshot",
	}, keys)
}

func TestFindLooksInEveryRegionOrOneDataCentre(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	job := map[string]string{messages.TagManaged: "true", messages.TagJob: "c1-000000000001"}
	copyOf := map[string]string{messages.TagManaged: "true", messages.TagJob: "c1-000000000001", TagCopyOf: "snap-0"}
	f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet>" +
		snapshotXML("snap-1", "vol-1", "completed", job) +
		snapshotXML("snap-c", "vol-0", "completed", copyOf) + "</snapshotSet>"})
	cfg := twoRegionConfig()
	cfg.Endpoint = f.srv.URL
	d, err := New(t.Context(), cfg, fastOptions())
	require.NoError(t, err)

	all, err := d.Find(t.Context(), map[string]string{messages.TagJob: "c1-000000000001"})
	require.NoError(t, err)
	require.Equal(t, []string{"us-east-1", "us-west-2"}, f.regionsOf("DescribeSnapshots"))
	require.Len(t, all, 2, "one per region; copies are not the cluster's snapshots")
	require.ElementsMatch(t, []string{"us-east-1", "us-west-2"}, []string{all[0].Region, all[1].Region})

	one, err := d.Find(t.Context(), map[string]string{messages.TagTask: "t", messages.TagDC: "west"})
	require.NoError(t, err)
	require.Len(t, one, 1)
	require.Equal(t, "us-west-2", one[0].Region)
	require.Equal(t, []string{"us-east-1", "us-west-2", "us-west-2"}, f.regionsOf("DescribeSnapshots"),
		"a filter naming a data centre looks only there")
	require.Equal(t, "tag:quiesce:dc", f.requests("DescribeSnapshots")[2].Get("Filter.1.Name"))
}

func TestDeleteInTheSnapshotsRegion(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet>" +
		snapshotXML("snap-1", "vol-1", "completed", map[string]string{messages.TagManaged: "true"}) + "</snapshotSet>"})
	f.on("DeleteSnapshot", fakeAnswer{body: "<return>true</return>"})
	cfg := twoRegionConfig()
	cfg.Endpoint = f.srv.URL
	d, err := New(t.Context(), cfg, fastOptions())
	require.NoError(t, err)
	require.NoError(t, d.DeleteIn(t.Context(), "us-west-2", "snap-1"))
	require.Equal(t, []string{"us-west-2"}, f.regionsOf("DescribeSnapshots"))
	require.Equal(t, []string{"us-west-2"}, f.regionsOf("DeleteSnapshot"))
	require.NoError(t, d.Delete(t.Context(), "snap-1"))
	require.Equal(t, []string{"us-west-2", "us-east-1"}, f.regionsOf("DeleteSnapshot"))
}
