package ebs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

func createRequest(task string, vols ...string) worker.CreateRequest {
	req := worker.CreateRequest{
		Node: messages.Node{Name: "n1", InstanceID: "i-1"},
		Tags: map[string]string{
			messages.TagManaged: "true",
			messages.TagJob:     "c1-000000000001",
			messages.TagTask:    task,
		},
	}
	for _, v := range vols {
		req.Volumes = append(req.Volumes, messages.Volume{ID: v, Device: "/dev/sdf"})
	}
	return req
}

// TestClassification drives CreateSnapshot into each EC2 answer and checks
// what the worker runtime will see: class, delay, code, and how often the
// SDK tried.
func TestClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc      string
		status    int
		code      string
		quota     int
		permanent bool
		minDelay  time.Duration // 0: no RetryAfter
		wantCode  string
		attempts  int
	}{
		{desc: "throttle retried by the SDK, then a delayed task retry", status: 503, code: "RequestLimitExceeded", attempts: 3, minDelay: ThrottleDelay, wantCode: "RequestLimitExceeded"},
		{desc: "concurrent snapshot limit waits 15s", status: 400, code: "ConcurrentSnapshotLimitExceeded", attempts: 1, minDelay: 15 * time.Second, wantCode: "ConcurrentSnapshotLimitExceeded"},
		{desc: "per-volume rate waits 15s", status: 400, code: "SnapshotCreationPerVolumeRateExceeded", attempts: 1, minDelay: 15 * time.Second, wantCode: "SnapshotCreationPerVolumeRateExceeded"},
		{desc: "bad parameter is permanent", status: 400, code: "InvalidParameterValue", attempts: 1, permanent: true, wantCode: "InvalidParameterValue"},
		{desc: "unknown volume is permanent", status: 400, code: "InvalidVolume.NotFound", attempts: 1, permanent: true, wantCode: "InvalidVolume.NotFound"},
		{desc: "missing parameter is permanent", status: 400, code: "MissingParameter", attempts: 1, permanent: true, wantCode: "MissingParameter"},
		{desc: "unauthorized is permanent", status: 403, code: "UnauthorizedOperation", attempts: 1, permanent: true, wantCode: "UnauthorizedOperation"},
		{desc: "auth failure is permanent", status: 401, code: "AuthFailure", attempts: 1, permanent: true, wantCode: "AuthFailure"},
		{desc: "volume in transition is transient", status: 400, code: "IncorrectState", attempts: 1, wantCode: "IncorrectState"},
		{desc: "internal error retried, then transient", status: 500, code: "InternalError", attempts: 3, wantCode: "InternalError"},
		{desc: "unavailable retried, then transient", status: 503, code: "Unavailable", attempts: 3, wantCode: "Unavailable"},
		// A bucket of 5 pays for one throttled retry (cost 5): two attempts,
		// then the quota error, whatever MaxAttempts says.
		{desc: "retry quota runs dry: delayed task retry", status: 503, code: "RequestLimitExceeded", quota: 5, attempts: 2, minDelay: ThrottleDelay, wantCode: "RetryQuotaExceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			f := newFakeEC2(t)
			f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet/>"})
			f.on("CreateSnapshot", fakeAnswer{status: tt.status, code: tt.code})
			var mu sync.Mutex
			hooked := map[string]int{}
			opts := fastOptions()
			opts.RetryQuota = tt.quota
			if tt.quota > 0 {
				opts.MaxAttempts = 10
			}
			opts.OnAPIError = func(op, code string) {
				mu.Lock()
				defer mu.Unlock()
				hooked[op+" "+code]++
			}
			d := fakeDriver(t, f, opts)

			_, err := d.Create(t.Context(), createRequest("c1-000000000001.snapshot.vol-1", "vol-1"))
			require.Error(t, err)
			require.Equal(t, tt.permanent, errclass.IsPermanent(err), "permanent: %v", err)
			delay, ok := errclass.Delay(err)
			if tt.minDelay > 0 {
				require.True(t, ok, "want a RetryAfter: %v", err)
				require.GreaterOrEqual(t, delay, tt.minDelay)
			} else {
				require.False(t, ok, "unexpected RetryAfter %s: %v", delay, err)
			}
			require.Equal(t, tt.wantCode, errclass.Code(err))
			require.Equal(t, tt.attempts, f.count("CreateSnapshot"))
			mu.Lock()
			require.Equal(t, map[string]int{"CreateSnapshot " + tt.code: tt.attempts}, hooked,
				"the hook sees every failed attempt")
			mu.Unlock()
		})
	}
}

