//go:build integration

package planner_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/internal/testkit/blockdev"
	"github.com/quiesce/quiesce/internal/testkit/mototest"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/noderestore"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// stoppedService is a Cassandra that is not running.
type stoppedService struct{}

func (stoppedService) Running(context.Context, messages.Node) (bool, error)          { return false, nil }
func (stoppedService) Stop(context.Context, messages.Node) error                     { return nil }
func (stoppedService) Start(context.Context, messages.Node, map[string]string) error { return nil }

// filesOnlyRestorer runs the node restore's file steps for real (stop and
// prepare, through the local executor) and stands in for starting and
// verifying Cassandra, which the real-Cassandra drill covers.
type filesOnlyRestorer struct{ worker.NodeRestorer }

func (filesOnlyRestorer) Start(context.Context, messages.Node, messages.NodeRestore) (messages.RestoreReport, error) {
	return messages.RestoreReport{Step: messages.StepStarted}, nil
}

func (filesOnlyRestorer) Verify(context.Context, messages.Node, messages.RestoreVerify) (messages.RestoreReport, error) {
	return messages.RestoreReport{Step: messages.StepVerified}, nil
}

// foundNodes is discovery finding the given nodes.
type foundNodes []messages.Node

func (f foundNodes) Discover(context.Context, planner.Cluster) ([]messages.Node, error) {
	return slices.Clone(f), nil
}

type ebsRestoreDrivers struct {
	snap  *ebs.Driver
	nodes worker.NodeRestorer
}

func (d ebsRestoreDrivers) NodeTool(string) (worker.NodeTool, error)         { return nil, os.ErrNotExist }
func (d ebsRestoreDrivers) Snapshotter(string) (worker.Snapshotter, error)   { return d.snap, nil }
func (d ebsRestoreDrivers) RestoreNodes(string) (worker.NodeRestorer, error) { return d.nodes, nil }

