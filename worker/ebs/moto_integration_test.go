//go:build integration

package ebs

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/mototest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

const (
	motoRegion  = "us-east-1"
	otherRegion = "us-west-2"
)

// motoBundle is one moto server with a counting (and, on demand, throttling)
// proxy in front, and a raw EC2 client for fixtures that bypasses the proxy.
type motoBundle struct {
	moto  *mototest.Server
	proxy *mototest.Throttle
	raw   *ec2.Client
	ami   string

	mu     sync.Mutex
	errors map[string]int // "op code" -> failed attempts seen by OnAPIError
}

func setupMoto(t *testing.T) *motoBundle {
	t.Helper()
	m := mototest.Start(t)
	b := &motoBundle{moto: m, proxy: mototest.NewThrottle(t, m.URL), errors: map[string]int{}}
	// Fixtures go straight to moto, past the proxy and its counters.
	raw, err := New(t.Context(), Config{Cluster: "fixtures", Region: motoRegion, Endpoint: m.URL}, Options{})
	require.NoError(t, err)
	b.raw = raw.c.home()
	imgs, err := b.raw.DescribeImages(t.Context(), &ec2.DescribeImagesInput{})
	require.NoError(t, err)
	require.NotEmpty(t, imgs.Images, "moto has no AMIs")
	b.ami = aws.ToString(imgs.Images[0].ImageId)
	return b
}

// options are fast retries plus an OnAPIError that records into the bundle.
func (b *motoBundle) options() Options {
	o := fastOptions()
	o.MaxAttempts = 10
	o.OnAPIError = func(op, code string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.errors[op+" "+code]++
	}
	return o
}

func (b *motoBundle) apiErrors(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errors[key]
}

func (b *motoBundle) cluster(name string) Config {
	return Config{Cluster: name, Region: motoRegion, Endpoint: b.proxy.URL}
}

// discovery selects the instances launched for cluster name.
func discovery(name string) Discovery {
	return Discovery{InstanceTags: map[string]string{"quiesce-cluster": name}}
}

func (b *motoBundle) driver(t *testing.T, cl Config) *Driver {
	t.Helper()
	d, err := New(t.Context(), cl, b.options())
	require.NoError(t, err)
	return d
}

type dataVolume struct {
	device string
	tags   map[string]string
}

// rawIn is a fixtures client for another region.
func (b *motoBundle) rawIn(t *testing.T, region string) *ec2.Client {
	t.Helper()
	raw, err := New(t.Context(), Config{Cluster: "fixtures", Region: region, Endpoint: b.moto.URL}, Options{})
	require.NoError(t, err)
	return raw.c.home()
}

// launch runs one instance (its own reservation, so DescribeInstances pages
// by it) with the given tags and attaches data volumes.
func (b *motoBundle) launch(t *testing.T, tags map[string]string, vols ...dataVolume) messages.Node {
	t.Helper()
	return b.launchWith(t, b.raw, tags, vols...)
}

// launchWith launches with a fixtures client of the region to launch in.
func (b *motoBundle) launchWith(t *testing.T, raw *ec2.Client, tags map[string]string, vols ...dataVolume) messages.Node {
	t.Helper()
	ctx := t.Context()
	ami := b.ami
	if raw != b.raw {
		imgs, err := raw.DescribeImages(ctx, &ec2.DescribeImagesInput{})
		require.NoError(t, err)
		require.NotEmpty(t, imgs.Images, "moto has no AMIs")
		ami = aws.ToString(imgs.Images[0].ImageId)
	}
	run, err := raw.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String(ami), InstanceType: types.InstanceTypeT3Micro,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: ec2Tags(tags)}},
	})
	require.NoError(t, err)
	in := run.Instances[0]
	node := messages.Node{
		Name:       aws.ToString(in.InstanceId),
		InstanceID: aws.ToString(in.InstanceId),
		Address:    aws.ToString(in.PrivateIpAddress),
		AZ:         aws.ToString(in.Placement.AvailabilityZone),
	}
	for _, v := range vols {
		cv, err := raw.CreateVolume(ctx, &ec2.CreateVolumeInput{
			AvailabilityZone: aws.String(node.AZ), Size: aws.Int32(10), VolumeType: types.VolumeTypeGp3,
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: ec2Tags(v.tags)}},
		})
		require.NoError(t, err)
		_, err = raw.AttachVolume(ctx, &ec2.AttachVolumeInput{
			VolumeId: cv.VolumeId, InstanceId: in.InstanceId, Device: aws.String(v.device),
		})
		require.NoError(t, err)
		node.Volumes = append(node.Volumes, messages.Volume{ID: aws.ToString(cv.VolumeId), Device: v.device, Tags: v.tags})
	}
	return node
}

