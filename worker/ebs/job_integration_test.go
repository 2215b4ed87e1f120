//go:build integration

package ebs_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/internal/simnode"
	"github.com/quiesce/quiesce/internal/testkit/mototest"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
)

const jobRegion = "us-east-1"

// nodeDrivers flushes on simulated nodes and snapshots through snap (the
// registry's real ebs driver, possibly wrapped).
type nodeDrivers struct {
	tool worker.NodeTool
	snap func(cluster string) (worker.Snapshotter, error)
}

func (d nodeDrivers) NodeTool(string) (worker.NodeTool, error)         { return d.tool, nil }
func (d nodeDrivers) Snapshotter(c string) (worker.Snapshotter, error) { return d.snap(c) }

// jobBundle is a moto EC2 with three tagged Cassandra instances behind a
// counting proxy, a simulated Cassandra node (simnode: flush and hard-link
// snapshots on disk) for each, an embedded JetStream, and the configuration
// and driver registry of cluster c1 discovered by tag.
type jobBundle struct {
	env   *testenv.Env
	stack *stack.Stack
	proxy *mototest.Throttle
	cfg   *config.Config
	reg   *drivers.Registry
	fleet *simnode.Fleet
	// volumesOf maps each node to its data volumes; node-3 has two.
	volumesOf map[string][]string

	mu        sync.Mutex
	ec2Errors map[string]int
}

func setupJob(t *testing.T, configure ...func(*config.Config)) *jobBundle {
	t.Helper()
	ctx := t.Context()
	moto := mototest.Start(t)
	b := &jobBundle{proxy: mototest.NewThrottle(t, moto.URL), fleet: simnode.NewFleet(),
		volumesOf: map[string][]string{}, ec2Errors: map[string]int{}}

	raw := ec2.New(ec2.Options{
		Region: jobRegion, BaseEndpoint: aws.String(moto.URL),
		Credentials: credentials.NewStaticCredentialsProvider(mototest.AccessKeyID, mototest.SecretAccessKey, ""),
	})
	imgs, err := raw.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	require.NoError(t, err)
	require.NotEmpty(t, imgs.Images)
	for i, devices := range [][]string{{"/dev/sdf"}, {"/dev/sdf"}, {"/dev/sdf", "/dev/sdg"}} {
		name := fmt.Sprintf("node-%d", i+1)
		n, err := simnode.Create(t.TempDir(), simnode.Options{Name: name})
		require.NoError(t, err)
		require.NoError(t, n.Write("app", "events", []byte("row-of-"+name)))
		b.fleet.Add(n)
		run, err := raw.RunInstances(ctx, &ec2.RunInstancesInput{
			ImageId: imgs.Images[0].ImageId, InstanceType: types.InstanceTypeT3Micro,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{
				{Key: aws.String("Name"), Value: aws.String(name)},
				{Key: aws.String("cassandra-cluster"), Value: aws.String("c1")},
			}}},
		})
		require.NoError(t, err)
		in := run.Instances[0]
		for _, dev := range devices {
			v, err := raw.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: in.Placement.AvailabilityZone, Size: aws.Int32(10)})
			require.NoError(t, err)
			_, err = raw.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: v.VolumeId, InstanceId: in.InstanceId, Device: aws.String(dev)})
			require.NoError(t, err)
			b.volumesOf[name] = append(b.volumesOf[name], aws.ToString(v.VolumeId))
		}
	}

	b.cfg = &config.Config{
		Clusters: []config.Cluster{{
			Name: "c1", Region: jobRegion, Executor: "local", Snapshotter: "ebs", DefaultPolicy: "nightly",
			EBS:       config.EBS{Endpoint: b.proxy.URL, PerInstance: true},
			Discovery: &config.Discovery{InstanceTags: map[string]string{"cassandra-cluster": "c1"}},
		}},
		Policies: []config.Policy{{Name: "nightly", Cluster: "c1"}},
	}
	for _, f := range configure {
		f(b.cfg)
	}
	require.NoError(t, b.cfg.Validate())
	b.reg = drivers.New(b.cfg, drivers.Env{Ctx: ctx, Log: zerolog.Nop(), Hooks: drivers.Hooks{EC2Error: func(op, code string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.ec2Errors[op+" "+code]++
	}}})
	t.Cleanup(func() { _ = b.reg.Close() })

	// Heartbeats come 25 times within AckWait. With AckWait at 1 s, a
	// loaded machine delayed them past it: the task was redelivered while
	// its first execution was still creating, and node-3's set was taken
	// twice. That is the stalled-worker case a lease with fencing closes,
	// tested on its own; these tests are about jobs, retention and a
	// killed worker, whose tasks come back after AckWait.
	b.env = testenv.New(t, topology.Options{AckWait: 5 * time.Second})
	nop := planner.Options{Logger: zerolog.Nop()}
	b.stack = stack.New(t, b.env, stack.Config{
		Planner: planner.PlannerConfig{Options: nop, Inventory: drivers.Inventory(b.cfg), Discoverer: b.reg},
		Coordinator: planner.CoordinatorConfig{Options: nop,
			SweepInterval: 100 * time.Millisecond, StallAfter: 2 * time.Second},
		Worker: worker.Config{
			Logger: zerolog.Nop(), Heartbeat: 200 * time.Millisecond, BackoffBase: 50 * time.Millisecond,
			BackoffMax: time.Second, AwaitPoll: 50 * time.Millisecond, MaxDeliver: b.env.Opts.MaxDeliverFor,
		},
		Drivers: nodeDrivers{tool: b.fleet, snap: b.reg.Snapshotter},
	})
	_, err = b.stack.StartPlanner()
	require.NoError(t, err)
	_, err = b.stack.StartCoordinator()
	require.NoError(t, err)
	return b
}

