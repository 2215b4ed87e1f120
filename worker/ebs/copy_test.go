package ebs

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

func TestCopyJobWaitsForCompletion(t *testing.T) {
	t.Parallel()
	job := map[string]string{messages.TagManaged: "true", messages.TagJob: "c1-000000000001"}
	tests := []struct {
		desc      string
		state     string
		permanent bool
		pending   bool
	}{
		{desc: "pending snapshot: transient, nothing copied", state: "pending", pending: true},
		{desc: "errored snapshot: permanent", state: "error", permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			f := newFakeEC2(t)
			f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet>" + snapshotXML("snap-1", "vol-1", tt.state, job) + "</snapshotSet>"})
			d, err := New(t.Context(), Config{Cluster: "c1", Region: "us-east-1",
				Endpoint: f.srv.URL, CopyRegions: []string{"us-west-2"}}, fastOptions())
			require.NoError(t, err)
			_, err = d.CopyJob(t.Context(), "c1-000000000001")
			require.Error(t, err)
			require.Equal(t, tt.pending, errors.Is(err, ErrNotCompleted))
			require.Equal(t, tt.permanent, errclass.IsPermanent(err))
			require.Zero(t, f.count("CopySnapshot"))
		})
	}
}

func TestCopyJobWithoutRegionsDoesNothing(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	copies, err := fakeDriver(t, f, fastOptions()).CopyJob(t.Context(), "c1-000000000001")
	require.NoError(t, err)
	require.Empty(t, copies)
	require.Zero(t, f.count("DescribeSnapshots"))
}
