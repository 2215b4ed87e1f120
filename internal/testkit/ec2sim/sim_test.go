package ec2sim_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/internal/testkit/ec2sim"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
	"github.com/quiesce/quiesce/worker/errclass"
)

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	goleak.VerifyTestMain(m, append(testenv.LeakOptions(),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)...)
}

const (
	account = ec2sim.DefaultAccount
	region  = "us-east-1"
)

var epoch = time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)

// driver is quiesce's EBS driver pointed at the simulator: one attempt per
// call, so every answer is seen as EC2 gave it.
func driver(t *testing.T, sim *ec2sim.Sim, perInstance bool) *ebs.Driver {
	t.Helper()
	d, err := ebs.New(t.Context(), ebs.Config{Cluster: "c1", Region: region, Endpoint: sim.URL, PerInstance: perInstance},
		ebs.Options{MaxAttempts: 1, RetryQuota: -1, Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")})
	require.NoError(t, err)
	return d
}

func request(job, target string, node messages.Node, vols ...string) worker.CreateRequest {
	req := worker.CreateRequest{Node: node, Tags: map[string]string{
		messages.TagJob: job, messages.TagTask: messages.TaskID(job, messages.KindSnapshot, target),
	}}
	for _, v := range vols {
		req.Volumes = append(req.Volumes, messages.Volume{ID: v})
	}
	return req
}

// The bucket lets a burst through, then refuses until it refills; a
// refused call spends nothing.
func TestBucketThrottlesPastTheBurst(t *testing.T) {
	t.Parallel()
	clock := ec2sim.NewClock(epoch, 1)
	sim := ec2sim.Start(t, clock, ec2sim.Config{})
	const calls = 130
	vols := sim.AddInstance(account, region, "i-1", "us-east-1a", calls)
	d := driver(t, sim, false)
	node := messages.Node{Name: "n1", InstanceID: "i-1"}
	start := clock.Now()
	var wg sync.WaitGroup
	errs := make([]error, calls)
	for i, v := range vols {
		wg.Go(func() { _, errs[i] = d.Create(t.Context(), request("c1-000000000001", v, node, v)) })
	}
	wg.Wait()
	elapsed := clock.Now().Sub(start)
	ok, throttled := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errclass.Code(err) == ebs.CodeRequestLimitExceeded:
			throttled++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	// 100 tokens at once, 5 a second after.
	require.LessOrEqual(t, ok, 100+int(elapsed.Seconds()*5)+1)
	require.GreaterOrEqual(t, ok, 100)
	require.Equal(t, calls, ok+throttled)
	got := sim.Calls(account, region, "CreateSnapshot")
	require.Len(t, got, calls)
	require.Equal(t, ok, sim.Count(account, region, map[string]string{messages.TagJob: "c1-000000000001"}))
}

// A volume takes a snapshot call every 15 s at most, and holds at most five
// pending snapshots; a set is refused whole.
func TestPerVolumeLimits(t *testing.T) {
	t.Parallel()
	clock := ec2sim.NewClock(epoch, 1)
	sim := ec2sim.Start(t, clock, ec2sim.Config{CompleteAfter: 24 * time.Hour})
	vols := sim.AddInstance(account, region, "i-1", "us-east-1a", 2)
	d := driver(t, sim, false)
	node := messages.Node{Name: "n1", InstanceID: "i-1"}
	_, err := d.Create(t.Context(), request("c1-000000000001", vols[0], node, vols[0]))
	require.NoError(t, err)
	_, err = d.Create(t.Context(), request("c1-000000000002", vols[0], node, vols[0]))
	require.Equal(t, ebs.CodeSnapshotPerVolumeRate, errclass.Code(err), "15 s have not passed")

	for range 5 {
		sim.PutSnapshot(account, region, vols[1], map[string]string{"earlier": "yes"}, false)
	}
	_, err = d.Create(t.Context(), request("c1-000000000003", vols[1], node, vols[1]))
	require.Equal(t, ebs.CodeConcurrentSnapshotLimit, errclass.Code(err), "five pending")
	require.Equal(t, map[string]int{ebs.CodeSnapshotPerVolumeRate: 1, ebs.CodeConcurrentSnapshotLimit: 1}, sim.Refusals())

	set := driver(t, sim, true)
	_, err = set.Create(t.Context(), request("c1-000000000004", "n1", node, vols...))
	require.Error(t, err, "one volume of the set is full, the other too recent")
	require.Zero(t, sim.Count(account, region, map[string]string{messages.TagJob: "c1-000000000004"}), "none of the set taken")
}

// What the driver does against the simulator: a set per node without the
// boot volume, look-ups by tag over pages, completion, delete.
func TestDriverAgainstTheSimulator(t *testing.T) {
	t.Parallel()
	clock := ec2sim.NewClock(epoch, 1000)
	sim := ec2sim.Start(t, clock, ec2sim.Config{CompleteAfter: time.Minute})
	d, err := ebs.New(t.Context(), ebs.Config{Cluster: "c1", Region: region, Endpoint: sim.URL, PerInstance: true},
		ebs.Options{PageSize: 5, Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")})
	require.NoError(t, err)
	job := "c1-000000000001"
	var all []string
	for i := range 3 {
		id := fmt.Sprintf("i-%d", i)
		vols := sim.AddInstance(account, region, id, "us-east-1a", 4)
		snaps, err := d.Create(t.Context(), request(job, id, messages.Node{Name: id, InstanceID: id}, vols...))
		require.NoError(t, err)
		require.Len(t, snaps, 4, "the data volumes, not the boot volume")
		for _, s := range snaps {
			require.Equal(t, region, s.Region)
			all = append(all, s.ID)
		}
	}
	found, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, found, 12, "three pages of five")
	require.Len(t, sim.Calls(account, region, "DescribeSnapshots"), 3)
	one, err := d.Find(t.Context(), map[string]string{messages.TagTask: messages.TaskID(job, messages.KindSnapshot, "i-1")})
	require.NoError(t, err)
	require.Len(t, one, 4)

	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		p, _, err := d.JobProgress(t.Context(), job)
		return err == nil && p.Completed == 12
	}))
	theirs := sim.PutSnapshot(account, region, "vol-i-0-0", map[string]string{"owner": "someone"}, true)
	require.ErrorIs(t, d.Delete(t.Context(), theirs), worker.ErrNotManaged, "no managed tag: never deleted")
	for _, id := range all {
		require.NoError(t, d.Delete(t.Context(), id))
	}
	require.ErrorIs(t, d.Delete(t.Context(), all[0]), worker.ErrSnapshotGone, "already gone: said so, and callers take it as success")
	require.Zero(t, sim.Count(account, region, map[string]string{messages.TagManaged: "true"}))
	require.Equal(t, 1, sim.Count(account, region, nil))
}
