package planner

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

func TestBuildRestorePlanInPlaceFS(t *testing.T) {
	t.Parallel()
	b := testBackup(3)
	p, err := BuildRestorePlan(restoreReq(messages.TargetInPlace), b, testTargets(b, SnapshotterFS, 0), time.Unix(0, 0))
	require.NoError(t, err)
	require.Len(t, p.Volumes, 3)
	require.Len(t, p.Nodes, 3)
	n1 := p.Nodes[0]
	require.Equal(t, "n1", n1.Node.Name)
	require.Equal(t, "quiesce-c1-0123456789ab", n1.Spec.Tag)
	// The fs driver restores beside the data directory, on its file
	// system, and the node's prepare reads the copy of the directory there.
	staging := "/var/lib/c1/.quiesce-restore/" + p.RestoreID + "/vol-1"
	require.Equal(t, staging, p.Volumes[0].Volume.Path)
	require.Equal(t, []messages.RestoreSource{{DataDir: "/var/lib/c1/data", From: staging, VolumeID: "vol-1"}}, n1.Spec.Sources)
	require.Nil(t, n1.Spec.NewCluster)
	require.Equal(t, "host-1", p.Verify.Nodes[0].HostID)
	require.Equal(t, "sv-1", p.Verify.SchemaVersion)
	require.Equal(t, map[string]string{messages.TagManaged: "true", messages.TagCluster: "c1", messages.TagRestore: p.RestoreID,
		messages.TagSourceSnapshot: "snap-00000000000000001", messages.TagNode: "n1"}, p.Volumes[0].Volume.Tags)
}

func TestBuildRestorePlanNewCluster(t *testing.T) {
	t.Parallel()
	b := testBackup(3)
	req := restoreReq(messages.TargetNewCluster)
	req.Nodes = []messages.NodeMapping{{Source: "n1", Target: "m3"}, {Source: "n2", Target: "m1"}, {Source: "n3", Target: "m2"}}
	p, err := BuildRestorePlan(req, b, testTargets(b, SnapshotterFS, 3), time.Unix(0, 0))
	require.NoError(t, err)
	require.Equal(t, "c2", p.TargetCluster)
	n := p.Nodes[0]
	require.Equal(t, "m3", n.Node.Name)
	require.Equal(t, "n1", n.Spec.SourceNode)
	nc := n.Spec.NewCluster
	require.NotNil(t, nc)
	require.Equal(t, "Test Cluster", nc.ClusterName)
	require.Equal(t, []string{"100", "150"}, nc.InitialTokens, "the source node's tokens")
	require.Equal(t, 2, nc.NumTokens)
	require.Equal(t, []string{"127.0.1.3", "127.0.1.1", "127.0.1.2"}, nc.Seeds, "seeds among the new nodes only")
	require.True(t, nc.DropSystemLocal)
	require.Equal(t, "dc1", nc.Datacenter)
	require.Equal(t, "/srv/m3/data", n.Spec.Sources[0].DataDir)
	require.Equal(t, "/srv/m3/.quiesce-restore/"+p.RestoreID+"/vol-1", n.Spec.Sources[0].From)
	require.Empty(t, p.Verify.Nodes[0].HostID, "a new cluster has new host IDs")
	require.Equal(t, []string{"100", "150"}, p.Verify.Nodes[0].Tokens)
}

// With EBS each volume is made in the target node's zone, attached to its
// instance, and mounted by the node's prepare beside the data directory:
// the sources say which snapshot's volume, where to mount it and at which
// device it was attached.
func TestBuildRestorePlanEBSNodeTargets(t *testing.T) {
	t.Parallel()
	b := testBackup(2)
	p, err := BuildRestorePlan(restoreReq(messages.TargetInPlace), b, testTargets(b, SnapshotterEBS, 0), time.Unix(0, 0))
	require.NoError(t, err)
	require.Len(t, p.Volumes, 2)
	mount := "/var/lib/c2/.quiesce-restore/" + p.RestoreID + "/vol-2"
	v := p.Volumes[1].Volume
	require.Equal(t, "i-00000000000000002", v.InstanceID)
	require.Equal(t, "/dev/sdr", v.Device)
	require.Equal(t, "us-east-1a", v.AZ)
	require.Empty(t, v.Path, "nothing restored into a directory")
	require.Equal(t, []messages.RestoreSource{{DataDir: "/var/lib/c2/data", From: mount, VolumeID: "vol-2",
		Snapshot: "snap-00000000000000002", Mount: mount, Device: "/dev/sdr"}}, p.Nodes[1].Spec.Sources)

	req := restoreReq(messages.TargetNewCluster)
	p, err = BuildRestorePlan(req, b, testTargets(b, SnapshotterEBS, 2), time.Unix(0, 0))
	require.NoError(t, err)
	v = p.Volumes[0].Volume
	require.Equal(t, "i-00000000000000101", v.InstanceID, "the new node's instance")
	require.Equal(t, "us-east-1b", v.AZ, "in the new node's zone")
	require.Equal(t, "/srv/m1/.quiesce-restore/"+p.RestoreID+"/vol-1", p.Nodes[0].Spec.Sources[0].Mount)

	// A target without an instance, or a zone override elsewhere, is refused.
	tg := testTargets(b, SnapshotterEBS, 2)
	tg.Target.Nodes[1].InstanceID = ""
	req.Volumes = &messages.VolumeOverrides{AZ: "us-east-1c"}
	_, err = BuildRestorePlan(req, b, tg, time.Unix(0, 0))
	require.ErrorIs(t, err, ErrRefused)
	require.Contains(t, err.Error(), "target node m2: no instance_id configured")
	require.Contains(t, err.Error(), "availability zone us-east-1c is not target node m1's (us-east-1b)")
}

