// Package ebs is the EBS volume snapshot driver and the EC2 discovery of a
// cluster's nodes, on aws-sdk-go-v2.
//
// Every snapshot the driver creates is tagged at creation (TagSpecifications),
// so none ever exists without quiesce:managed and its task's tag. EC2's
// snapshot calls take no idempotency token; the task tag stands in for one:
// the worker runtime looks for snapshots carrying it (Find) and asks Create
// only for the volumes still missing, so a redelivered task never makes a
// second snapshot. Create does not look again: one DescribeSnapshots per
// snapshot task, not two, out of a budget of 20 a second per account and
// region. This relies on one delivery of a task running at a time (the
// queue's ack wait and heartbeats) and on a redelivery coming later than EC2
// takes to make a new snapshot's tags visible to DescribeSnapshots (seconds).
//
// A cluster whose data centres are in several regions (Config.DataCenters)
// has its snapshots in each of them: a node's volumes are snapshotted in its
// data centre's region, with its role, and Find looks in every region of the
// cluster (only in one when the filter names a data centre, TagDC). Every
// snapshot the driver reports says its region.
//
// With Options.Pacer every attempt of every EC2 call waits for the budget
// of its account, region and operation that the whole fleet shares, and a
// throttle cuts that budget for every process (package pace).
//
// Errors are classified by EC2 error code in one place (classify):
//
//   - RequestLimitExceeded is retried inside the SDK (Options: attempts,
//     full-jitter backoff, retry quota); if every attempt is throttled, or
//     the retry quota is empty, the task is retried after ThrottleDelay.
//   - ConcurrentSnapshotLimitExceeded and SnapshotCreationPerVolumeRateExceeded
//     are retried by the task after SnapshotRateDelay (15 s), not by the SDK.
//   - Other 4xx answers (validation, authorization, not found) are permanent.
//   - 5xx answers and transport failures are transient.
//
// Every error carries its EC2 code (errclass.Code) for bounded metric labels.
package ebs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

// TagCopyOf marks a cross-region copy with the snapshot it was copied from,
// so a repeated copy task finds its earlier copy instead of making another.
const TagCopyOf = worker.TagCopyOf

// Driver snapshots one cluster's EBS volumes.
type Driver struct {
	cfg  Config
	opts Options
	c    *clients
}

var _ worker.Snapshotter = (*Driver)(nil)