func ec2Tags(m map[string]string) []types.Tag {
	var out []types.Tag
	for k, v := range m {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if len(out) == 0 {
		out = []types.Tag{{Key: aws.String("fixture"), Value: aws.String("yes")}}
	}
	return out
}

// snapshotTags are what the planner puts on a snapshot task.
func snapshotTags(cluster, job, node, target string) map[string]string {
	return map[string]string{
		messages.TagManaged: "true",
		messages.TagCluster: cluster,
		messages.TagJob:     job,
		messages.TagNode:    node,
		messages.TagTask:    messages.TaskID(job, messages.KindSnapshot, target),
		messages.TagPolicy:  "default",
		messages.TagName:    "quiesce " + job + " " + node,
	}
}

func TestMotoDiscoverByTagsOverPages(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	data := dataVolume{device: "/dev/sdf", tags: map[string]string{"role": "data", "team": "db"}}
	logs := dataVolume{device: "/dev/sdg", tags: map[string]string{"role": "logs"}}
	want := map[string]messages.Node{}
	for i := range 7 {
		name := fmt.Sprintf("cass-%d", i)
		tag := name
		if i == 3 {
			tag = "cass 3/prod" // sanitized
			name = "cass-3-prod"
		}
		n := b.launch(t, map[string]string{"quiesce-cluster": "c1", "Name": tag}, data, logs)
		n.Name = name
		n.Volumes = n.Volumes[:1]
		want[name] = n
	}
	// Two instances sharing a Name are told apart by instance ID; one with
	// no Name is named by its ID.
	for range 2 {
		n := b.launch(t, map[string]string{"quiesce-cluster": "c1", "Name": "twin"}, data)
		want[n.InstanceID] = n
	}
	n := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, data)
	want[n.InstanceID] = n
	// Not ours: another cluster, and a stopped instance of ours.
	b.launch(t, map[string]string{"quiesce-cluster": "c2", "Name": "other"}, data)
	stopped := b.launch(t, map[string]string{"quiesce-cluster": "c1", "Name": "stopped"}, data)
	_, err := b.raw.StopInstances(t.Context(), &ec2.StopInstancesInput{InstanceIds: []string{stopped.InstanceID}})
	require.NoError(t, err)

	cl, sel := b.cluster("c1"), discovery("c1")
	sel.VolumeTags = map[string]string{"role": "data"}
	opts := b.options()
	opts.PageSize = 5
	nodes, err := NewDiscoverer(opts).Discover(t.Context(), cl, sel)
	require.NoError(t, err)

	require.Len(t, nodes, len(want))
	require.GreaterOrEqual(t, b.proxy.Seen("DescribeInstances"), 2, "more than one page")
	for _, got := range nodes {
		require.NoError(t, messages.ValidateTarget("name", got.Name))
		w, ok := want[got.Name]
		require.True(t, ok, "unexpected node %s", got.Name)
		require.Equal(t, w.InstanceID, got.InstanceID)
		require.Equal(t, w.Address, got.Address)
		require.NotEmpty(t, got.Address)
		require.Equal(t, w.AZ, got.AZ)
		require.Len(t, got.Volumes, 1, "root and logs volumes are not selected")
		require.Equal(t, w.Volumes[0].ID, got.Volumes[0].ID)
		require.Equal(t, "/dev/sdf", got.Volumes[0].Device)
		require.Equal(t, "db", got.Volumes[0].Tags["team"])
	}

	// By device instead: both data volumes, still no root.
	sel.VolumeTags = nil
	sel.Devices = []string{"sdf", "/dev/sdg"}
	nodes, err = NewDiscoverer(opts).Discover(t.Context(), cl, sel)
	require.NoError(t, err)
	require.Len(t, nodes[0].Volumes, 2)

	// A node with nothing to back up is an error, not a silent gap.
	sel.Devices = []string{"/dev/sdz"}
	_, err = NewDiscoverer(opts).Discover(t.Context(), cl, sel)
	require.ErrorContains(t, err, "no data volume")
}

