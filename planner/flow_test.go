package planner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

const jobTimeout = 30 * time.Second

func TestHappyPathHoldsTheBarrier(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 2})
	// Stagger the flushes so a snapshot released early would show.
	b.tool.Delay = func(node string) time.Duration {
		if node == "node-3" {
			return 300 * time.Millisecond
		}
		return 10 * time.Millisecond
	}
	b.startAll(t)

	job := b.env.Submit(t, testenv.Request("c1", "happy-1"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)

	// The barrier, by the drivers' own clocks: every node flushed before
	// the first snapshot was requested.
	require.Len(t, b.tool.FlushedAt, 3)
	require.True(t, b.tool.LastFlush().Before(b.snap.FirstCreate()),
		"last flush %s not before first snapshot %s", b.tool.LastFlush(), b.snap.FirstCreate())

	// One snapshot per volume, each tagged with its task.
	require.EqualValues(t, 6, b.snap.Creates.Load())
	for n := 1; n <= 3; n++ {
		for v := 1; v <= 2; v++ {
			vol := fmt.Sprintf("vol-%d-%d", n, v)
			require.Equal(t, 1, b.snap.Count(map[string]string{
				messages.TagTask: messages.TaskID(job, messages.KindSnapshot, vol), messages.TagManaged: "true",
				messages.TagJob: job, messages.TagCluster: "c1",
			}), vol)
		}
		// Clear ran: no tag left on any node.
		require.Empty(t, b.tool.TagsOn(fmt.Sprintf("node-%d", n)))
	}
	require.Equal(t, 3, j.Progress.Cleared)

	// The catalog lists every snapshot.
	backups, err := planner.Backups(context.Background(), b.env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	require.Equal(t, job, backups[0].JobID)
	require.Len(t, backups[0].Snapshots, 6)
	require.Len(t, backups[0].Nodes, 3)
	require.Equal(t, "quiesce-"+job, backups[0].Tag)

	for _, p := range []messages.Phase{messages.PhasePlanned, messages.PhaseFlushing, messages.PhaseSnapshotting, messages.PhaseFinishing, messages.PhaseSucceeded} {
		require.Contains(t, j.PhaseTimes, p)
	}
	require.False(t, j.FlushFirst.IsZero())
	require.False(t, j.BarrierAt.Before(j.FlushLast))
}

func TestFailedFlushFailsJobAndClearsOtherNodes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 2})
	b.tool.Fail = func(node string) error {
		if node == "node-2" {
			return errclass.Permanent(errors.New("nodetool: Keyspace ks1 does not exist"))
		}
		return nil
	}
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "flush-fails"))
	j := b.env.WaitTerminal(t, job, jobTimeout)

	require.Equal(t, messages.PhaseFailed, j.Phase)
	require.Contains(t, j.Error, "node-2")
	require.Contains(t, j.Error, "Keyspace ks1 does not exist")
	require.Len(t, j.Failures, 1)
	require.Equal(t, "node-2", j.Failures[0].Target)
	require.Equal(t, messages.ClassPermanent, j.Failures[0].Class)

	require.Zero(t, b.snap.Creates.Load(), "no snapshot may be taken after a failed flush")
	// The nodes that flushed have their tags cleared.
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		return len(b.tool.TagsOn("node-1")) == 0 && len(b.tool.TagsOn("node-3")) == 0 && b.tool.Clears.Load() >= 2
	}))
}

func TestKilledWorkerTaskIsRedeliveredAndSnapshotsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 2, ackWait: time.Second})
	b.startPlanner(t)
	b.startCoordinator(t)

	// The first worker creates a snapshot and is killed before it can
	// report or ack: its connection drops and its tasks stop.
	hold := make(chan struct{})
	b.snap.Hold = hold
	nc1, js1 := b.env.Connect(t)
	w1 := b.startWorker(t, js1, nil)

	job := b.env.Submit(t, testenv.Request("c1", "kill-worker"))
	require.NoError(t, testenv.Eventually(jobTimeout, func() bool { return b.snap.Creates.Load() > 0 }))
	nc1.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, w1.StopAndCancel(ctx))
	b.snap.Hold = nil
	close(hold)

	_, js2 := b.env.Connect(t)
	b.startWorker(t, js2, nil)
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	for n := 1; n <= 2; n++ {
		for v := 1; v <= 2; v++ {
			vol := fmt.Sprintf("vol-%d-%d", n, v)
			require.Equal(t, 1, b.snap.Count(map[string]string{messages.TagTask: messages.TaskID(job, messages.KindSnapshot, vol)}), vol)
		}
	}
	require.EqualValues(t, 4, b.snap.Creates.Load())
}

