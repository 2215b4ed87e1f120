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

// The catalog's volumes come from EC2: what DescribeVolumes says of each
// volume of a job's snapshots, and what its snapshot says of a volume EC2
// no longer knows.
func TestMotoDescribeVolumesOfAJob(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"},
		dataVolume{device: "/dev/sdf"}, dataVolume{device: "/dev/sdg"})
	// A third volume, io2 and encrypted, on its own.
	io2, err := b.raw.CreateVolume(t.Context(), &ec2.CreateVolumeInput{
		AvailabilityZone: aws.String(node.AZ), Size: aws.Int32(100), VolumeType: types.VolumeTypeIo2, Iops: aws.Int32(4000),
		Encrypted: aws.Bool(true),
	})
	require.NoError(t, err)
	node.Volumes = append(node.Volumes, messages.Volume{ID: aws.ToString(io2.VolumeId)})
	d := b.driver(t, b.cluster("c1"))
	job := "c1-000000000007"
	var snaps []worker.Snapshot
	for _, v := range node.Volumes {
		s, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: []messages.Volume{v},
			Tags: snapshotTags("c1", job, node.Name, v.ID)})
		require.NoError(t, err)
		snaps = append(snaps, s...)
	}
	found, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, found, 3)

	vols, err := d.DescribeVolumes(t.Context(), found)
	require.NoError(t, err)
	require.Len(t, vols, 3)
	byID := map[string]messages.VolumeFacts{}
	for _, v := range vols {
		byID[v.VolumeID] = v
	}
	gp3 := byID[node.Volumes[0].ID]
	require.Equal(t, messages.VolumeFacts{VolumeID: node.Volumes[0].ID, Node: node.Name, InstanceID: node.InstanceID,
		AZ: node.AZ, SizeGiB: 10, Type: "gp3", IOPS: gp3.IOPS, Throughput: gp3.Throughput, Device: "/dev/sdf"}, gp3)
	require.Equal(t, "/dev/sdg", byID[node.Volumes[1].ID].Device)
	enc := byID[aws.ToString(io2.VolumeId)]
	require.Equal(t, "io2", enc.Type)
	require.Equal(t, int32(4000), enc.IOPS)
	require.Equal(t, int32(100), enc.SizeGiB)
	require.True(t, enc.Encrypted)

	// The volume is gone: its snapshot still says its size.
	_, err = b.raw.DeleteVolume(t.Context(), &ec2.DeleteVolumeInput{VolumeId: io2.VolumeId})
	require.NoError(t, err)
	vols, err = d.DescribeVolumes(t.Context(), found)
	require.NoError(t, err)
	for _, v := range vols {
		if v.VolumeID == aws.ToString(io2.VolumeId) {
			require.Equal(t, int32(100), v.SizeGiB)
			require.True(t, v.Encrypted)
			require.Empty(t, v.Type)
		}
	}
}