// New builds the driver for a cluster: region, role and endpoint from cfg,
// credentials from the SDK's default chain (or opts.Credentials). It makes
// no call to AWS.
func New(ctx context.Context, cfg Config, opts Options) (*Driver, error) {
	c, err := newClients(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Driver{cfg: cfg, opts: opts, c: c}, nil
}

var _ worker.RetakePacer = (*Driver)(nil)

// RetakeAfter is how long after a failed snapshot of a volume began the
// volume may be snapshotted again: EC2 asks for SnapshotRateDelay between
// snapshot calls on one volume, and counts the failed snapshot until then.
func (d *Driver) RetakeAfter() time.Duration { return SnapshotRateDelay }

// Region is the cluster's region, where snapshots are taken.
func (d *Driver) Region() string { return d.c.base.Region }

// Regions are every region the cluster's snapshots are taken in: its own
// first, then its data centres'.
func (d *Driver) Regions() []string {
	var out []string
	for _, l := range d.locations() {
		if !slices.Contains(out, l.Region) {
			out = append(out, l.Region)
		}
	}
	return out
}

// locations are where the cluster's snapshots live: its own location first,
// then each data centre's.
func (d *Driver) locations() []location {
	out := []location{d.c.homeLocation()}
	for _, dc := range d.cfg.DataCenters {
		if l := d.dcLocation(dc); !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

func (d *Driver) dcLocation(dc DataCenter) location {
	home := d.c.homeLocation()
	l := location{Region: cmp.Or(dc.Region, home.Region), RoleARN: cmp.Or(dc.RoleARN, home.RoleARN), Account: home.Account}
	if dc.Account != "" || dc.RoleARN != "" {
		l.Account = accountOf(dc.Account, dc.RoleARN)
	}
	return l
}

// dataCenter returns the location of the data centre named dc.
func (d *Driver) dataCenter(dc string) (location, bool) {
	for _, c := range d.cfg.DataCenters {
		if c.Name == dc {
			return d.dcLocation(c), true
		}
	}
	return location{}, false
}

// nodeLocation is where a node's volumes are snapshotted: its data
// centre's location, or the cluster's own in the node's region.
func (d *Driver) nodeLocation(n messages.Node) location {
	if l, ok := d.dataCenter(n.DC); ok {
		return l
	}
	if n.Region != "" {
		return d.regionLocation(n.Region)
	}
	return d.c.homeLocation()
}

// regionLocation is the cluster's location in region: the first of its
// locations there, or its own role in that region.
func (d *Driver) regionLocation(region string) location {
	for _, l := range d.locations() {
		if l.Region == region {
			return l
		}
	}
	l := d.c.homeLocation()
	l.Region = region
	return l
}

// Find returns the cluster's snapshots carrying every tag in filter, in
// every region of the cluster, or only in one data centre's when filter
// names it (TagDC). Cross-region copies (TagCopyOf) are not the cluster's
// snapshots and are left out. It pages through DescribeSnapshots with the
// largest page EC2 allows.
func (d *Driver) Find(ctx context.Context, filter map[string]string) ([]worker.Snapshot, error) {
	locs := d.locations()
	if l, ok := d.dataCenter(filter[messages.TagDC]); ok {
		locs = []location{l}
	}
	var out []worker.Snapshot
	for _, l := range locs {
		found, err := d.find(ctx, d.c.client(l), filter)
		if err != nil {
			return nil, err
		}
		for _, s := range found {
			if s.Tags[TagCopyOf] == "" {
				out = append(out, s)
			}
		}
	}
	sortSnapshots(out)
	return out, nil
}

func (d *Driver) find(ctx context.Context, client *ec2.Client, filter map[string]string) ([]worker.Snapshot, error) {
	in := &ec2.DescribeSnapshotsInput{
		OwnerIds:   []string{"self"},
		Filters:    tagFilters(filter),
		MaxResults: aws.Int32(d.opts.pageSize()),
	}
	region := client.Options().Region
	var out []worker.Snapshot
	p := ec2.NewDescribeSnapshotsPaginator(client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, classify("DescribeSnapshots", err)
		}
		for _, s := range page.Snapshots {
			snap := fromEC2(s)
			snap.Region = region
			out = append(out, snap)
		}
	}
	sortSnapshots(out)
	return out, nil
}

// Create snapshots req.Volumes in the region of the node's data centre,
// tagged at creation with req.Tags (and, when the cluster says so, each
// volume's own tags). It does not look for the task's earlier snapshots:
// the caller did (Find by its TagTask), and volumes with one in
// req.Existing are not snapshotted again; those snapshots are returned with
// the new ones. req.Fence is asked right before every create call: an
// execution that lost its task's lease creates nothing.
func (d *Driver) Create(ctx context.Context, req worker.CreateRequest) ([]worker.Snapshot, error) {
	task := req.Tags[messages.TagTask]
	if task == "" {
		return nil, permanentf("CreateSnapshot", CodeInvalidRequest, "request carries no %s tag: refusing an untraceable snapshot", messages.TagTask)
	}
	if len(req.Volumes) == 0 {
		return nil, permanentf("CreateSnapshot", CodeInvalidRequest, "task %s: no volumes to snapshot", task)
	}
	asked := map[string]bool{}
	for _, v := range req.Volumes {
		asked[v.ID] = true
	}
	have := map[string]bool{}
	var existing []worker.Snapshot
	for _, s := range req.Existing {
		if s.State != worker.StateError && asked[s.VolumeID] && !have[s.VolumeID] {
			have[s.VolumeID] = true
			existing = append(existing, s)
		}
	}
	var missing []messages.Volume
	for _, v := range req.Volumes {
		if !have[v.ID] {
			missing = append(missing, v)
		}
	}
	if len(missing) == 0 {
		sortSnapshots(existing)
		return existing, nil
	}
	tags := cloneTags(req.Tags)
	// A snapshot quiesce creates is always one retention may later delete.
	tags[messages.TagManaged] = "true"

	loc := d.nodeLocation(req.Node)
	client := d.c.client(loc)
	var created []worker.Snapshot
	var err error
	if d.cfg.PerInstance && len(missing) > 1 && req.Node.InstanceID != "" {
		created, err = d.createSet(ctx, client, req.Node, missing, tags, req.Fence)
	} else {
		created, err = d.createEach(ctx, client, req.Node, missing, tags, req.Fence)
	}
	for i := range created {
		created[i].Region = loc.Region
	}
	out := append(existing, created...)
	sortSnapshots(out)
	return out, err
}

// fenced asks fence, when there is one, right before a create call: a task
// execution that lost its lease must not create.
func fenced(ctx context.Context, op string, fence func(context.Context) error) error {
	if fence == nil {
		return nil
	}
	if err := fence(ctx); err != nil {
		return &Error{Op: op, code: CodeLeaseLost, err: err}
	}
	return nil
}

// createEach takes one CreateSnapshot per volume. A failure part-way leaves
// the earlier snapshots tagged with the task, so the retry creates only the
// rest.
func (d *Driver) createEach(ctx context.Context, client *ec2.Client, node messages.Node, vols []messages.Volume, tags map[string]string, fence func(context.Context) error) ([]worker.Snapshot, error) {
	var out []worker.Snapshot
	for _, v := range vols {
		if err := fenced(ctx, "CreateSnapshot", fence); err != nil {
			return out, err
		}
		t := tags
		if d.cfg.CopyVolumeTags {
			t = withVolumeTags(tags, v.Tags)
		}
		res, err := client.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{
			VolumeId:          aws.String(v.ID),
			Description:       aws.String(description(tags, node, v.Device)),
			TagSpecifications: tagSpec(t),
		})
		if err != nil {
			return out, classify("CreateSnapshot", err)
		}
		out = append(out, worker.Snapshot{
			ID:           aws.ToString(res.SnapshotId),
			VolumeID:     aws.ToString(res.VolumeId),
			State:        string(res.State),
			StateMessage: aws.ToString(res.StateMessage),
			Progress:     aws.ToString(res.Progress),
			StartTime:    aws.ToTime(res.StartTime),
			Tags:         fromTags(res.Tags),
		})
	}
	return out, nil
}

// createSet takes one crash-consistent CreateSnapshots set of the node's
// selected data volumes: the boot volume and every attached data volume not
// asked for are excluded.
func (d *Driver) createSet(ctx context.Context, client *ec2.Client, node messages.Node, vols []messages.Volume, tags map[string]string, fence func(context.Context) error) ([]worker.Snapshot, error) {
	inst, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{node.InstanceID}})
	if err != nil {
		return nil, classify("DescribeInstances", err)
	}
	var instance *types.Instance
	for _, r := range inst.Reservations {
		for i := range r.Instances {
			if aws.ToString(r.Instances[i].InstanceId) == node.InstanceID {
				instance = &r.Instances[i]
			}
		}
	}
	if instance == nil {
		return nil, permanentf("DescribeInstances", CodeInvalidRequest, "instance %s of node %s not found", node.InstanceID, node.Name)
	}
	want := map[string]bool{}
	for _, v := range vols {
		want[v.ID] = true
	}
	attached := map[string]bool{}
	root := aws.ToString(instance.RootDeviceName)
	includeRoot := false
	var exclude []string
	for _, m := range instance.BlockDeviceMappings {
		if m.Ebs == nil {
			continue
		}
		id := aws.ToString(m.Ebs.VolumeId)
		attached[id] = true
		isRoot := sameDevice(aws.ToString(m.DeviceName), root)
		switch {
		case isRoot && want[id]:
			includeRoot = true
		case isRoot:
			// Excluded by ExcludeBootVolume; EC2 refuses it in ExcludeDataVolumeIds.
		case !want[id]:
			exclude = append(exclude, id)
		}
	}
	for _, v := range vols {
		if !attached[v.ID] {
			return nil, permanentf("CreateSnapshots", CodeInvalidRequest, "volume %s is not attached to instance %s of node %s", v.ID, node.InstanceID, node.Name)
		}
	}
	in := &ec2.CreateSnapshotsInput{
		InstanceSpecification: &types.InstanceSpecification{
			InstanceId:           aws.String(node.InstanceID),
			ExcludeBootVolume:    aws.Bool(!includeRoot),
			ExcludeDataVolumeIds: exclude,
		},
		Description:       aws.String(description(tags, node, "")),
		TagSpecifications: tagSpec(tags),
	}
	if d.cfg.CopyVolumeTags {
		in.CopyTagsFromSource = types.CopyTagsFromSourceVolume
	}
	if err := fenced(ctx, "CreateSnapshots", fence); err != nil {
		return nil, err
	}
	res, err := client.CreateSnapshots(ctx, in)
	if err != nil {
		return nil, classify("CreateSnapshots", err)
	}
	var out []worker.Snapshot
	got := map[string]bool{}
	for _, s := range res.Snapshots {
		got[aws.ToString(s.VolumeId)] = true
		out = append(out, worker.Snapshot{
			ID:        aws.ToString(s.SnapshotId),
			VolumeID:  aws.ToString(s.VolumeId),
			State:     string(s.State),
			Progress:  aws.ToString(s.Progress),
			StartTime: aws.ToTime(s.StartTime),
			Tags:      fromTags(s.Tags),
		})
	}
	for _, v := range vols {
		if !got[v.ID] {
			// Transient: the retry finds the set's snapshots by the task tag
			// and snapshots only what is missing.
			return out, &Error{Op: "CreateSnapshots", code: CodeIncompleteSet,
				err: fmt.Errorf("no snapshot of volume %s in the set of instance %s", v.ID, node.InstanceID)}
		}
	}
	return out, nil
}