func TestCoordinatorReplacedMidJob(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 1})
	block := make(chan struct{})
	b.tool.Block = block
	b.startPlanner(t)
	c1 := b.startCoordinator(t)
	_, js := b.env.Connect(t)
	b.startWorker(t, js, nil)

	job := b.env.Submit(t, testenv.Request("c1", "coord-restart"))
	b.env.WaitFor(t, job, jobTimeout, func(j messages.Job) bool { return j.Phase == messages.PhaseFlushing })
	require.NoError(t, c1.Stop(context.Background()))
	close(block) // flushes finish while no coordinator runs

	time.Sleep(200 * time.Millisecond)
	j, err := b.env.Job(context.Background(), job)
	require.NoError(t, err)
	require.Equal(t, messages.PhaseFlushing, j.Phase, "nothing advances without a coordinator")

	b.startCoordinator(t)
	j = b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	require.EqualValues(t, 3, b.snap.Creates.Load())
}

func TestTwoCoordinatorsTransitionOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 20, volumes: 2})
	b.tool.Delay = func(string) time.Duration { return 5 * time.Millisecond }
	b.startPlanner(t)
	b.startCoordinator(t)
	b.startCoordinator(t)
	for i := 0; i < 2; i++ {
		_, js := b.env.Connect(t)
		b.startWorker(t, js, nil)
	}
	var jobs []string
	for i := 0; i < 3; i++ {
		jobs = append(jobs, b.env.Submit(t, testenv.Request("c1", fmt.Sprintf("two-coords-%d", i))))
	}
	for _, job := range jobs {
		j := b.env.WaitTerminal(t, job, jobTimeout)
		require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	}
	// The record turns terminal before the transition is reported: wait
	// for the reports, then make sure no second one follows.
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		finished, _ := b.obs.counts()
		return finished[messages.PhaseSucceeded] >= 3
	}))
	time.Sleep(500 * time.Millisecond)
	finished, barriers := b.obs.counts()
	require.Equal(t, 3, finished[messages.PhaseSucceeded], "each job finishes once")
	require.Equal(t, 3, barriers, "each barrier is released once")
	require.EqualValues(t, 3*40, b.snap.Creates.Load())
}

func TestDuplicateRequestMakesOneJob(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 1})
	b.startAll(t)
	req := testenv.Request("c1", "dup-1")
	job := b.env.Submit(t, req)
	b.env.WaitTerminal(t, job, jobTimeout)
	// Again with the same message ID (deduplicated by the stream) and
	// again without one (caught by the job record).
	b.env.Submit(t, req)
	data := []byte(`{"schema":"quiesce.job-request/v1","request_id":"dup-1","cluster":"c1"}`)
	b.env.SubmitRaw(t, data, "")
	require.NoError(t, testenv.Eventually(5*time.Second, func() bool {
		n, err := b.env.StreamCount(context.Background(), messages.StreamJobs)
		return err == nil && n == 0
	}))
	require.EqualValues(t, 2, b.snap.Creates.Load())
	require.EqualValues(t, 2, b.tool.Calls.Load())
}

func TestBadRequestsAreRejectedAndStartNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.startAll(t)
	cases := []struct {
		desc, body, requestID, jobID, reason, class string
	}{
		{"malformed JSON", `{"schema": "quiesce.job-request/v1", "request_id": `, "", messages.InvalidJobID, "not valid JSON", "malformed"},
		{"unknown cluster", `{"schema":"quiesce.job-request/v1","request_id":"r-unknown","cluster":"nope"}`, "r-unknown",
			messages.JobIDFor("nope", "r-unknown"), `unknown cluster "nope"`, "unknown_cluster"},
		{"shell metacharacters in tag", `{"schema":"quiesce.job-request/v1","request_id":"r-tag","cluster":"c1","tag":"x; rm -rf /"}`,
			"r-tag", messages.JobIDFor("c1", "r-tag"), `tag "x; rm -rf /"`, "invalid"},
		{"unknown field", `{"schema":"quiesce.job-request/v1","request_id":"r-field","cluster":"c1","dedline":"soon"}`,
			"r-field", messages.JobIDFor("c1", "r-field"), `unknown field "dedline"`, "malformed"},
		{"unknown policy", `{"schema":"quiesce.job-request/v1","request_id":"r-pol","cluster":"c1","policy":"hourly"}`, "r-pol",
			messages.JobIDFor("c1", "r-pol"), `no policy "hourly"`, "unknown_policy"},
	}
	for _, tc := range cases {
		b.env.SubmitRaw(t, []byte(tc.body), "")
		rej := b.env.Rejection(t, tc.jobID, tc.requestID, 10*time.Second)
		require.Contains(t, rej.Reason, tc.reason, tc.desc)
		require.Equal(t, tc.jobID, rej.JobID, tc.desc)
		if tc.jobID != messages.InvalidJobID {
			_, err := b.env.Job(context.Background(), tc.jobID)
			require.Error(t, err, "%s: no job record", tc.desc)
		}
	}
	// Terminated, not redelivered, and nothing started.
	require.NoError(t, testenv.Eventually(5*time.Second, func() bool {
		n, err := b.env.StreamCount(context.Background(), messages.StreamJobs)
		return err == nil && n == 0
	}))
	n, err := b.env.StreamCount(context.Background(), messages.StreamTasks)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Zero(t, b.tool.Calls.Load())
	b.obs.mu.Lock()
	defer b.obs.mu.Unlock()
	require.Equal(t, 1, b.obs.rejected["unknown_cluster"])
	require.Equal(t, 1, b.obs.rejected["invalid"])
}

func TestRetentionKeepsTheNewest(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 1, keepLast: 2})
	b.startAll(t)
	var jobs []string
	for i := 0; i < 4; i++ {
		job := b.env.Submit(t, testenv.Request("c1", fmt.Sprintf("ret-%d", i)))
		j := b.env.WaitTerminal(t, job, jobTimeout)
		require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
		jobs = append(jobs, job)
	}
	// An unmanaged snapshot of the same job never goes.
	backups, err := planner.Backups(context.Background(), b.env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 2)
	require.Equal(t, jobs[3], backups[0].JobID, "the newest backup is kept")
	require.Equal(t, jobs[2], backups[1].JobID)
	for i, job := range jobs {
		n := b.snap.Count(map[string]string{messages.TagJob: job})
		if i < 2 {
			require.Zero(t, n, "job %d retired", i)
		} else {
			require.Equal(t, 2, n, "job %d kept", i)
		}
	}
	require.EqualValues(t, 4, b.snap.Deletes.Load())
}

// A held backup outlives the rule that would retire it, and goes once the
// hold is released and a later job applies the rule again.
func TestHeldBackupIsNotRetired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{nodes: 1, volumes: 1, keepLast: 1})
	b.startAll(t)
	run := func(id string) string {
		job := b.env.Submit(t, testenv.Request("c1", id))
		j := b.env.WaitTerminal(t, job, jobTimeout)
		require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
		return job
	}
	first := run("held-0")
	require.NoError(t, planner.PutHold(ctx, b.env.H.Holds, "c1", planner.Hold{JobID: first, Reason: "audit", At: time.Now()}))
	second := run("held-1")
	third := run("held-2")
	require.Equal(t, 1, b.snap.Count(map[string]string{messages.TagJob: first}), "held: kept")
	require.Zero(t, b.snap.Count(map[string]string{messages.TagJob: second}), "not held: retired")

	released, err := planner.ReleaseHold(ctx, b.env.H.Holds, "c1", first)
	require.NoError(t, err)
	require.True(t, released)
	run("held-3")
	require.Zero(t, b.snap.Count(map[string]string{messages.TagJob: first}), "released: retired by the next job")
	require.Zero(t, b.snap.Count(map[string]string{messages.TagJob: third}))
	backups, err := planner.Backups(ctx, b.env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
}