func TestBuildRestorePlanVolumesWithOverrides(t *testing.T) {
	t.Parallel()
	b := testBackup(2)
	req := restoreReq(messages.TargetVolumes)
	req.Nodes = []messages.NodeMapping{{Source: "n2", InstanceID: "i-0123456789abcdef0", AZ: "us-east-1c"}}
	req.Volumes = &messages.VolumeOverrides{Type: "io2", IOPS: 8000, SizeGiB: 200, KMSKeyID: "alias/restore", Attach: true}
	p, err := BuildRestorePlan(req, b, testTargets(b, SnapshotterEBS, 0), time.Unix(0, 0))
	require.NoError(t, err)
	require.Len(t, p.Volumes, 1, "only the mapped node's volumes")
	v := p.Volumes[0].Volume
	require.Equal(t, messages.VolumeRestore{SnapshotID: "snap-00000000000000002", SourceVolume: "vol-2", SourceNode: "n2",
		AZ: "us-east-1c", Type: "io2", SizeGiB: 200, IOPS: 8000, Throughput: 125, Encrypted: true, KMSKeyID: "alias/restore",
		InstanceID: "i-0123456789abcdef0", Device: "/dev/sdr", Tags: v.Tags}, v)
	require.Empty(t, p.Nodes)
	require.Nil(t, p.Verify)
}

// Every reason is named at once, and nothing is planned.
func TestBuildRestorePlanRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc string
		mod  func(req *messages.RestoreRequest, b *messages.Backup, tg *RestoreTargets)
		want []string
	}{
		{"in place subset", func(req *messages.RestoreRequest, _ *messages.Backup, _ *RestoreTargets) {
			req.Nodes = []messages.NodeMapping{{Source: "n1"}}
		}, []string{"1 of the backup's 3 nodes", "set force"}},
		{"partial backup in place", func(_ *messages.RestoreRequest, b *messages.Backup, _ *RestoreTargets) {
			b.Partial, b.MissingNodes = true, []string{"n4"}
		}, []string{"partial (no data of n4)"}},
		{"unknown source node and too few targets", func(req *messages.RestoreRequest, _ *messages.Backup, tg *RestoreTargets) {
			req.Target, req.TargetCluster = messages.TargetNewCluster, "c2"
			req.Nodes = []messages.NodeMapping{{Source: "n9"}, {Source: "n1", Target: "m9"}}
			tg.Target.Nodes = tg.Target.Nodes[:0]
		}, []string{"n9 is not a node of backup", "has 0 nodes for the backup's 1", `target "m9" is not a node of cluster c2`}},
		{"no tokens catalogued", func(_ *messages.RestoreRequest, b *messages.Backup, _ *RestoreTargets) {
			b.Topology.Nodes[1].Tokens = nil
		}, []string{"node n2: the catalog has no tokens"}},
		{"snapshot missing and one pending", func(_ *messages.RestoreRequest, b *messages.Backup, _ *RestoreTargets) {
			b.Snapshots = b.Snapshots[1:]
			b.Snapshots[0].State = "pending"
		}, []string{"volume vol-1 of node n1 has no snapshot", "is pending, not completed"}},
		{"crash backup in place", func(_ *messages.RestoreRequest, b *messages.Backup, _ *RestoreTargets) {
			b.Mode = messages.ModeCrash
		}, []string{"crash-consistent"}},
		{"copy region without an AZ there", func(req *messages.RestoreRequest, _ *messages.Backup, _ *RestoreTargets) {
			req.Target, req.Region = messages.TargetVolumes, "us-west-2"
		}, []string{`availability zone "us-east-1a" is not in region us-west-2`}},
		{"target node without directories", func(req *messages.RestoreRequest, _ *messages.Backup, tg *RestoreTargets) {
			req.Target, req.TargetCluster = messages.TargetNewCluster, "c2"
			tg.Target.Nodes[2].Dirs = nil
		}, []string{"target node m3: no data directories configured"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			b := testBackup(3)
			req := restoreReq(messages.TargetInPlace)
			tg := testTargets(b, SnapshotterFS, 3)
			tc.mod(&req, &b, &tg)
			_, err := BuildRestorePlan(req, b, tg, time.Unix(0, 0))
			require.ErrorIs(t, err, ErrRefused)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
