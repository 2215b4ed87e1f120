package ebs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// CreateVolume carries a ClientToken derived from the task ID, so a call
// retried after its answer was lost makes no second volume; the volume is
// tagged at creation, managed and with its task.
func TestRestoreVolumeSendsClientTokenAndTags(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	f.on("DescribeVolumes", fakeAnswer{pages: []string{
		`<volumeSet/>`,
		`<volumeSet><item><volumeId>vol-new</volumeId><status>available</status></item></volumeSet>`,
	}})
	f.on("CreateVolume", fakeAnswer{body: `<volumeId>vol-new</volumeId><status>creating</status>`})
	d := fakeDriver(t, f, fastOptions())
	task := "c1-r0123456789ab.restore-volume.snap-1"
	rep, err := d.RestoreVolume(t.Context(), task, messages.VolumeRestore{SnapshotID: "snap-1", AZ: "us-east-1a", Type: "gp3",
		Tags: map[string]string{messages.TagManaged: "true", messages.TagRestore: "c1-r0123456789ab"}})
	require.NoError(t, err)
	require.Equal(t, "vol-new", rep.VolumeID)
	reqs := f.requests("CreateVolume")
	require.Len(t, reqs, 1)
	require.Equal(t, ClientToken(task), reqs[0].Get("ClientToken"))
	require.Len(t, ClientToken(task), 64)
	require.NotEqual(t, ClientToken(task), ClientToken(task+"x"))
	require.Equal(t, "volume", reqs[0].Get("TagSpecification.1.ResourceType"))
	tags := map[string]string{}
	for i := 1; reqs[0].Get("TagSpecification.1.Tag."+itoa(i)+".Key") != ""; i++ {
		tags[reqs[0].Get("TagSpecification.1.Tag."+itoa(i)+".Key")] = reqs[0].Get("TagSpecification.1.Tag." + itoa(i) + ".Value")
	}
	require.Equal(t, "true", tags[messages.TagManaged])
	require.Equal(t, task, tags[messages.TagTask])
	require.Equal(t, "snap-1", reqs[0].Get("SnapshotId"))

	// Found by its tag the second time: no CreateVolume at all.
	f.on("DescribeVolumes", fakeAnswer{body: `<volumeSet><item><volumeId>vol-new</volumeId><status>available</status></item></volumeSet>`})
	rep, err = d.RestoreVolume(t.Context(), task, messages.VolumeRestore{SnapshotID: "snap-1", AZ: "us-east-1a",
		Tags: map[string]string{messages.TagManaged: "true"}})
	require.NoError(t, err)
	require.True(t, rep.Again)
	require.Len(t, f.requests("CreateVolume"), 1)
}

func TestNVMeDevice(t *testing.T) {
	t.Parallel()
	require.Equal(t, "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0", NVMeDevice("vol-0123456789abcdef0"))
}

func itoa(i int) string { return string(rune('0' + i)) }
