package ebs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

var _ worker.VolumeRestorer = (*Driver)(nil)

// RestoreWait bounds the wait for a new volume to become available, and
// for an attachment to complete. Waiters poll from PollMin to PollMax.
var (
	RestoreWait    = 30 * time.Minute
	RestorePollMin = 2 * time.Second
	RestorePollMax = 15 * time.Second
)

// ClientToken is the idempotency token of the CreateVolume of a task: the
// SHA-256 of its ID in hex, 64 characters, EC2's limit.
func ClientToken(taskID string) string {
	sum := sha256.Sum256([]byte(taskID))
	return hex.EncodeToString(sum[:])
}

var _ worker.AttachedVolumes = (*Driver)(nil)

// NVMeDevice is the stable name an EBS volume has on a Nitro instance,
// where the kernel names devices /dev/nvme<N>n1 in the order they appear,
// whatever device name AttachVolume was given: udev links the volume's ID
// (its NVMe serial, "vol" and the hex digits) under /dev/disk/by-id. On Xen
// instances the requested name (or its /dev/xvd* form) is the device.
func NVMeDevice(volumeID string) string {
	return nvmeLink(defaultDeviceLinks, volumeID)
}

const defaultDeviceLinks = "/dev/disk/by-id"

func nvmeLink(dir, volumeID string) string {
	return path.Join(dir, "nvme-Amazon_Elastic_Block_Store_"+strings.ReplaceAll(volumeID, "-", ""))
}

// xenDevice is the name the kernel of a Xen instance gives a volume
// attached as /dev/sdX: /dev/xvdX.
func xenDevice(device string) string {
	if rest, ok := strings.CutPrefix(device, "/dev/sd"); ok {
		return "/dev/xvd" + rest
	}
	return ""
}

func (d *Driver) client(region string) *ec2.Client {
	if region != "" && region != d.Region() {
		return d.c.region(region)
	}
	return d.c.home()
}

// AttachedVolume finds the volume restore-volume task taskID made and
// returns its ID and the paths its device may have on the instance it is
// attached to: the NVMe link by serial first (Nitro), then the name it was
// attached at and its Xen form. A volume not attached is an error: the
// node's restore cannot reach it.
func (d *Driver) AttachedVolume(ctx context.Context, taskID, region string) (string, []string, error) {
	vol, err := d.findVolume(ctx, d.client(region), taskID)
	if err != nil {
		return "", nil, err
	}
	if vol == nil {
		return "", nil, errclass.Permanent(&Error{Op: "DescribeVolumes", code: CodeVolumeNotFound,
			err: fmt.Errorf("no volume carries %s=%s: %w", messages.TagTask, taskID, worker.ErrVolumeGone)})
	}
	id := aws.ToString(vol.VolumeId)
	links := d.opts.DeviceLinks
	if links == "" {
		links = defaultDeviceLinks
	}
	devices := []string{nvmeLink(links, id)}
	for _, a := range vol.Attachments {
		if a.State != types.VolumeAttachmentStateAttached {
			continue
		}
		dev := aws.ToString(a.Device)
		devices = append(devices, dev)
		if x := xenDevice(dev); x != "" {
			devices = append(devices, x)
		}
	}
	if len(devices) == 1 {
		return "", nil, permanentf("DescribeVolumes", CodeInvalidRequest, "volume %s made by %s is attached to no instance", id, taskID)
	}
	return id, devices, nil
}