// TestRetryQuotaDisabled: with the bucket removed a throttled call gets every
// attempt MaxAttempts allows.
func TestRetryQuotaDisabled(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet/>"})
	f.on("CreateSnapshot", fakeAnswer{status: 503, code: "RequestLimitExceeded"})
	opts := fastOptions()
	opts.MaxAttempts = 6
	opts.RetryQuota = -1
	d := fakeDriver(t, f, opts)
	_, err := d.Create(t.Context(), createRequest("c1-000000000001.snapshot.vol-1", "vol-1"))
	require.Error(t, err)
	require.Equal(t, CodeRequestLimitExceeded, errclass.Code(err))
	require.Equal(t, 6, f.count("CreateSnapshot"))
}

func TestDeleteGuards(t *testing.T) {
	t.Parallel()
	managed := map[string]string{messages.TagManaged: "true"}
	tests := []struct {
		desc         string
		describe     fakeAnswer
		del          fakeAnswer
		wantErr      error
		permanent    bool
		wantCode     string
		deleteCalled bool
	}{
		{desc: "managed snapshot is deleted",
			describe: fakeAnswer{body: "<snapshotSet>" + snapshotXML("snap-1", "vol-1", "completed", managed) + "</snapshotSet>"},
			del:      fakeAnswer{body: "<return>true</return>"}, deleteCalled: true},
		{desc: "unmanaged snapshot is refused untouched",
			describe: fakeAnswer{body: "<snapshotSet>" + snapshotXML("snap-1", "vol-1", "completed", map[string]string{"Name": "theirs"}) + "</snapshotSet>"},
			wantErr:  worker.ErrNotManaged, permanent: true, wantCode: "NotManaged"},
		{desc: "managed=false is not managed",
			describe: fakeAnswer{body: "<snapshotSet>" + snapshotXML("snap-1", "vol-1", "completed", map[string]string{messages.TagManaged: "false"}) + "</snapshotSet>"},
			wantErr:  worker.ErrNotManaged, permanent: true, wantCode: "NotManaged"},
		{desc: "already gone on describe says so",
			describe: fakeAnswer{status: 400, code: "InvalidSnapshot.NotFound"}, wantErr: worker.ErrSnapshotGone},
		{desc: "gone between describe and delete says so",
			describe: fakeAnswer{body: "<snapshotSet>" + snapshotXML("snap-1", "vol-1", "completed", managed) + "</snapshotSet>"},
			del:      fakeAnswer{status: 400, code: "InvalidSnapshot.NotFound"}, deleteCalled: true, wantErr: worker.ErrSnapshotGone},
		{desc: "in use by an AMI is reported",
			describe: fakeAnswer{body: "<snapshotSet>" + snapshotXML("snap-1", "vol-1", "completed", managed) + "</snapshotSet>"},
			del:      fakeAnswer{status: 400, code: "InvalidSnapshot.InUse"}, deleteCalled: true,
			wantErr: worker.ErrSnapshotInUse, permanent: true, wantCode: "InvalidSnapshot.InUse"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			f := newFakeEC2(t)
			f.on("DescribeSnapshots", tt.describe)
			if tt.deleteCalled {
				f.on("DeleteSnapshot", tt.del)
			}
			d := fakeDriver(t, f, fastOptions())
			err := d.Delete(t.Context(), "snap-1")
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
				require.Equal(t, tt.permanent, errclass.IsPermanent(err))
				require.Equal(t, tt.wantCode, errclass.Code(err))
			}
			require.Equal(t, tt.deleteCalled, f.count("DeleteSnapshot") > 0)
		})
	}
}

