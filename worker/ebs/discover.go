package ebs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/quiesce/quiesce/messages"
)

// volumeBatch bounds the instance IDs in one DescribeVolumes filter; EC2
// accepts up to 200 values per filter.
const volumeBatch = 100

// Discoverer finds a cluster's nodes and their data volumes in EC2. It keeps
// one set of clients per cluster, built on first use.
type Discoverer struct {
	opts Options

	mu      sync.Mutex
	clients map[string]*clients
}

// NewDiscoverer returns a Discoverer. It makes no call to AWS.
func NewDiscoverer(opts Options) *Discoverer {
	return &Discoverer{opts: opts, clients: map[string]*clients{}}
}

func (d *Discoverer) client(ctx context.Context, conf Config) (*ec2.Client, error) {
	// Keyed by everything that shapes the client, so a reloaded configuration
	// that changes the region or role gets a new one.
	key := strings.Join([]string{conf.Cluster, conf.Region, conf.RoleARN, conf.Endpoint}, "\x00")
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.clients[key]; ok {
		return c.home(), nil
	}
	c, err := newClients(ctx, conf, d.opts)
	if err != nil {
		return nil, err
	}
	d.clients[key] = c
	return c.home(), nil
}

// Discover returns the cluster's running instances carrying every tag of
// sel.InstanceTags, each with its selected data volumes, sorted
// by name. Volumes are selected by device name and by tag (both when both
// are given); the root volume is left out unless IncludeRoot. A node's name
// is its instance's Name tag made a valid target, or its instance ID when
// the tag is missing, unusable or shared with another instance. An instance
// with no selected volume is an error: backing up its flushed data would be
// silently impossible.
func (d *Discoverer) Discover(ctx context.Context, conf Config, sel Discovery) ([]messages.Node, error) {
	if len(sel.InstanceTags) == 0 {
		return nil, fmt.Errorf("cluster %s: discovery needs at least one instance tag", conf.Cluster)
	}
	client, err := d.client(ctx, conf)
	if err != nil {
		return nil, err
	}
	filters := tagFilters(sel.InstanceTags)
	filters = append(filters, types.Filter{Name: aws.String("instance-state-name"), Values: []string{"running"}})
	var instances []types.Instance
	p := ec2.NewDescribeInstancesPaginator(client, &ec2.DescribeInstancesInput{
		Filters:    filters,
		MaxResults: aws.Int32(d.opts.pageSize()),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, classify("DescribeInstances", err)
		}
		for _, r := range page.Reservations {
			instances = append(instances, r.Instances...)
		}
	}
	if len(instances) == 0 {
		return nil, nil
	}

	ids := make([]string, 0, len(instances))
	for _, in := range instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	byInstance := map[string][]types.Volume{}
	for batch := range slices.Chunk(ids, volumeBatch) {
		vp := ec2.NewDescribeVolumesPaginator(client, &ec2.DescribeVolumesInput{
			Filters: []types.Filter{{Name: aws.String("attachment.instance-id"), Values: batch}},
			// DescribeVolumes pages hold at most 500.
			MaxResults: aws.Int32(min(d.opts.pageSize(), 500)),
		})
		for vp.HasMorePages() {
			page, err := vp.NextPage(ctx)
			if err != nil {
				return nil, classify("DescribeVolumes", err)
			}
			for _, v := range page.Volumes {
				for _, a := range v.Attachments {
					id := aws.ToString(a.InstanceId)
					byInstance[id] = append(byInstance[id], v)
				}
			}
		}
	}

	names := map[string]int{}
	for _, in := range instances {
		if n := NodeName(tagValue(in.Tags, "Name")); n != "" {
			names[n]++
		}
	}
	nodes := make([]messages.Node, 0, len(instances))
	for _, in := range instances {
		id := aws.ToString(in.InstanceId)
		name := NodeName(tagValue(in.Tags, "Name"))
		if name == "" || names[name] > 1 {
			name = id
		}
		node := messages.Node{
			Name:       name,
			Address:    aws.ToString(in.PrivateIpAddress),
			InstanceID: id,
			Region:     client.Options().Region,
		}
		if in.Placement != nil {
			node.AZ = aws.ToString(in.Placement.AvailabilityZone)
		}
		root := aws.ToString(in.RootDeviceName)
		for _, v := range byInstance[id] {
			dev := deviceOn(v, id)
			if sameDevice(dev, root) && !sel.IncludeRoot {
				continue
			}
			tags := fromTags(v.Tags)
			if !selected(sel, dev, tags) {
				continue
			}
			for k := range tags {
				if strings.HasPrefix(k, "aws:") {
					delete(tags, k)
				}
			}
			vid := aws.ToString(v.VolumeId)
			if err := messages.ValidateTarget("volume_id", vid); err != nil {
				return nil, fmt.Errorf("cluster %s: instance %s: %w", conf.Cluster, id, err)
			}
			node.Volumes = append(node.Volumes, messages.Volume{ID: vid, Device: dev, Tags: tags})
		}
		if len(node.Volumes) == 0 {
			return nil, fmt.Errorf("cluster %s: instance %s (%s) has no data volume matching devices %v and volume tags %v",
				conf.Cluster, id, name, sel.Devices, sel.VolumeTags)
		}
		slices.SortFunc(node.Volumes, func(a, b messages.Volume) int { return strings.Compare(a.Device, b.Device) })
		nodes = append(nodes, node)
	}
	slices.SortFunc(nodes, func(a, b messages.Node) int { return strings.Compare(a.Name, b.Name) })
	return nodes, nil
}

// NodeName turns an instance's Name tag into a valid target (letters, digits,
// '-' and '_', starting with a letter or digit, at most 128 characters), or
// "" when nothing usable is left.
func NodeName(tag string) string {
	var b strings.Builder
	for _, r := range tag {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.TrimLeft(b.String(), "-_")
	if len(s) > 128 {
		s = s[:128]
	}
	s = strings.TrimRight(s, "-_")
	if messages.ValidateTarget("name", s) != nil {
		return ""
	}
	return s
}

func selected(sel Discovery, device string, tags map[string]string) bool {
	if len(sel.Devices) > 0 && !slices.ContainsFunc(sel.Devices, func(d string) bool { return sameDevice(d, device) }) {
		return false
	}
	for k, v := range sel.VolumeTags {
		if tags[k] != v {
			return false
		}
	}
	return true
}

// sameDevice compares device names with or without their /dev/ prefix.
func sameDevice(a, b string) bool {
	return strings.TrimPrefix(a, "/dev/") == strings.TrimPrefix(b, "/dev/")
}

func deviceOn(v types.Volume, instanceID string) string {
	for _, a := range v.Attachments {
		if aws.ToString(a.InstanceId) == instanceID {
			return aws.ToString(a.Device)
		}
	}
	return ""
}

func tagValue(ts []types.Tag, key string) string {
	for _, t := range ts {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}
