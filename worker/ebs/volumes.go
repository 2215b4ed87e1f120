package ebs

import (
	"context"
	"maps"
	"slices"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
)

var _ worker.VolumeDescriber = (*Driver)(nil)

// DescribeVolumes says what the volumes of snaps are, for the catalog: AZ,
// size, type, IOPS, throughput, encryption and KMS key, and the instance
// and device each is attached to (EC2 DescribeVolumes, by volume ID, in
// batches). A volume EC2 no longer knows is described from its snapshot
// (size, encryption, KMS key).
func (d *Driver) DescribeVolumes(ctx context.Context, snaps []worker.Snapshot) ([]messages.VolumeFacts, error) {
	bySnap := map[string]worker.Snapshot{}
	var ids []string
	for _, s := range snaps {
		if _, ok := bySnap[s.VolumeID]; !ok && s.VolumeID != "" {
			ids = append(ids, s.VolumeID)
		}
		bySnap[s.VolumeID] = s
	}
	sort.Strings(ids)
	// A volume is described in its snapshot's region (a cluster's data
	// centres may be in several).
	byRegion := map[string][]string{}
	for _, id := range ids {
		r := bySnap[id].Region
		byRegion[r] = append(byRegion[r], id)
	}
	found := map[string]messages.VolumeFacts{}
	for _, region := range slices.Sorted(maps.Keys(byRegion)) {
		if err := d.describeVolumesIn(ctx, region, byRegion[region], found); err != nil {
			return nil, err
		}
	}
	out := make([]messages.VolumeFacts, 0, len(ids))
	for _, id := range ids {
		f, ok := found[id]
		if !ok {
			s := bySnap[id]
			f = messages.VolumeFacts{VolumeID: id, SizeGiB: s.VolumeSize, Encrypted: s.Encrypted, KMSKeyID: s.KMSKeyID}
		}
		f.Node = bySnap[id].Tags[messages.TagNode]
		out = append(out, f)
	}
	return out, nil
}

// describeVolumesIn describes ids, volumes of region ("": the cluster's
// own), into found.
func (d *Driver) describeVolumesIn(ctx context.Context, region string, ids []string, found map[string]messages.VolumeFacts) error {
	client := d.c.home()
	if region != "" {
		client = d.c.client(d.regionLocation(region))
	}
	for batch := range slices.Chunk(ids, volumeBatch) {
		p := ec2.NewDescribeVolumesPaginator(client, &ec2.DescribeVolumesInput{
			Filters:    []types.Filter{{Name: aws.String("volume-id"), Values: batch}},
			MaxResults: aws.Int32(min(d.opts.pageSize(), 500)),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return classify("DescribeVolumes", err)
			}
			for _, v := range page.Volumes {
				f := messages.VolumeFacts{
					VolumeID: aws.ToString(v.VolumeId), AZ: aws.ToString(v.AvailabilityZone), SizeGiB: aws.ToInt32(v.Size),
					Type: string(v.VolumeType), IOPS: aws.ToInt32(v.Iops), Throughput: aws.ToInt32(v.Throughput),
					Encrypted: aws.ToBool(v.Encrypted), KMSKeyID: aws.ToString(v.KmsKeyId),
				}
				if len(v.Attachments) > 0 {
					f.InstanceID = aws.ToString(v.Attachments[0].InstanceId)
					f.Device = aws.ToString(v.Attachments[0].Device)
				}
				found[f.VolumeID] = f
			}
		}
	}
	return nil
}