// CopyTo copies a snapshot of the cluster's region to another region,
// carrying its tags plus TagCopyOf. A copy made earlier (found by TagCopyOf)
// is returned instead of a second one.
func (d *Driver) CopyTo(ctx context.Context, snapshotID, region string) (worker.Snapshot, error) {
	return d.copyFrom(ctx, d.c.homeLocation(), snapshotID, region)
}

// copyFrom copies a snapshot of location src to region, with the cluster's
// own role there.
func (d *Driver) copyFrom(ctx context.Context, src location, snapshotID, region string) (worker.Snapshot, error) {
	if region == src.Region {
		return worker.Snapshot{}, permanentf("CopySnapshot", CodeInvalidRequest, "copy of %s to its own region %s", snapshotID, region)
	}
	dst := d.c.region(region)
	prior, err := d.find(ctx, dst, map[string]string{TagCopyOf: snapshotID})
	if err != nil {
		return worker.Snapshot{}, err
	}
	if len(prior) > 0 {
		return prior[0], nil
	}
	s, err := d.describeIn(ctx, d.c.client(src), snapshotID)
	if err != nil {
		return worker.Snapshot{}, err
	}
	if s.Tags[messages.TagManaged] != "true" {
		return worker.Snapshot{}, notManaged("CopySnapshot", snapshotID, src.Region)
	}
	tags := cloneTags(s.Tags)
	tags[TagCopyOf] = snapshotID
	res, err := dst.CopySnapshot(ctx, &ec2.CopySnapshotInput{
		SourceRegion:      aws.String(src.Region),
		SourceSnapshotId:  aws.String(snapshotID),
		Description:       aws.String("quiesce copy of " + snapshotID + " from " + src.Region),
		TagSpecifications: tagSpec(tags),
	})
	if err != nil {
		return worker.Snapshot{}, classify("CopySnapshot", err)
	}
	return worker.Snapshot{
		ID:       aws.ToString(res.SnapshotId),
		VolumeID: s.VolumeID,
		State:    worker.StatePending,
		Tags:     tags,
		Region:   region,
	}, nil
}