// ReleaseVolume detaches the volume restore-volume task taskID made from
// its instance, waits until it is available, and deletes it. Only a volume
// carrying the task's tag is touched; none left is success.
func (d *Driver) ReleaseVolume(ctx context.Context, taskID, region string) error {
	client := d.client(region)
	vol, err := d.findVolume(ctx, client, taskID)
	if err != nil || vol == nil {
		return err
	}
	id := aws.ToString(vol.VolumeId)
	if vol.Tags == nil || tagValue(vol.Tags, messages.TagManaged) != "true" {
		return permanentf("DeleteVolume", CodeInvalidRequest, "volume %s does not carry %s=true; not deleted", id, messages.TagManaged)
	}
	if len(vol.Attachments) > 0 {
		for _, a := range vol.Attachments {
			if a.State == types.VolumeAttachmentStateDetached || a.State == types.VolumeAttachmentStateDetaching {
				continue
			}
			_, err := client.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id), InstanceId: a.InstanceId})
			if err != nil && apiCode(err) != CodeIncorrectState {
				return classify("DetachVolume", err)
			}
		}
		w := ec2.NewVolumeAvailableWaiter(client, func(o *ec2.VolumeAvailableWaiterOptions) {
			o.MinDelay, o.MaxDelay = RestorePollMin, RestorePollMax
		})
		if err := w.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, RestoreWait); err != nil {
			return classify("DescribeVolumes", fmt.Errorf("volume %s not detached: %w", id, err))
		}
	}
	if _, err := client.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)}); err != nil && apiCode(err) != CodeVolumeNotFound {
		return classify("DeleteVolume", err)
	}
	return nil
}

// RestoreVolume makes one volume from snapshot v.SnapshotID (or, with
// v.Region, from its copy in that region), tagged at creation with v.Tags
// and the task's ID, waits until it is available and, with v.InstanceID,
// attaches it there and waits until it is attached. Every step looks first:
// a volume carrying the task's tag is reused (and CreateVolume's
// ClientToken, derived from the task ID, makes a retried call return the
// same volume), and a volume already attached to the instance is not
// attached again. It returns the volume ID and the device to find it by.
func (d *Driver) RestoreVolume(ctx context.Context, taskID string, v messages.VolumeRestore) (messages.RestoreReport, error) {
	var rep messages.RestoreReport
	if v.Tags[messages.TagManaged] != "true" {
		return rep, permanentf("CreateVolume", CodeInvalidRequest, "task %s: a restored volume must carry %s=true", taskID, messages.TagManaged)
	}
	client, snapID, az := d.c.home(), v.SnapshotID, v.AZ
	if v.Region != "" && v.Region != d.Region() {
		client = d.c.region(v.Region)
		copies, err := d.find(ctx, client, map[string]string{TagCopyOf: v.SnapshotID})
		if err != nil {
			return rep, err
		}
		snapID = ""
		for _, c := range copies {
			if c.State == worker.StateCompleted {
				snapID = c.ID
			}
		}
		if snapID == "" {
			return rep, permanentf("CreateVolume", CodeInvalidRequest, "snapshot %s has no completed copy in %s", v.SnapshotID, v.Region)
		}
	}
	if az == "" {
		return rep, permanentf("CreateVolume", CodeInvalidRequest, "task %s: no availability zone for the volume of %s", taskID, v.SnapshotID)
	}
	vol, err := d.findVolume(ctx, client, taskID)
	if err != nil {
		return rep, err
	}
	if vol == nil {
		tags := cloneTags(v.Tags)
		tags[messages.TagTask] = taskID
		tags[messages.TagName] = "quiesce restore of " + v.SourceVolume
		in := &ec2.CreateVolumeInput{
			AvailabilityZone: aws.String(az), SnapshotId: aws.String(snapID),
			ClientToken:       aws.String(ClientToken(taskID)),
			TagSpecifications: volumeTagSpec(tags),
		}
		if v.Type != "" {
			in.VolumeType = types.VolumeType(v.Type)
		}
		if v.SizeGiB > 0 {
			in.Size = aws.Int32(v.SizeGiB)
		}
		if v.IOPS > 0 && (v.Type == "gp3" || v.Type == "io1" || v.Type == "io2") {
			in.Iops = aws.Int32(v.IOPS)
		}
		if v.Throughput > 0 && v.Type == "gp3" {
			in.Throughput = aws.Int32(v.Throughput)
		}
		if v.Encrypted || v.KMSKeyID != "" {
			in.Encrypted = aws.Bool(true)
			if v.KMSKeyID != "" {
				in.KmsKeyId = aws.String(v.KMSKeyID)
			}
		}
		out, err := client.CreateVolume(ctx, in)
		if err != nil {
			return rep, classify("CreateVolume", err)
		}
		vol = &types.Volume{VolumeId: out.VolumeId, State: out.State, AvailabilityZone: out.AvailabilityZone}
	} else {
		rep.Again = true
	}
	id := aws.ToString(vol.VolumeId)
	rep.VolumeID = id
	if vol.State != types.VolumeStateAvailable && vol.State != types.VolumeStateInUse {
		w := ec2.NewVolumeAvailableWaiter(client, func(o *ec2.VolumeAvailableWaiterOptions) {
			o.MinDelay, o.MaxDelay = RestorePollMin, RestorePollMax
		})
		if err := w.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, RestoreWait); err != nil {
			return rep, classify("DescribeVolumes", fmt.Errorf("volume %s not available: %w", id, err))
		}
	}
	if v.InstanceID == "" {
		return rep, nil
	}
	cur, err := d.describeVolume(ctx, client, id)
	if err != nil {
		return rep, err
	}
	attached := false
	for _, a := range cur.Attachments {
		if aws.ToString(a.InstanceId) == v.InstanceID {
			attached = true
			rep.Device = aws.ToString(a.Device)
		} else if a.State == types.VolumeAttachmentStateAttached || a.State == types.VolumeAttachmentStateAttaching {
			return rep, permanentf("AttachVolume", CodeInvalidRequest, "volume %s is attached to %s, not %s", id, aws.ToString(a.InstanceId), v.InstanceID)
		}
	}
	if !attached {
		if v.Device == "" {
			return rep, permanentf("AttachVolume", CodeInvalidRequest, "task %s: no device to attach volume %s at", taskID, id)
		}
		if _, err := client.AttachVolume(ctx, &ec2.AttachVolumeInput{Device: aws.String(v.Device), InstanceId: aws.String(v.InstanceID),
			VolumeId: aws.String(id)}); err != nil {
			return rep, classify("AttachVolume", err)
		}
		rep.Device = v.Device
	}
	w := ec2.NewVolumeInUseWaiter(client, func(o *ec2.VolumeInUseWaiterOptions) {
		o.MinDelay, o.MaxDelay = RestorePollMin, RestorePollMax
	})
	if err := w.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, RestoreWait); err != nil {
		return rep, classify("DescribeVolumes", fmt.Errorf("volume %s not attached: %w", id, err))
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("volume %s attached to %s as %s; on a Nitro instance it is %s", id, v.InstanceID, rep.Device, NVMeDevice(id)))
	return rep, nil
}