func TestSelectRetired(t *testing.T) {
	t.Parallel()
	bk := func(id string, ago time.Duration) messages.Backup {
		return messages.Backup{JobID: id, FinishedAt: time.Unix(1_000_000, 0).Add(-ago)}
	}
	newestFirst := []messages.Backup{bk("c-000000000004", 0), bk("c-000000000003", time.Hour), bk("c-000000000002", 2*time.Hour), bk("c-000000000001", 3*time.Hour)}
	cases := []struct {
		desc string
		keep int
		want []string
	}{
		{"keep zero retires nothing", 0, nil},
		{"keep one keeps the newest", 1, []string{"c-000000000001", "c-000000000002", "c-000000000003"}},
		{"keep two", 2, []string{"c-000000000001", "c-000000000002"}},
		{"keep more than there are", 9, nil},
	}
	for _, tc := range cases {
		got := planner.SelectRetired(newestFirst, tc.keep)
		require.Equal(t, tc.want, got, tc.desc)
		require.Equal(t, got, planner.SelectRetired(newestFirst, tc.keep), "same answer twice")
		require.NotContains(t, got, "c-000000000004", tc.desc)
	}
}

// A backup too large to keep inline in the catalog bucket keeps its nodes
// and snapshots in a manifest; the record names it, and retention removes
// both.
func TestLargeBackupKeepsItsManifestApart(t *testing.T) {
	// Not parallel: it changes a package setting.
	defer planner.SetCatalogInlineLimit(1)()
	b := setup(t, setupOpts{nodes: 3, volumes: 2, keepLast: 1})
	b.startAll(t)
	first := b.env.Submit(t, testenv.Request("c1", "large-1"))
	require.Equal(t, messages.PhaseSucceeded, b.env.WaitTerminal(t, first, jobTimeout).Phase)

	ctx := context.Background()
	backups, err := planner.Backups(ctx, b.env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	summary := backups[0]
	require.Empty(t, summary.Snapshots)
	require.Equal(t, 6, summary.SnapshotCount)
	require.Equal(t, 3, summary.NodeCount)
	require.Equal(t, messages.CatalogKey("c1", first), summary.Manifest)
	full, err := planner.LoadBackup(ctx, b.env.H, summary)
	require.NoError(t, err)
	require.Len(t, full.Snapshots, 6)
	require.Len(t, full.Nodes, 3)

	second := b.env.Submit(t, testenv.Request("c1", "large-2"))
	require.Equal(t, messages.PhaseSucceeded, b.env.WaitTerminal(t, second, jobTimeout).Phase)
	_, err = b.env.H.Manifests.GetInfo(ctx, messages.CatalogKey("c1", first))
	require.Error(t, err, "the retired backup's manifest is removed with its record")
}

// The catalog records each snapshot as it is when the record is written, not
// as it was when its task created it: snapshots pending at creation and
// completed later are catalogued completed.
func TestCatalogRecordsSnapshotsAsTheyAreAtTheEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 2, volumes: 2})
	b.snap.Pending = true
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "pending-then-completed"))
	require.Eventually(t, func() bool { return b.snap.Count(map[string]string{messages.TagJob: job}) == 4 },
		jobTimeout, 10*time.Millisecond)
	b.snap.Complete()
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)

	backups, err := planner.Backups(context.Background(), b.env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	require.Len(t, backups[0].Snapshots, 4)
	for _, s := range backups[0].Snapshots {
		require.Equal(t, worker.StateCompleted, s.State, s.SnapshotID)
	}
	require.False(t, backups[0].Partial)
}

// A rejection quotes what it refuses in bounded form: a 10 KB request ID
// is named by its first bytes and its length, not echoed twice over.
func TestRejectionEchoesBoundedValues(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.startAll(t)
	huge := strings.Repeat("r", 10<<10)
	body := `{"schema":"quiesce.job-request/v1","request_id":"` + huge + `","cluster":"c1","reason":"` + strings.Repeat("é", 2000) + `"}`
	b.env.SubmitRaw(t, []byte(body), "")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cons, err := b.env.JS.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectRejected(messages.InvalidJobID)},
	})
	require.NoError(t, err)
	m, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
	require.NoError(t, err)
	require.Less(t, len(m.Data()), 2048, "the event: %s", m.Data())
	var rej messages.Rejection
	require.NoError(t, json.Unmarshal(m.Data(), &rej))
	require.Equal(t, "invalid", rej.Code)
	require.Contains(t, rej.Reason, "(10240 bytes)")
	require.Contains(t, rej.RequestID, "(10240 bytes)")
	require.Contains(t, rej.Reason, "reason: is 2000 characters, more than 1024")
}