// startWorker starts a worker that flushes on the simulated nodes and
// snapshots through snap, or the registry's ebs driver when snap is nil.
func (b *jobBundle) startWorker(t *testing.T, snap func(string) (worker.Snapshotter, error)) *stack.Worker {
	t.Helper()
	var d worker.Drivers // the stack's: the registry's ebs driver
	if snap != nil {
		d = nodeDrivers{tool: b.fleet, snap: snap}
	}
	w, err := b.stack.StartWorker(d)
	require.NoError(t, err)
	return w
}

func (b *jobBundle) ec2ErrorCount(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ec2Errors[key]
}

// checkSnapshots asserts one snapshot per single-volume node and one set for
// node-3, every one tagged, and that the catalog record lists exactly them.
func (b *jobBundle) checkSnapshots(t *testing.T, job string) {
	t.Helper()
	ctx := t.Context()
	d, err := b.reg.Snapshotter("c1")
	require.NoError(t, err)
	snaps, err := d.Find(ctx, map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.Len(t, snaps, 4, "one snapshot per data volume, no duplicates")
	byVolume := map[string]worker.Snapshot{}
	for _, s := range snaps {
		byVolume[s.VolumeID] = s
	}
	for name, vols := range b.volumesOf {
		target := vols[0]
		if len(vols) > 1 {
			target = name
		}
		for _, v := range vols {
			s, ok := byVolume[v]
			require.True(t, ok, "no snapshot of %s (%s)", v, name)
			require.Equal(t, "true", s.Tags[messages.TagManaged])
			require.Equal(t, "c1", s.Tags[messages.TagCluster])
			require.Equal(t, job, s.Tags[messages.TagJob])
			require.Equal(t, name, s.Tags[messages.TagNode])
			require.Equal(t, "nightly", s.Tags[messages.TagPolicy])
			require.Equal(t, messages.TaskID(job, messages.KindSnapshot, target), s.Tags[messages.TagTask])
			require.NotEmpty(t, s.Tags[messages.TagName])
		}
		// The node flushed under the job's tag, then had its hard links
		// cleared.
		n := b.fleet.Node(name)
		events, err := simnode.Events(n.Root())
		require.NoError(t, err)
		var kinds []string
		for _, e := range events {
			require.Equal(t, "quiesce-"+job, e.Tag)
			kinds = append(kinds, e.Kind)
		}
		require.Equal(t, []string{"snapshot", "clear"}, kinds, name)
		tags, err := n.Tags()
		require.NoError(t, err)
		require.Empty(t, tags, name)
	}
	// node-3's volumes were taken by its one per-node task (the task tag
	// checked above), through the crash-consistent set call: how many
	// requests reached EC2 is for the SDK's retries and the load to say.
	require.Positive(t, b.proxy.Seen("CreateSnapshots"), "node-3's volumes as one set")

	backups, err := planner.Backups(ctx, b.env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	require.Equal(t, job, backups[0].JobID)
	require.Len(t, backups[0].Nodes, 3)
	var cataloged, want []string
	for _, r := range backups[0].Snapshots {
		cataloged = append(cataloged, r.SnapshotID)
	}
	for _, s := range snaps {
		want = append(want, s.ID)
	}
	require.ElementsMatch(t, want, cataloged)
}

// TestMotoFullBackupJob runs one backup job through planner, coordinator and
// worker, with nodes discovered in moto's EC2 by tag and snapshots taken by
// the ebs driver: node-3 has two data volumes and gets one CreateSnapshots
// set, the others one CreateSnapshot each. EC2 throttles the first two
// CreateSnapshot calls; the SDK retries them.
func TestMotoFullBackupJob(t *testing.T) {
	t.Parallel()
	b := setupJob(t)
	b.proxy.Only("CreateSnapshot").First(2)
	b.startWorker(t, nil)

	job := b.env.Submit(t, testenv.Request("c1", "ebs-moto-1"))
	j := b.env.WaitTerminal(t, job, 2*time.Minute)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)

	b.checkSnapshots(t, job)
	require.Equal(t, 2, b.proxy.Throttled(), "the first two calls were throttled, and retried")
	require.Equal(t, 2, b.ec2ErrorCount("CreateSnapshot "+ebs.CodeRequestLimitExceeded), "throttles counted through the hook")
}

// dyingSnapshotter creates the snapshots, then never returns: the worker
// process dies between the EC2 call and its ack.
type dyingSnapshotter struct {
	worker.Snapshotter
	created chan<- struct{}
}

func (d dyingSnapshotter) Create(ctx context.Context, req worker.CreateRequest) ([]worker.Snapshot, error) {
	if _, err := d.Snapshotter.Create(ctx, req); err != nil {
		return nil, err
	}
	select {
	case d.created <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, context.Cause(ctx)
}

// TestMotoKilledWorkerSnapshotsOnce: the first worker takes EBS snapshots and
// is killed before any result or ack; the tasks are redelivered to a second
// worker, which finds the snapshots by their task tags. Every volume has
// exactly one snapshot: the very ones the killed worker took. (How many
// create requests reached EC2 is no measure: under load an SDK retry or a
// redelivery adds requests that create nothing.)
func TestMotoKilledWorkerSnapshotsOnce(t *testing.T) {
	t.Parallel()
	b := setupJob(t)
	created := make(chan struct{}, 3)
	var dying atomic.Bool
	dying.Store(true)
	w1 := b.startWorker(t, func(c string) (worker.Snapshotter, error) {
		s, err := b.reg.Snapshotter(c)
		if err != nil || !dying.Load() {
			return s, err
		}
		return dyingSnapshotter{Snapshotter: s, created: created}, nil
	})

	job := b.env.Submit(t, testenv.Request("c1", "ebs-moto-kill"))
	// Let every snapshot task's EC2 call return on the doomed worker (a
	// call killed on its way may or may not have made its snapshots: the
	// redelivery would then rightly make them), then kill it.
	for range 3 {
		select {
		case <-created:
		case <-time.After(time.Minute):
			t.Fatal("not every snapshot task created its snapshots")
		}
	}
	// Let every snapshot task create its snapshots on the doomed worker,
	// then kill it.
	d, err := b.reg.Snapshotter("c1")
	require.NoError(t, err)
	var before []string
	require.Eventually(t, func() bool {
		snaps, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
		before = snapshotIDs(snaps)
		return err == nil && len(snaps) == 4
	}, time.Minute, 20*time.Millisecond)
	stop, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, w1.Kill(stop))
	dying.Store(false)

	b.startWorker(t, nil)
	j := b.env.WaitTerminal(t, job, 2*time.Minute)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)

	b.checkSnapshots(t, job)
	after, err := d.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.ElementsMatch(t, before, snapshotIDs(after), "no second snapshot after redelivery: the killed worker's are the backup")
}