func TestMotoPerVolumeSnapshotTagged(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"},
		dataVolume{device: "/dev/sdf", tags: map[string]string{"team": "db", "Name": "vol-name", "aws:reserved": "x"}})
	cl := b.cluster("c1")
	cl.CopyVolumeTags = true
	d := b.driver(t, cl)
	job := "c1-000000000001"
	tags := snapshotTags("c1", job, node.Name, node.Volumes[0].ID)

	snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: node.Volumes, Tags: tags})
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	require.Equal(t, node.Volumes[0].ID, snaps[0].VolumeID)

	found, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.Equal(t, snaps[0].ID, found[0].ID)
	for k, v := range tags {
		require.Equal(t, v, found[0].Tags[k], "tag %s", k)
	}
	require.Equal(t, "db", found[0].Tags["team"], "volume tag copied")
	require.NotContains(t, found[0].Tags, "aws:reserved")

	p, _, err := d.JobProgress(t.Context(), job)
	require.NoError(t, err)
	require.Equal(t, 1, p.Total)
	require.NoError(t, p.Err())
}

func TestMotoPerInstanceSet(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"},
		dataVolume{device: "/dev/sdf"}, dataVolume{device: "/dev/sdg"})
	cl := b.cluster("c1")
	cl.PerInstance = true
	d := b.driver(t, cl)
	job := "c1-000000000002"
	tags := snapshotTags("c1", job, node.Name, node.Name)

	snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: node.Volumes, Tags: tags})
	require.NoError(t, err)
	require.Len(t, snaps, 2, "one snapshot per data volume, root excluded")
	require.ElementsMatch(t, []string{node.Volumes[0].ID, node.Volumes[1].ID}, []string{snaps[0].VolumeID, snaps[1].VolumeID})
	require.Positive(t, b.proxy.Seen("CreateSnapshots"), "one crash-consistent set")
	require.Zero(t, b.proxy.Seen("CreateSnapshot"), "never a volume alone")

	found, err := d.Find(t.Context(), map[string]string{messages.TagTask: tags[messages.TagTask]})
	require.NoError(t, err)
	require.Len(t, found, 2)
	for _, s := range found {
		for k, v := range tags {
			require.Equal(t, v, s.Tags[k], "tag %s on %s", k, s.ID)
		}
	}

	// Redelivered: the runtime hands over what it found; nothing new.
	again, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: node.Volumes, Tags: tags, Existing: found})
	require.NoError(t, err)
	require.Equal(t, ids(snaps), ids(again))
	found, err = d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.ElementsMatch(t, ids(snaps), ids(found), "the set was not taken again")
}