// Delete deletes a snapshot of the cluster's region that carries
// quiesce:managed=true. A snapshot already gone is worker.ErrSnapshotGone
// (success, for the caller, but not a deletion of its own); one without the
// managed tag is never touched (worker.ErrNotManaged); one that an AMI or
// volume still uses is worker.ErrSnapshotInUse. Both refusals are permanent.
func (d *Driver) Delete(ctx context.Context, snapshotID string) error {
	return d.deleteIn(ctx, d.c.homeLocation().Region, snapshotID)
}

// DeleteIn deletes a snapshot of one of the cluster's regions, with
// Delete's guards.
func (d *Driver) DeleteIn(ctx context.Context, region, snapshotID string) error {
	return d.deleteIn(ctx, region, snapshotID)
}

var _ worker.RegionalDeleter = (*Driver)(nil)

func (d *Driver) deleteIn(ctx context.Context, region, snapshotID string) error {
	client := d.c.client(d.regionLocation(region))
	s, err := d.describeIn(ctx, client, snapshotID)
	if apiCode(err) == CodeSnapshotNotFound {
		return gone(snapshotID, region)
	}
	if err != nil {
		return err
	}
	if s.Tags[messages.TagManaged] != "true" {
		return notManaged("DeleteSnapshot", snapshotID, region)
	}
	_, err = client.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snapshotID)})
	if apiCode(err) == CodeSnapshotNotFound {
		return gone(snapshotID, region)
	}
	return classify("DeleteSnapshot", err)
}