func TestCreateNeedsTaskTag(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	d := fakeDriver(t, f, fastOptions())
	_, err := d.Create(t.Context(), createRequest("", "vol-1"))
	require.True(t, errclass.IsPermanent(err))
	require.Equal(t, CodeInvalidRequest, errclass.Code(err))
	require.Zero(t, f.count("CreateSnapshot"))
}

func TestProgress(t *testing.T) {
	t.Parallel()
	p := Summarize([]worker.Snapshot{
		{ID: "snap-1", VolumeID: "vol-1", State: worker.StateCompleted},
		{ID: "snap-2", VolumeID: "vol-2", State: worker.StatePending},
		{ID: "snap-3", VolumeID: "vol-3", State: worker.StateError, StateMessage: "KMS key disabled"},
	})
	require.Equal(t, Progress{Total: 3, Pending: 1, Completed: 1, Errored: 1,
		Failed: []worker.Snapshot{{ID: "snap-3", VolumeID: "vol-3", State: worker.StateError, StateMessage: "KMS key disabled"}}}, p)
	require.False(t, p.Done())
	err := p.Err()
	require.True(t, errclass.IsPermanent(err))
	require.Contains(t, err.Error(), "KMS key disabled")
	require.NoError(t, Summarize(nil).Err())
	require.True(t, Summarize(nil).Done())
}

func TestJitterBackoffBounds(t *testing.T) {
	t.Parallel()
	b := jitterBackoff{base: 100 * time.Millisecond, max: time.Second}
	for attempt, ceil := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		for range 50 {
			d, err := b.BackoffDelay(attempt, errors.New("x"))
			require.NoError(t, err)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, ceil, "attempt %d", attempt)
		}
	}
}

func TestHTTPStatusOfNonHTTPError(t *testing.T) {
	t.Parallel()
	require.Zero(t, httpStatus(errors.New("x")))
	require.Equal(t, CodeTransport, errclass.Code(classify("Op", errors.New("dial tcp: refused"))))
}

// TestFindPagesAndFilters: Find asks for the largest page, only our own
// snapshots, one tag filter per key, and follows NextToken.
func TestFindPagesAndFilters(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	managed := map[string]string{messages.TagManaged: "true", messages.TagJob: "c1-000000000001"}
	f.on("DescribeSnapshots", fakeAnswer{pages: []string{
		"<snapshotSet>" + snapshotXML("snap-2", "vol-2", "pending", managed) + "</snapshotSet><nextToken>p2</nextToken>",
		"<snapshotSet>" + snapshotXMLMsg("snap-1", "vol-1", "error", "KMS key is disabled", managed) + "</snapshotSet>",
	}})
	d := fakeDriver(t, f, fastOptions())
	p, snaps, err := d.JobProgress(t.Context(), "c1-000000000001")
	require.NoError(t, err)
	require.Equal(t, []string{"snap-1", "snap-2"}, []string{snaps[0].ID, snaps[1].ID}, "sorted by volume")
	require.Equal(t, 2, p.Total)
	require.Equal(t, 1, p.Pending)
	require.Equal(t, 1, p.Errored)
	require.ErrorContains(t, p.Err(), "KMS key is disabled")

	reqs := f.requests("DescribeSnapshots")
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		require.Equal(t, "1000", r.Get("MaxResults"))
		require.Equal(t, "self", r.Get("Owner.1"))
		require.Equal(t, "tag:quiesce:job", r.Get("Filter.1.Name"))
		require.Equal(t, "c1-000000000001", r.Get("Filter.1.Value.1"))
	}
	require.Empty(t, reqs[0].Get("NextToken"))
	require.Equal(t, "p2", reqs[1].Get("NextToken"))
}

