package ebs

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

// instanceXML is a DescribeInstances answer for one instance whose root is
// /dev/xvda (vol-root) with data volumes attached at /dev/sdf, /dev/sdg ...
func instanceXML(id string, data ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>%s</instanceId>
<rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping>
<item><deviceName>/dev/xvda</deviceName><ebs><volumeId>vol-root</volumeId></ebs></item>`, id)
	for i, v := range data {
		fmt.Fprintf(&b, "<item><deviceName>/dev/sd%c</deviceName><ebs><volumeId>%s</volumeId></ebs></item>", 'f'+i, v)
	}
	b.WriteString("</blockDeviceMapping></item></instancesSet></item></reservationSet>")
	return b.String()
}

func setSnapshotsXML(vols ...string) string {
	var b strings.Builder
	b.WriteString("<snapshotSet>")
	for _, v := range vols {
		fmt.Fprintf(&b, "<item><snapshotId>snap-%s</snapshotId><volumeId>%s</volumeId><state>pending</state></item>", v, v)
	}
	b.WriteString("</snapshotSet>")
	return b.String()
}

func setDriver(t *testing.T, f *fakeEC2, copyTags bool) *Driver {
	t.Helper()
	d, err := New(t.Context(), Config{Cluster: "c1", Region: "us-east-1",
		Endpoint: f.srv.URL, PerInstance: true, CopyVolumeTags: copyTags}, fastOptions())
	require.NoError(t, err)
	return d
}

// TestCreateSetExcludesBootAndUnselected checks the CreateSnapshots request
// moto cannot: the boot volume excluded by flag, an attached data volume
// that was not selected excluded by ID, tags on the set.
func TestCreateSetExcludesBootAndUnselected(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet/>"})
	f.on("DescribeInstances", fakeAnswer{body: instanceXML("i-1", "vol-1", "vol-2", "vol-3")})
	f.on("CreateSnapshots", fakeAnswer{body: setSnapshotsXML("vol-1", "vol-2")})
	d := setDriver(t, f, true)

	req := createRequest("c1-000000000001.snapshot.n1", "vol-1", "vol-2")
	delete(req.Tags, messages.TagManaged) // the driver adds it regardless
	snaps, err := d.Create(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, []string{"snap-vol-1", "snap-vol-2"}, []string{snaps[0].ID, snaps[1].ID})
	require.Zero(t, f.count("CreateSnapshot"))

	reqs := f.requests("CreateSnapshots")
	require.Len(t, reqs, 1)
	form := reqs[0]
	require.Equal(t, "i-1", form.Get("InstanceSpecification.InstanceId"))
	require.Equal(t, "true", form.Get("InstanceSpecification.ExcludeBootVolume"))
	require.Equal(t, "vol-3", form.Get("InstanceSpecification.ExcludeDataVolumeId.1"))
	require.Empty(t, form.Get("InstanceSpecification.ExcludeDataVolumeId.2"), "root is never in the data exclusions")
	require.Equal(t, "volume", form.Get("CopyTagsFromSource"))
	require.Equal(t, "snapshot", form.Get("TagSpecification.1.ResourceType"))
	tags := map[string]string{}
	for i := 1; form.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", i)) != ""; i++ {
		tags[form.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", i))] = form.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Value", i))
	}
	require.Equal(t, "true", tags[messages.TagManaged])
	require.Equal(t, "c1-000000000001.snapshot.n1", tags[messages.TagTask])
}

func TestCreateSetWithRootWhenAsked(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet/>"})
	f.on("DescribeInstances", fakeAnswer{body: instanceXML("i-1", "vol-1")})
	f.on("CreateSnapshots", fakeAnswer{body: setSnapshotsXML("vol-root", "vol-1")})
	d := setDriver(t, f, false)
	_, err := d.Create(t.Context(), createRequest("t.snapshot.n1", "vol-root", "vol-1"))
	require.NoError(t, err)
	form := f.requests("CreateSnapshots")[0]
	require.Equal(t, "false", form.Get("InstanceSpecification.ExcludeBootVolume"))
	require.Empty(t, form.Get("InstanceSpecification.ExcludeDataVolumeId.1"))
	require.Empty(t, form.Get("CopyTagsFromSource"))
}

func TestCreateSetFailures(t *testing.T) {
	t.Parallel()
	t.Run("volume not attached is permanent", func(t *testing.T) {
		t.Parallel()
		f := newFakeEC2(t)
		f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet/>"})
		f.on("DescribeInstances", fakeAnswer{body: instanceXML("i-1", "vol-1")})
		_, err := setDriver(t, f, false).Create(t.Context(), createRequest("t.snapshot.n1", "vol-1", "vol-9"))
		require.True(t, errclass.IsPermanent(err), "%v", err)
		require.ErrorContains(t, err, "vol-9")
		require.Zero(t, f.count("CreateSnapshots"))
	})
	t.Run("an incomplete set is transient", func(t *testing.T) {
		t.Parallel()
		f := newFakeEC2(t)
		f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet/>"})
		f.on("DescribeInstances", fakeAnswer{body: instanceXML("i-1", "vol-1", "vol-2")})
		f.on("CreateSnapshots", fakeAnswer{body: setSnapshotsXML("vol-1")})
		snaps, err := setDriver(t, f, false).Create(t.Context(), createRequest("t.snapshot.n1", "vol-1", "vol-2"))
		require.Error(t, err)
		require.False(t, errclass.IsPermanent(err))
		require.Equal(t, CodeIncompleteSet, errclass.Code(err))
		require.Len(t, snaps, 1, "what was made is reported")
	})
	t.Run("one volume left after a partial set uses CreateSnapshot", func(t *testing.T) {
		t.Parallel()
		f := newFakeEC2(t)
		// The runtime found vol-1's snapshot by the task tag and asks for
		// vol-2 alone.
		f.on("CreateSnapshot", fakeAnswer{body: "<snapshotId>snap-b</snapshotId><volumeId>vol-2</volumeId><status>pending</status>"})
		snaps, err := setDriver(t, f, false).Create(t.Context(), createRequest("t.snapshot.n1", "vol-2"))
		require.NoError(t, err)
		require.Equal(t, []worker.Snapshot{
			{ID: "snap-b", VolumeID: "vol-2", State: "pending", Tags: map[string]string{}, Region: "us-east-1"},
		}, snaps)
		require.Zero(t, f.count("CreateSnapshots"))
		require.Zero(t, f.count("DescribeInstances"))
		require.Equal(t, "vol-2", f.requests("CreateSnapshot")[0].Get("VolumeId"))
	})
}