// The catalog record of a backup holds the cluster's topology: what each
// node said about itself and what its snapshot holds (gathered by its clear
// task), the schema's CQL once, and every volume.
func TestCatalogHoldsTheTopology(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 2})
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "topology-1"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)

	backups, err := planner.Backups(context.Background(), b.env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	topo := backups[0].Topology
	require.NotNil(t, topo)
	require.Empty(t, backups[0].Warnings)
	require.Equal(t, "fake", topo.ClusterName)
	require.Equal(t, "org.apache.cassandra.dht.Murmur3Partitioner", topo.Partitioner)
	require.Equal(t, "5.0.6", topo.CassandraVersion)
	require.Equal(t, 2, topo.NumTokens)
	require.Equal(t, "CREATE KEYSPACE IF NOT EXISTS ks1 WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'};\n"+
		"CREATE TABLE IF NOT EXISTS ks1.t1 (id int PRIMARY KEY) WITH ID = 5a1c395e-0b4a-11f0-a5a2-c3f0d1e2f3a4;\n", topo.Schema)
	require.Len(t, topo.Nodes, 3)
	for _, n := range topo.Nodes {
		require.NotEmpty(t, n.HostID, n.Node)
		require.Equal(t, []string{"/fake/" + n.Node + "/data"}, n.Dirs.Data, "found by datapaths: none configured")
		require.Len(t, n.Tables, 1, n.Node)
		require.Equal(t, 8, n.Tables[0].Files)
		require.Empty(t, n.Tables[0].CQL, "the schema is kept once, not per node")
	}
	require.Len(t, topo.Volumes, 6)
	require.Equal(t, messages.VolumeFacts{VolumeID: "vol-1-1", Node: "node-1", AZ: "fake-1a", SizeGiB: 10, Type: "gp3", IOPS: 3000,
		Throughput: 125, MountPoint: "/unused"}, topo.Volumes[0], "as the driver described it, with the inventory's mount point")

	// Every flush synced every file system of its node (no data
	// directories known); the next job knows them from this catalog and
	// syncs only theirs.
	for n := 1; n <= 3; n++ {
		require.Equal(t, [][]string{nil}, b.tool.SyncedOn(fmt.Sprintf("node-%d", n)))
	}
	job2 := b.env.Submit(t, testenv.Request("c1", "topology-2"))
	require.Equal(t, messages.PhaseSucceeded, b.env.WaitTerminal(t, job2, jobTimeout).Phase)
	require.Equal(t, [][]string{nil, {"/fake/node-2/data"}}, b.tool.SyncedOn("node-2"))
}

// A node that could not be reached fails the job; the job's clean-up has
// nothing to clear there (its flush never ran nodetool), so the job shows
// one failure, the flush, and no failed clear or warning about its tag.
func TestUnreachableNodeIsOneFailureNotTwo(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{nodes: 3, volumes: 1})
	b.tool.Fail = func(node string) error {
		if node == "node-3" {
			return errclass.Permanent(errclass.NotRun(errors.New("ssh: dial tcp 10.0.0.3:22: connect: connection refused")))
		}
		return nil
	}
	b.startAll(t)
	job := b.env.Submit(t, testenv.Request("c1", "unreachable"))
	j := b.env.WaitTerminal(t, job, jobTimeout)
	require.Equal(t, messages.PhaseFailed, j.Phase)
	j = b.env.WaitFor(t, job, jobTimeout, func(j messages.Job) bool { return j.Progress.Cleared == 3 })
	require.Len(t, j.Failures, 1, "%+v", j.Failures)
	require.Equal(t, messages.KindFlush, j.Failures[0].Kind)
	require.Equal(t, "node-3", j.Failures[0].Target)
	require.Zero(t, j.Progress.ClearFailed)
	require.Empty(t, j.Warnings)
	for n := 1; n <= 3; n++ {
		require.Empty(t, b.tool.TagsOn(fmt.Sprintf("node-%d", n)))
	}
}