// TestCreateLooksForNothing: Create snapshots every volume asked for without
// a DescribeSnapshots of its own; the runtime has looked for the task's
// earlier snapshots already.
func TestCreateLooksForNothing(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	task := "c1-000000000001.snapshot.vol-1"
	f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet>" +
		snapshotXML("snap-1", "vol-1", "pending", map[string]string{messages.TagTask: task}) + "</snapshotSet>"})
	f.on("CreateSnapshot", fakeAnswer{body: "<snapshotId>snap-2</snapshotId><volumeId>vol-1</volumeId><status>pending</status>"})
	d := fakeDriver(t, f, fastOptions())
	snaps, err := d.Create(t.Context(), createRequest(task, "vol-1"))
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	require.Equal(t, "snap-2", snaps[0].ID)
	require.Equal(t, "us-east-1", snaps[0].Region)
	require.Zero(t, f.count("DescribeSnapshots"))
	require.Equal(t, 1, f.count("CreateSnapshot"))
}

// The snapshots the runtime found are not taken again: only the volumes
// without one are, and the found ones come back with the new ones.
func TestCreateTakesOnlyWhatWasNotFound(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	task := "c1-000000000001.snapshot.n1"
	f.on("CreateSnapshot", fakeAnswer{body: "<snapshotId>snap-2</snapshotId><volumeId>vol-2</volumeId><status>pending</status>"})
	d := fakeDriver(t, f, fastOptions())
	req := createRequest(task, "vol-1", "vol-2")
	req.Existing = []worker.Snapshot{
		{ID: "snap-1", VolumeID: "vol-1", State: worker.StatePending},
		{ID: "snap-0", VolumeID: "vol-9", State: worker.StateCompleted},
	}
	snaps, err := d.Create(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, 1, f.count("CreateSnapshot"), "vol-1 has its snapshot")
	require.Equal(t, []string{"snap-1", "snap-2"}, []string{snaps[0].ID, snaps[1].ID}, "a volume not asked for is left out")
	require.Equal(t, "vol-2", f.requests("CreateSnapshot")[0].Get("VolumeId"))

	all := createRequest(task, "vol-1")
	all.Existing = req.Existing[:1]
	again, err := d.Create(t.Context(), all)
	require.NoError(t, err)
	require.Equal(t, 1, f.count("CreateSnapshot"), "nothing missing, nothing created")
	require.Equal(t, "snap-1", again[0].ID)
}

// EC2 takes no idempotency token, so the fence is what keeps an execution
// that lost its task's lease from creating: it is asked right before the
// create call, and a lost lease sends no CreateSnapshot.
func TestCreateAsksTheFenceBeforeCreating(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t)
	task := "c1-000000000001.snapshot.vol-1"
	f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet></snapshotSet>"})
	f.on("CreateSnapshot", fakeAnswer{body: "<snapshotId>snap-2</snapshotId><volumeId>vol-1</volumeId><status>pending</status>"})
	d := fakeDriver(t, f, fastOptions())
	req := createRequest(task, "vol-1")
	asked := 0
	req.Fence = func(context.Context) error {
		asked++
		return worker.ErrLeaseLost
	}
	_, err := d.Create(t.Context(), req)
	require.ErrorIs(t, err, worker.ErrLeaseLost)
	require.Equal(t, CodeLeaseLost, errclass.Code(err))
	require.Zero(t, f.count("CreateSnapshot"), "nothing created without the lease")
	require.Equal(t, 1, asked)
	require.Zero(t, f.count("DescribeSnapshots"), "the look-up is the caller's")

	req.Fence = func(context.Context) error { return nil }
	snaps, err := d.Create(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, "snap-2", snaps[0].ID)
}

// A failed snapshot counts against the volume until EC2's spacing passed.
func TestRetakeAfterIsEC2sSpacing(t *testing.T) {
	t.Parallel()
	var p worker.RetakePacer = fakeDriver(t, newFakeEC2(t), fastOptions())
	require.Equal(t, SnapshotRateDelay, p.RetakeAfter())
}
