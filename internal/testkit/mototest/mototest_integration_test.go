//go:build integration

package mototest

import (
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"
)

func TestStartAnswersAndStops(t *testing.T) {
	t.Parallel()
	s := Start(t)
	resp, err := http.Get(s.URL + "/moto-api/data.json")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s.stop()
	select {
	case <-s.exited:
	default:
		t.Fatal("moto_server still running after stop")
	}
}

// Through the proxy, the SDK reads moto's snapshots in the error state with
// the given message; straight from moto they stay completed.
func TestSnapshotsInErrorThroughTheSDK(t *testing.T) {
	t.Parallel()
	s := Start(t)
	th := NewThrottle(t, s.URL).SnapshotsInError("Snapshot failed: volume unavailable")
	client := func(endpoint string) *ec2.Client {
		return ec2.New(ec2.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
			Credentials: credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		})
	}
	ctx := t.Context()
	v, err := client(s.URL).CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1)})
	require.NoError(t, err)
	snap, err := client(th.URL).CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: v.VolumeId})
	require.NoError(t, err)
	require.Equal(t, types.SnapshotStateCompleted, snap.State)

	in := &ec2.DescribeSnapshotsInput{SnapshotIds: []string{aws.ToString(snap.SnapshotId)}}
	got, err := client(th.URL).DescribeSnapshots(ctx, in)
	require.NoError(t, err)
	require.Len(t, got.Snapshots, 1)
	require.Equal(t, types.SnapshotStateError, got.Snapshots[0].State)
	require.Equal(t, "Snapshot failed: volume unavailable", aws.ToString(got.Snapshots[0].StateMessage))

	direct, err := client(s.URL).DescribeSnapshots(ctx, in)
	require.NoError(t, err)
	require.Equal(t, types.SnapshotStateCompleted, direct.Snapshots[0].State)
}