// TestMotoIdempotentRedelivery: a worker creates the snapshot and dies before
// it acks; the task is redelivered to another worker, which finds the
// snapshot by the task tag (the runtime's one look-up) and so asks Create for
// nothing. Exactly one snapshot exists.
func TestMotoIdempotentRedelivery(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	cl := b.cluster("c1")
	job := "c1-000000000003"
	tags := snapshotTags("c1", job, node.Name, node.Volumes[0].ID)
	req := worker.CreateRequest{Node: node, Volumes: node.Volumes, Tags: tags}

	first := b.driver(t, cl)
	created, err := first.Create(t.Context(), req)
	require.NoError(t, err)
	// ...the worker is killed here: no ack, no result event.

	second := b.driver(t, cl) // another worker process
	found, err := second.Find(t.Context(), map[string]string{messages.TagTask: tags[messages.TagTask]})
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.Equal(t, created[0].ID, found[0].ID)
	require.Equal(t, motoRegion, found[0].Region)
	require.Equal(t, node.Volumes[0].ID, found[0].VolumeID, "nothing missing: no Create")

	all, err := second.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, all, 1, "one snapshot for the task")
}

// TestMotoTwoRegionCluster: a cluster whose data centres are in two regions
// snapshots each node where it is, finds and retires its snapshots in both,
// and copies each from its own region.
func TestMotoTwoRegionCluster(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	east := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	east.DC, east.Region = "dc-east", motoRegion
	westRaw := b.rawIn(t, otherRegion)
	west := b.launchWith(t, westRaw, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	west.DC, west.Region = "dc-west", otherRegion
	cl := b.cluster("c1")
	cl.DataCenters = []DataCenter{{Name: "dc-east", Region: motoRegion}, {Name: "dc-west", Region: otherRegion}}
	cl.CopyRegions = []string{otherRegion}
	d := b.driver(t, cl)
	job := "c1-00000000000a"
	for _, n := range []messages.Node{east, west} {
		tags := snapshotTags("c1", job, n.Name, n.Volumes[0].ID)
		tags[messages.TagDC] = n.DC
		snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: n, Volumes: n.Volumes, Tags: tags})
		require.NoError(t, err)
		require.Equal(t, n.Region, snaps[0].Region)
		mine, err := d.Find(t.Context(), map[string]string{messages.TagTask: tags[messages.TagTask], messages.TagDC: n.DC})
		require.NoError(t, err)
		require.Equal(t, ids(snaps), ids(mine), "found in its data centre's region")
	}
	all, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, all, 2)
	regions := map[string]string{}
	for _, s := range all {
		regions[s.VolumeID] = s.Region
	}
	require.Equal(t, map[string]string{east.Volumes[0].ID: motoRegion, west.Volumes[0].ID: otherRegion}, regions)

	// us-west-2 is a copy region and a data centre's: only the east
	// snapshot is copied there, and only copies are deleted as copies.
	copies, err := d.CopyJob(t.Context(), job)
	require.NoError(t, err)
	require.Len(t, copies, 1)
	require.Equal(t, otherRegion, copies[0].Region)
	deleted, err := d.DeleteCopies(t.Context(), job)
	require.NoError(t, err)
	require.Equal(t, ids(copies), deleted)

	for _, s := range all {
		require.NoError(t, d.DeleteIn(t.Context(), s.Region, s.ID))
	}
	left, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Empty(t, left)
}

func TestMotoCopyToSecondRegion(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	d := b.driver(t, b.cluster("c1"))
	job := "c1-000000000004"
	tags := snapshotTags("c1", job, node.Name, node.Volumes[0].ID)
	snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: node.Volumes, Tags: tags})
	require.NoError(t, err)

	cp, err := d.CopyTo(t.Context(), snaps[0].ID, otherRegion)
	require.NoError(t, err)
	require.NotEqual(t, snaps[0].ID, cp.ID)

	west := d.c.region(otherRegion)
	got, err := d.find(t.Context(), west, map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, cp.ID, got[0].ID)
	for k, v := range tags {
		require.Equal(t, v, got[0].Tags[k], "tag %s carried", k)
	}
	require.Equal(t, snaps[0].ID, got[0].Tags[TagCopyOf])

	// The home region still has only the original.
	home, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, home, 1)

	// A repeated copy task finds its copy.
	again, err := d.CopyTo(t.Context(), snaps[0].ID, otherRegion)
	require.NoError(t, err)
	require.Equal(t, cp.ID, again.ID)
	got, err = d.find(t.Context(), west, map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, got, 1, "copied once")

	_, err = d.CopyTo(t.Context(), snaps[0].ID, motoRegion)
	require.True(t, errclass.IsPermanent(err))
}