// An in-place restore of an EBS-backed node, end to end through the
// planner, coordinator and worker on JetStream, against moto's EC2 and a
// real mount: the volume is made from the snapshot and attached to the
// node's instance, the node mounts it (a loop device holding the
// snapshot's file system, linked where udev links the volume's NVMe
// serial), the backup's files replace the live ones, and the volume is
// unmounted, detached and deleted; the node's own volume and the snapshot
// are untouched.
func TestRestoreInPlaceFromEBSMountsAndReleasesTheVolume(t *testing.T) {
	t.Parallel()
	m := mototest.Start(t)
	creds := credentials.NewStaticCredentialsProvider(mototest.AccessKeyID, mototest.SecretAccessKey, "")
	links := t.TempDir()
	d, err := ebs.New(t.Context(), ebs.Config{Cluster: "c1", Region: "us-east-1", Endpoint: m.URL},
		ebs.Options{Credentials: creds, DeviceLinks: links})
	require.NoError(t, err)
	raw := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(m.URL), Credentials: creds})

	// The node: an instance with its data volume, mounted at root.
	imgs, err := raw.DescribeImages(t.Context(), &ec2.DescribeImagesInput{})
	require.NoError(t, err)
	run, err := raw.RunInstances(t.Context(), &ec2.RunInstancesInput{ImageId: imgs.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		InstanceType: types.InstanceTypeM5Large, Placement: &types.Placement{AvailabilityZone: aws.String("us-east-1a")}})
	require.NoError(t, err)
	instance := aws.ToString(run.Instances[0].InstanceId)
	own, err := raw.CreateVolume(t.Context(), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(10)})
	require.NoError(t, err)
	_, err = raw.AttachVolume(t.Context(), &ec2.AttachVolumeInput{VolumeId: own.VolumeId, InstanceId: aws.String(instance), Device: aws.String("/dev/sdf")})
	require.NoError(t, err)
	root := t.TempDir()
	data := filepath.Join(root, "data")
	vol := messages.Volume{ID: aws.ToString(own.VolumeId), Device: "/dev/sdf", Path: root}
	node := messages.Node{Name: "n1", Address: "127.0.0.1", InstanceID: instance, AZ: "us-east-1a", Volumes: []messages.Volume{vol},
		Dirs: &messages.NodeDirs{Data: []string{data}}}

	// The backup: its snapshot in EC2, and the snapshot's file system (the
	// tag's files, rows "A") on a block device.
	job := messages.JobIDFor("c1", "backup-ebs")
	tag := "quiesce-" + job
	snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: node.Volumes,
		Tags: map[string]string{messages.TagManaged: "true", messages.TagCluster: "c1", messages.TagJob: job, messages.TagTask: job + ".snapshot." + vol.ID}})
	require.NoError(t, err)
	content := t.TempDir()
	snapDir := filepath.Join(content, "data", "ks", "t-1", "snapshots", tag)
	require.NoError(t, os.MkdirAll(snapDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(snapDir, "nb-1-big-Data.db"), []byte("A of n1"), 0o644))
	dev := blockdev.Ext4(t, content)
	// The live node after the barrier: rows "B" only.
	require.NoError(t, os.MkdirAll(filepath.Join(data, "ks", "t-1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "ks", "t-1", "nb-2-big-Data.db"), []byte("B of n1"), 0o644))

	b := messages.Backup{Schema: messages.BackupSchema, JobID: job, Cluster: "c1", Mode: messages.ModeApplication, Tag: tag,
		FinishedAt: time.Now(), Nodes: []messages.Node{node}, NodeCount: 1, SnapshotCount: 1,
		Snapshots: []messages.SnapshotRef{{SnapshotID: snaps[0].ID, VolumeID: vol.ID, Node: "n1", State: "completed"}},
		Topology: &messages.Topology{ClusterName: "Test Cluster", SchemaVersion: "sv",
			Nodes:   []messages.NodeFacts{{Schema: messages.NodeFactsSchema, Node: "n1", HostID: "h1", Tokens: []string{"1000"}, Dirs: messages.NodeDirs{Data: []string{data}}}},
			Volumes: []messages.VolumeFacts{{VolumeID: vol.ID, AZ: "us-east-1a", SizeGiB: 10, Type: "gp3"}}}}
	env := testenv.New(t, topology.Options{AckWait: 3 * time.Second})
	rec, err := json.Marshal(b)
	require.NoError(t, err)
	_, err = env.H.Catalog.Put(t.Context(), messages.CatalogKey("c1", job), rec)
	require.NoError(t, err)

	runner := &local.Runner{}
	nr := noderestore.New(runner, nodetool.New(runner, nodetool.Settings{Base: []string{"false"}}), stoppedService{}, noderestore.Settings{})
	// The cluster is found by discovery, as EBS clusters usually are: no
	// static nodes in the inventory.
	inv := planner.Inventory{Clusters: []planner.Cluster{{Name: "c1", Snapshotter: planner.SnapshotterEBS}}}
	st := stack.New(t, env, stack.Config{
		Planner:     planner.PlannerConfig{Inventory: inv, Discoverer: foundNodes{node}},
		Coordinator: planner.CoordinatorConfig{SweepInterval: 200 * time.Millisecond, StallAfter: time.Second},
		Worker:      worker.Config{BackoffBase: 50 * time.Millisecond, BackoffMax: time.Second, Heartbeat: time.Second},
		Drivers:     ebsRestoreDrivers{snap: d, nodes: filesOnlyRestorer{drivers.NodeRestore(nr)}},
	})
	_, err = st.StartPlanner()
	require.NoError(t, err)
	_, err = st.StartCoordinator()
	require.NoError(t, err)
	_, err = st.StartWorker(nil)
	require.NoError(t, err)

	// udev, on the node: the restored volume's NVMe link appears once EC2
	// has attached it.
	req := messages.RestoreRequest{Schema: messages.RestoreRequestSchema, RequestID: "ebs-in-place", Cluster: "c1", Backup: "latest",
		Target: messages.TargetInPlace}
	id := req.RestoreID()
	var udev sync.WaitGroup
	udev.Add(1)
	go func() {
		defer udev.Done()
		_ = testenv.Eventually(restoreTimeout, func() bool {
			out, err := raw.DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{Filters: []types.Filter{
				{Name: aws.String("tag:" + messages.TagRestore), Values: []string{id}}}})
			if err != nil || len(out.Volumes) == 0 || len(out.Volumes[0].Attachments) == 0 {
				return false
			}
			made := aws.ToString(out.Volumes[0].VolumeId)
			return os.Symlink(dev, filepath.Join(links, "nvme-Amazon_Elastic_Block_Store_"+strings.ReplaceAll(made, "-", ""))) == nil
		})
	}()
	t.Cleanup(udev.Wait)
	data2, err := json.Marshal(req)
	require.NoError(t, err)
	_, err = env.JS.Publish(t.Context(), messages.SubjectRestoreSubmit, data2)
	require.NoError(t, err)

	var r messages.Restore
	require.NoError(t, testenv.Eventually(restoreTimeout, func() bool {
		r, err = planner.LoadRestore(t.Context(), env.H, id)
		return err == nil && r.Phase.Terminal()
	}), "restore %s did not end: %+v", id, r)
	require.Equal(t, messages.RestoreSucceeded, r.Phase, r.Error)

	got, err := os.ReadFile(filepath.Join(data, "ks", "t-1", "nb-1-big-Data.db"))
	require.NoError(t, err)
	require.Equal(t, "A of n1", string(got), "the backup's file, copied from the mounted volume")
	_, err = os.Stat(filepath.Join(data, "ks", "t-1", "snapshots", noderestore.AsideName(id), "nb-2-big-Data.db"))
	require.NoError(t, err, "the post-barrier file is kept aside")
	mounts, err := os.ReadFile("/proc/mounts")
	require.NoError(t, err)
	require.NotContains(t, string(mounts), root, "nothing is left mounted")

	out, err := raw.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + messages.TagRestore), Values: []string{id}}}})
	require.NoError(t, err)
	for _, v := range out.Volumes {
		require.Equal(t, types.VolumeStateDeleted, v.State, "the restored volume is released")
	}
	mine, err := raw.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{VolumeIds: []string{vol.ID}})
	require.NoError(t, err)
	require.Len(t, mine.Volumes[0].Attachments, 1, "the node's own volume stays attached")
	_, err = raw.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snaps[0].ID}})
	require.NoError(t, err, "the snapshot stays")
}
