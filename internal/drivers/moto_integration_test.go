//go:build integration

package drivers_test

import (
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/internal/testkit/mototest"
)

// launchIn runs one instance in region carrying tags, with a data volume at
// /dev/sdf, and returns its ID.
func launchIn(t *testing.T, endpoint, region string, tags map[string]string) string {
	t.Helper()
	ctx := t.Context()
	c := ec2.New(ec2.Options{Region: region, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(mototest.AccessKeyID, mototest.SecretAccessKey, "")})
	imgs, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	require.NoError(t, err)
	require.NotEmpty(t, imgs.Images)
	var ts []types.Tag
	for k, v := range tags {
		ts = append(ts, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	run, err := c.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: imgs.Images[0].ImageId, InstanceType: types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: ts}},
	})
	require.NoError(t, err)
	in := run.Instances[0]
	v, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: in.Placement.AvailabilityZone, Size: aws.Int32(10)})
	require.NoError(t, err)
	_, err = c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: v.VolumeId, InstanceId: in.InstanceId, Device: aws.String("/dev/sdf")})
	require.NoError(t, err)
	return aws.ToString(in.InstanceId)
}

// A cluster whose data centres are in two regions is discovered data centre
// by data centre, each in its region, and every node says where it is.
func TestMotoDiscoverDataCentresInTheirRegions(t *testing.T) {
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": mototest.AccessKeyID, "AWS_SECRET_ACCESS_KEY": mototest.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	} {
		t.Setenv(k, v)
	}
	m := mototest.Start(t)
	east := launchIn(t, m.URL, "us-east-1", map[string]string{"Name": "cass-e1", "cluster": "orders", "dc": "east"})
	west := launchIn(t, m.URL, "us-west-2", map[string]string{"Name": "cass-w1", "cluster": "orders", "dc": "west"})
	launchIn(t, m.URL, "us-west-2", map[string]string{"Name": "other", "cluster": "billing", "dc": "west"})

	sel := func(dc string) *config.Discovery {
		return &config.Discovery{InstanceTags: map[string]string{"cluster": "orders", "dc": dc}, Devices: []string{"/dev/sdf"}}
	}
	cfg := &config.Config{Clusters: []config.Cluster{{
		Name: "orders", Region: "us-east-1", EBS: config.EBS{Endpoint: m.URL},
		DataCenters: []config.DataCenter{{Name: "east", Discovery: sel("east")}, {Name: "west", Region: "us-west-2", Discovery: sel("west")}},
	}}}
	require.NoError(t, cfg.Validate())
	reg := drivers.New(cfg, drivers.Env{Ctx: t.Context(), Log: zerolog.Nop()})
	t.Cleanup(func() { require.NoError(t, reg.Close()) })
	nodes, err := reg.Discover(t.Context(), drivers.Cluster(cfg.Clusters[0]))
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	require.Equal(t, "cass-e1", nodes[0].Name)
	require.Equal(t, east, nodes[0].InstanceID)
	require.Equal(t, "east", nodes[0].DC)
	require.Equal(t, "us-east-1", nodes[0].Region)
	require.Equal(t, "cass-w1", nodes[1].Name)
	require.Equal(t, west, nodes[1].InstanceID)
	require.Equal(t, "west", nodes[1].DC)
	require.Equal(t, "us-west-2", nodes[1].Region)
	require.Len(t, nodes[1].Volumes, 1)
}