// gone says a snapshot to delete was deleted already.
func gone(snapshotID, region string) error {
	return fmt.Errorf("snapshot %s in %s: %w", snapshotID, region, worker.ErrSnapshotGone)
}

// notManaged refuses to act on a snapshot without quiesce:managed=true.
func notManaged(op, snapshotID, region string) error {
	return errclass.Permanent(&Error{Op: op, code: CodeNotManaged, is: worker.ErrNotManaged,
		err: fmt.Errorf("snapshot %s in %s", snapshotID, region)})
}

func (d *Driver) describeIn(ctx context.Context, client *ec2.Client, snapshotID string) (worker.Snapshot, error) {
	res, err := client.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snapshotID}})
	if err != nil {
		return worker.Snapshot{}, classify("DescribeSnapshots", err)
	}
	for _, s := range res.Snapshots {
		if aws.ToString(s.SnapshotId) == snapshotID {
			snap := fromEC2(s)
			snap.Region = client.Options().Region
			return snap, nil
		}
	}
	// EC2 answers an unknown ID with InvalidSnapshot.NotFound; an empty answer
	// means the same.
	return worker.Snapshot{}, errclass.Permanent(&Error{Op: "DescribeSnapshots", code: CodeSnapshotNotFound,
		err: &smithy.GenericAPIError{Code: CodeSnapshotNotFound, Message: "snapshot " + snapshotID + " does not exist"}})
}

// Progress is how far a job's snapshots have come.
type Progress struct {
	Total, Pending, Completed, Errored int
	// Failed are the snapshots in the error state, with EC2's state message.
	Failed []worker.Snapshot
}

// Done reports whether no snapshot is pending any more.
func (p Progress) Done() bool { return p.Pending == 0 }

