//go:build integration

package ebs

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
)

// A restored volume is made from its snapshot in the given AZ with the
// catalogued type and size, tagged at creation as managed, the restore's and
// the source snapshot's, and attached to the given instance; a rerun of the
// task finds it by its tag and neither creates nor attaches another.
func TestMotoRestoreVolumeCreatesTagsAttachesOnce(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	src := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	dst := b.launch(t, map[string]string{"quiesce-cluster": "c2"})
	d := b.driver(t, b.cluster("c1"))
	snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: src, Volumes: src.Volumes,
		Tags: snapshotTags("c1", "c1-000000000009", src.Name, src.Volumes[0].ID)})
	require.NoError(t, err)
	task := "c1-r0123456789ab.restore-volume." + snaps[0].ID
	v := messages.VolumeRestore{SnapshotID: snaps[0].ID, SourceVolume: src.Volumes[0].ID, AZ: dst.AZ, Type: "gp3", SizeGiB: 20,
		IOPS: 4000, Throughput: 250, InstanceID: dst.InstanceID, Device: "/dev/sdr",
		Tags: map[string]string{messages.TagManaged: "true", messages.TagCluster: "c1", messages.TagRestore: "c1-r0123456789ab",
			messages.TagSourceSnapshot: snaps[0].ID}}
	rep, err := d.RestoreVolume(t.Context(), task, v)
	require.NoError(t, err)
	require.False(t, rep.Again)
	require.Equal(t, "/dev/sdr", rep.Device)
	require.NotEmpty(t, rep.VolumeID)

	out, err := b.raw.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + messages.TagRestore), Values: []string{"c1-r0123456789ab"}}}})
	require.NoError(t, err)
	require.Len(t, out.Volumes, 1)
	vol := out.Volumes[0]
	require.Equal(t, rep.VolumeID, aws.ToString(vol.VolumeId))
	require.Equal(t, snaps[0].ID, aws.ToString(vol.SnapshotId))
	require.Equal(t, dst.AZ, aws.ToString(vol.AvailabilityZone))
	require.Equal(t, types.VolumeTypeGp3, vol.VolumeType)
	require.Equal(t, int32(20), aws.ToInt32(vol.Size))
	tags := fromTags(vol.Tags)
	require.Equal(t, "true", tags[messages.TagManaged])
	require.Equal(t, snaps[0].ID, tags[messages.TagSourceSnapshot])
	require.Equal(t, task, tags[messages.TagTask])
	require.Len(t, vol.Attachments, 1)
	require.Equal(t, dst.InstanceID, aws.ToString(vol.Attachments[0].InstanceId))
	require.Equal(t, types.VolumeAttachmentStateAttached, vol.Attachments[0].State)

	// The task again (a redelivery): the same volume, still one attachment.
	rep2, err := d.RestoreVolume(t.Context(), task, v)
	require.NoError(t, err)
	require.True(t, rep2.Again)
	require.Equal(t, rep.VolumeID, rep2.VolumeID)
	out, err = b.raw.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + messages.TagRestore), Values: []string{"c1-r0123456789ab"}}}})
	require.NoError(t, err)
	require.Len(t, out.Volumes, 1)
	require.Len(t, out.Volumes[0].Attachments, 1)

	// A volume without the managed tag is never made.
	v.Tags = map[string]string{messages.TagRestore: "x"}
	_, err = d.RestoreVolume(t.Context(), task+"-unmanaged", v)
	require.Error(t, err)
}

// The backup's copy in another region is the source when the restore names
// that region: the volume is made there, from the copy.
func TestMotoRestoreVolumeFromCopyInAnotherRegion(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	src := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	d := b.driver(t, b.cluster("c1"))
	snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: src, Volumes: src.Volumes,
		Tags: snapshotTags("c1", "c1-00000000000b", src.Name, src.Volumes[0].ID)})
	require.NoError(t, err)
	cp, err := d.CopyTo(t.Context(), snaps[0].ID, otherRegion)
	require.NoError(t, err)
	task := "c1-r00000000000b.restore-volume." + snaps[0].ID
	v := messages.VolumeRestore{SnapshotID: snaps[0].ID, SourceVolume: src.Volumes[0].ID, Region: otherRegion, AZ: otherRegion + "a",
		Tags: map[string]string{messages.TagManaged: "true", messages.TagRestore: "c1-r00000000000b"}}
	rep, err := d.RestoreVolume(t.Context(), task, v)
	require.NoError(t, err)
	out, err := d.c.region(otherRegion).DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{VolumeIds: []string{rep.VolumeID}})
	require.NoError(t, err)
	require.Len(t, out.Volumes, 1)
	require.Equal(t, cp.ID, aws.ToString(out.Volumes[0].SnapshotId), "made from the copy")
	require.Equal(t, otherRegion+"a", aws.ToString(out.Volumes[0].AvailabilityZone))
}