// TestMotoRetentionDeletesRetiredSnapshots: with keep_last 1, the second
// job's retention task deletes the first job's EBS snapshots through the
// driver's guarded Delete and leaves the newest backup's alone.
func TestMotoRetentionDeletesRetiredSnapshots(t *testing.T) {
	t.Parallel()
	b := setupJob(t, func(c *config.Config) { c.Policies[0].KeepLast = 1 })
	b.startWorker(t, nil)

	first := b.env.Submit(t, testenv.Request("c1", "ebs-moto-ret-1"))
	j := b.env.WaitTerminal(t, first, 2*time.Minute)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	second := b.env.Submit(t, testenv.Request("c1", "ebs-moto-ret-2"))
	j = b.env.WaitTerminal(t, second, 2*time.Minute)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)

	d, err := b.reg.Snapshotter("c1")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		old, err := d.Find(t.Context(), map[string]string{messages.TagJob: first})
		return err == nil && len(old) == 0
	}, time.Minute, 50*time.Millisecond, "the retired job's snapshots are deleted")
	kept, err := d.Find(t.Context(), map[string]string{messages.TagJob: second})
	require.NoError(t, err)
	require.Len(t, kept, 4, "the newest backup keeps every snapshot")
	require.Eventually(t, func() bool {
		backups, err := planner.Backups(t.Context(), b.env.H.Catalog, "c1")
		return err == nil && len(backups) == 1 && backups[0].JobID == second
	}, time.Minute, 50*time.Millisecond)
}

func snapshotIDs(snaps []worker.Snapshot) []string {
	out := make([]string, 0, len(snaps))
	for _, s := range snaps {
		out = append(out, s.ID)
	}
	return out
}