// findVolume returns the volume a task created, found by its task tag.
func (d *Driver) findVolume(ctx context.Context, client *ec2.Client, taskID string) (*types.Volume, error) {
	out, err := client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: tagFilters(map[string]string{messages.TagTask: taskID})})
	if err != nil {
		return nil, classify("DescribeVolumes", err)
	}
	var live []types.Volume
	for _, v := range out.Volumes {
		if v.State != types.VolumeStateDeleting && v.State != types.VolumeStateDeleted && v.State != types.VolumeStateError {
			live = append(live, v)
		}
	}
	if len(live) == 0 {
		return nil, nil
	}
	sort.Slice(live, func(i, j int) bool { return aws.ToString(live[i].VolumeId) < aws.ToString(live[j].VolumeId) })
	return &live[0], nil
}

func (d *Driver) describeVolume(ctx context.Context, client *ec2.Client, id string) (types.Volume, error) {
	out, err := client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	if err != nil {
		return types.Volume{}, classify("DescribeVolumes", err)
	}
	if len(out.Volumes) != 1 {
		return types.Volume{}, fmt.Errorf("volume %s: described %d volumes", id, len(out.Volumes))
	}
	return out.Volumes[0], nil
}

func volumeTagSpec(tags map[string]string) []types.TagSpecification {
	ts := tagSpec(tags)
	ts[0].ResourceType = types.ResourceTypeVolume
	return ts
}