func TestMotoGuardedDelete(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	d := b.driver(t, b.cluster("c1"))

	// Somebody else's snapshot of the same volume.
	theirs, err := b.raw.CreateSnapshot(t.Context(), &ec2.CreateSnapshotInput{
		VolumeId: aws.String(node.Volumes[0].ID),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSnapshot,
			Tags: ec2Tags(map[string]string{"Name": "theirs", messages.TagJob: "c1-000000000005"})}},
	})
	require.NoError(t, err)
	err = d.Delete(t.Context(), aws.ToString(theirs.SnapshotId))
	require.ErrorIs(t, err, worker.ErrNotManaged)
	require.True(t, errclass.IsPermanent(err))
	require.Zero(t, b.proxy.Seen("DeleteSnapshot"), "never asked EC2 to delete it")
	still, err := b.raw.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{aws.ToString(theirs.SnapshotId)}})
	require.NoError(t, err)
	require.Len(t, still.Snapshots, 1)

	ours, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: node.Volumes,
		Tags: snapshotTags("c1", "c1-000000000005", node.Name, node.Volumes[0].ID)})
	require.NoError(t, err)
	require.NoError(t, d.Delete(t.Context(), ours[0].ID))
	gone, err := d.Find(t.Context(), map[string]string{messages.TagManaged: "true"})
	require.NoError(t, err)
	require.Empty(t, gone)
	require.ErrorIs(t, d.Delete(t.Context(), ours[0].ID), worker.ErrSnapshotGone, "already gone says so")
}

// TestMotoThrottledCreateRetried: EC2 answers RequestLimitExceeded to the
// first four CreateSnapshot calls; the SDK retries with backoff and the task
// succeeds, with every throttle counted by the proxy and by OnAPIError.
func TestMotoThrottledCreateRetried(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	d := b.driver(t, b.cluster("c1"))
	b.proxy.Only("CreateSnapshot").First(4)

	job := "c1-000000000006"
	snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: node.Volumes,
		Tags: snapshotTags("c1", job, node.Name, node.Volumes[0].ID)})
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	require.Equal(t, 4, b.proxy.Throttled())
	require.Equal(t, 4, b.apiErrors("CreateSnapshot RequestLimitExceeded"))
	all, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, all, 1, "throttled attempts created nothing")
}

// TestMotoThrottleWindow: throttling for a while rather than a count.
func TestMotoThrottleWindow(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	opts := b.options()
	opts.MaxAttempts = 200
	opts.RetryQuota = -1
	opts.RetryBaseDelay = 10 * time.Millisecond
	opts.MaxBackoff = 20 * time.Millisecond
	d, err := New(t.Context(), b.cluster("c1"), opts)
	require.NoError(t, err)
	b.proxy.Only("CreateSnapshot").For(300 * time.Millisecond)

	snaps, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: node.Volumes,
		Tags: snapshotTags("c1", "c1-000000000007", node.Name, node.Volumes[0].ID)})
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	require.Positive(t, b.proxy.Throttled())
	require.Equal(t, b.proxy.Throttled(), b.apiErrors("CreateSnapshot RequestLimitExceeded"))
}

