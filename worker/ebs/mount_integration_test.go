//go:build integration

package ebs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/blockdev"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/noderestore"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// An EBS volume restored for a node is found by the restore's task tag,
// mounted on the node from the NVMe link of its ID, its snapshot's files
// copied into the live data directory (the post-barrier file kept aside),
// unmounted, then detached and deleted; a rerun of the release finds
// nothing left to do.
func TestMotoRestoredVolumeIsMountedCopiedAndReleased(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	n := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	links := t.TempDir()
	opts := b.options()
	opts.DeviceLinks = links
	d, err := New(t.Context(), b.cluster("c1"), opts)
	require.NoError(t, err)
	snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: n, Volumes: n.Volumes,
		Tags: snapshotTags("c1", "c1-00000000000c", n.Name, n.Volumes[0].ID)})
	require.NoError(t, err)
	const rid = "c1-r00000000000c"
	task := messages.TaskID(rid, messages.KindRestoreVolume, snaps[0].ID)
	rep, err := d.RestoreVolume(t.Context(), task, messages.VolumeRestore{SnapshotID: snaps[0].ID, SourceVolume: n.Volumes[0].ID,
		AZ: n.AZ, InstanceID: n.InstanceID, Device: "/dev/sdr",
		Tags: map[string]string{messages.TagManaged: "true", messages.TagRestore: rid, messages.TagSourceSnapshot: snaps[0].ID}})
	require.NoError(t, err)

	// The snapshot's content: the volume mounted at /var/lib/cassandra held
	// data/, with the backup's tag in a table directory.
	content := t.TempDir()
	table := filepath.Join("data", "shop", "orders-0a1b")
	require.NoError(t, os.MkdirAll(filepath.Join(content, table, "snapshots", "T"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(content, table, "snapshots", "T", "nb-1-big-Data.db"), []byte("rows of A"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(content, table, "nb-1-big-Data.db"), []byte("rows of A"), 0o644))
	dev := blockdev.Ext4(t, content)
	id, devices, err := d.AttachedVolume(t.Context(), task, "")
	require.NoError(t, err)
	require.Equal(t, rep.VolumeID, id)
	require.Equal(t, []string{nvmeLink(links, id), "/dev/sdr", "/dev/xvdr"}, devices)
	// udev's link on a Nitro instance.
	require.NoError(t, os.Symlink(dev, devices[0]))

	// The live node: a post-barrier SSTable in the same table.
	root := t.TempDir()
	live := filepath.Join(root, "data")
	require.NoError(t, os.MkdirAll(filepath.Join(live, "shop", "orders-0a1b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(live, "shop", "orders-0a1b", "nb-2-big-Data.db"), []byte("rows of B"), 0o644))
	node := messages.Node{Name: n.Name, Address: "127.0.0.1", Dirs: &messages.NodeDirs{Data: []string{live}}}
	mount := filepath.Join(root, ".quiesce-restore", rid, n.Volumes[0].ID)
	runner := &local.Runner{}
	r := noderestore.New(runner, nodetool.New(runner, nodetool.Settings{Base: []string{"false"}}), &stopped{}, noderestore.Settings{})
	spec := noderestore.Spec{RestoreID: rid, Target: noderestore.InPlace, Tag: "T",
		Sources: []noderestore.Source{{DataDir: live, From: filepath.Join(mount, "data"), Mount: mount, Devices: devices}}}
	prep, err := r.Prepare(t.Context(), node, spec)
	require.NoError(t, err)
	require.Equal(t, 1, prep.Copied)
	got, err := os.ReadFile(filepath.Join(live, "shop", "orders-0a1b", "nb-1-big-Data.db"))
	require.NoError(t, err)
	require.Equal(t, "rows of A", string(got))
	_, err = os.Stat(filepath.Join(live, "shop", "orders-0a1b", "snapshots", noderestore.AsideName(rid), "nb-2-big-Data.db"))
	require.NoError(t, err, "the post-barrier SSTable is kept aside")
	require.Error(t, exec.Command("mountpoint", "-q", mount).Run(), "unmounted once the files are in place")
	_, err = os.Stat(mount)
	require.True(t, os.IsNotExist(err), "the mount point is removed")

	require.NoError(t, d.ReleaseVolume(t.Context(), task, ""))
	out, err := b.raw.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{Filters: tagFilters(map[string]string{messages.TagTask: task})})
	require.NoError(t, err)
	for _, v := range out.Volumes {
		require.Equal(t, "deleted", string(v.State), "volume %s", aws.ToString(v.VolumeId))
	}
	require.NoError(t, d.ReleaseVolume(t.Context(), task, ""), "released already")
	_, _, err = d.AttachedVolume(t.Context(), task, "")
	require.ErrorIs(t, err, worker.ErrVolumeGone)
	// The prepare again (its result was lost): the node's record says it
	// is done, and no device is needed.
	spec.Sources[0].Devices = nil
	prep, err = r.Prepare(t.Context(), node, spec)
	require.NoError(t, err)
	require.True(t, prep.Again)
	_, err = b.raw.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{VolumeIds: []string{n.Volumes[0].ID}})
	require.NoError(t, err, "the node's own volume is untouched")
}

// stopped is a Cassandra that is not running: the file steps need no more.
type stopped struct{}

func (stopped) Running(context.Context, messages.Node) (bool, error)          { return false, nil }
func (stopped) Stop(context.Context, messages.Node) error                     { return nil }
func (stopped) Start(context.Context, messages.Node, map[string]string) error { return nil }