// Err is a permanent error naming every snapshot in the error state with
// EC2's state message, or nil.
func (p Progress) Err() error {
	if len(p.Failed) == 0 {
		return nil
	}
	msgs := make([]string, 0, len(p.Failed))
	for _, s := range p.Failed {
		msgs = append(msgs, fmt.Sprintf("snapshot %s of volume %s: %s", s.ID, s.VolumeID, orDefault(s.StateMessage, "error state")))
	}
	return errclass.Permanent(&Error{Op: "DescribeSnapshots", code: "SnapshotError", err: errors.New(strings.Join(msgs, "; "))})
}

// Summarize counts snapshots by state.
func Summarize(snaps []worker.Snapshot) Progress {
	p := Progress{Total: len(snaps)}
	for _, s := range snaps {
		switch s.State {
		case worker.StateCompleted:
			p.Completed++
		case worker.StateError:
			p.Errored++
			p.Failed = append(p.Failed, s)
		default:
			p.Pending++
		}
	}
	return p
}

// JobProgress finds a job's snapshots by its job tag, in batched pages, and
// counts them by state.
func (d *Driver) JobProgress(ctx context.Context, jobID string) (Progress, []worker.Snapshot, error) {
	snaps, err := d.Find(ctx, map[string]string{messages.TagJob: jobID})
	if err != nil {
		return Progress{}, nil, err
	}
	return Summarize(snaps), snaps, nil
}

func tagFilters(filter map[string]string) []types.Filter {
	keys := make([]string, 0, len(filter))
	for k := range filter {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]types.Filter, 0, len(keys))
	for _, k := range keys {
		out = append(out, types.Filter{Name: aws.String("tag:" + k), Values: []string{filter[k]}})
	}
	return out
}

func tagSpec(tags map[string]string) []types.TagSpecification {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ts := make([]types.Tag, 0, len(keys))
	for _, k := range keys {
		ts = append(ts, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return []types.TagSpecification{{ResourceType: types.ResourceTypeSnapshot, Tags: ts}}
}

// maxTags is EC2's limit of tags on one resource.
const maxTags = 50

// withVolumeTags adds a volume's own tags under quiesce's, which win. Keys
// under aws: are reserved and cannot be set. Volume tags that would take the
// snapshot past EC2's 50-tag limit are left out (in key order), rather than
// failing the snapshot.
func withVolumeTags(tags, vol map[string]string) map[string]string {
	out := cloneTags(tags)
	keys := make([]string, 0, len(vol))
	for k := range vol {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(out) >= maxTags {
			break
		}
		if strings.HasPrefix(k, "aws:") {
			continue
		}
		if _, ok := out[k]; !ok {
			out[k] = vol[k]
		}
	}
	return out
}

func fromTags(ts []types.Tag) map[string]string {
	out := make(map[string]string, len(ts))
	for _, t := range ts {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}

func fromEC2(s types.Snapshot) worker.Snapshot {
	return worker.Snapshot{
		ID:           aws.ToString(s.SnapshotId),
		VolumeID:     aws.ToString(s.VolumeId),
		State:        string(s.State),
		StateMessage: aws.ToString(s.StateMessage),
		Progress:     aws.ToString(s.Progress),
		StartTime:    aws.ToTime(s.StartTime),
		Tags:         fromTags(s.Tags),
		VolumeSize:   aws.ToInt32(s.VolumeSize),
		Encrypted:    aws.ToBool(s.Encrypted),
		KMSKeyID:     aws.ToString(s.KmsKeyId),
	}
}

func sortSnapshots(s []worker.Snapshot) {
	slices.SortFunc(s, func(a, b worker.Snapshot) int {
		if c := strings.Compare(a.VolumeID, b.VolumeID); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

func description(tags map[string]string, node messages.Node, device string) string {
	d := "quiesce " + tags[messages.TagJob] + " " + node.Name
	if device != "" {
		d += " " + device
	}
	return d
}

func cloneTags(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