// TestMotoRetryQuotaUnderSustainedThrottle: with EC2 throttling without end,
// the retry quota runs dry and the call fails fast, classified as a delayed
// task retry, instead of every call spending all its attempts. Once EC2
// recovers the next call succeeds on its first attempt, quota or not.
func TestMotoRetryQuotaUnderSustainedThrottle(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"})
	opts := b.options()
	opts.MaxAttempts = 50
	opts.RetryQuota = 10 // two throttled retries' worth
	d, err := New(t.Context(), b.cluster("c1"), opts)
	require.NoError(t, err)
	b.proxy.Only("CreateSnapshot").Always()
	req := worker.CreateRequest{Node: node, Volumes: node.Volumes,
		Tags: snapshotTags("c1", "c1-000000000008", node.Name, node.Volumes[0].ID)}

	_, err = d.Create(t.Context(), req)
	require.Error(t, err)
	require.Equal(t, CodeRetryQuotaExceeded, errclass.Code(err))
	delay, ok := errclass.Delay(err)
	require.True(t, ok)
	require.GreaterOrEqual(t, delay, 15*time.Second)
	require.Equal(t, 3, b.proxy.Throttled(), "first attempt plus two retries, not 50")

	_, err = d.Create(t.Context(), req)
	require.Equal(t, CodeRetryQuotaExceeded, errclass.Code(err))
	require.Equal(t, 4, b.proxy.Throttled(), "an empty bucket fails on the first throttle")

	b.proxy.Off()
	snaps, err := d.Create(t.Context(), req)
	require.NoError(t, err)
	require.Len(t, snaps, 1)
}

// TestMotoAssumeRole: a cluster with role_arn reaches EC2 with credentials
// from STS AssumeRole (moto's STS on the same endpoint).
func TestMotoAssumeRole(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	b.launch(t, map[string]string{"quiesce-cluster": "c1", "Name": "n1"}, dataVolume{device: "/dev/sdf"})
	cl := b.cluster("c1")
	cl.RoleARN = "arn:aws:iam::123456789012:role/quiesce-backup"
	opts := b.options()
	opts.STSEndpoint = b.proxy.URL
	nodes, err := NewDiscoverer(opts).Discover(t.Context(), cl, discovery("c1"))
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	require.Equal(t, "n1", nodes[0].Name)
	require.Positive(t, b.proxy.Seen("AssumeRole"), "credentials came from STS")
}

func ids(snaps []worker.Snapshot) []string {
	out := make([]string, 0, len(snaps))
	for _, s := range snaps {
		out = append(out, s.ID)
	}
	return out
}

// TestMotoCopyJobAndDeleteCopies: a job's snapshots are copied to each copy
// region once, however often the copy runs, and the copies are retired with
// the same guards as the originals.
func TestMotoCopyJobAndDeleteCopies(t *testing.T) {
	t.Parallel()
	b := setupMoto(t)
	node := b.launch(t, map[string]string{"quiesce-cluster": "c1"}, dataVolume{device: "/dev/sdf"}, dataVolume{device: "/dev/sdg"})
	cl := b.cluster("c1")
	cl.CopyRegions = []string{otherRegion, "eu-west-1"}
	d := b.driver(t, cl)
	job := "c1-000000000009"
	for _, v := range node.Volumes {
		_, err := d.Create(t.Context(), worker.CreateRequest{Node: node, Volumes: []messages.Volume{v},
			Tags: snapshotTags("c1", job, node.Name, v.ID)})
		require.NoError(t, err)
	}

	copies, err := d.CopyJob(t.Context(), job)
	require.NoError(t, err)
	require.Len(t, copies, 4)
	again, err := d.CopyJob(t.Context(), job)
	require.NoError(t, err)
	require.Equal(t, ids(copies), ids(again))
	for _, region := range cl.CopyRegions {
		got, err := d.find(t.Context(), d.c.region(region), map[string]string{messages.TagJob: job})
		require.NoError(t, err)
		require.Len(t, got, 2, region)
	}

	deleted, err := d.DeleteCopies(t.Context(), job)
	require.NoError(t, err)
	require.ElementsMatch(t, ids(copies), deleted)
	for _, region := range cl.CopyRegions {
		got, err := d.find(t.Context(), d.c.region(region), map[string]string{messages.TagJob: job})
		require.NoError(t, err)
		require.Empty(t, got, region)
	}
	home, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, home, 2, "the originals are not copies")
}
