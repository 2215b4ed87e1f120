package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

const flushJob = "c1-0000000000aa"

// flushBundle is a worker running flush and clear tasks against a node tool
// of the test's, with the task results it published.
type flushBundle struct {
	env  *testenv.Env
	tool *recordingTool
}

func newFlushBundle(t *testing.T) *flushBundle {
	t.Helper()
	return newFlushBundleOf(t, func(r *recordingTool) worker.NodeTool { return r })
}

// newFlushBundleOf is newFlushBundle with the node tool the worker uses made
// from the recording one.
func newFlushBundleOf(t *testing.T, tool func(*recordingTool) worker.NodeTool) *flushBundle {
	t.Helper()
	env := testenv.New(t, topology.Options{})
	b := &flushBundle{env: env, tool: &recordingTool{NodeTool: fakes.NewNodeTool()}}
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool(b.tool), Snap: fakes.NewSnapshotter()}, worker.Config{
		Logger: zerolog.Nop(), Kinds: []messages.Kind{messages.KindFlush, messages.KindClear},
		BackoffBase: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
	})
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.StopAndCancel(ctx)
	})
	return b
}

// recordingTool is a node tool that can fail to connect, sync and gather
// facts, and records what it was asked.
type recordingTool struct {
	*fakes.NodeTool
	mu         sync.Mutex
	unreached  map[string]bool
	notRun     map[string]int // snapshots that fail as "nothing done" this many times
	synced     map[string][][]string
	syncErr    error
	clears     map[string]int
	snapTables []messages.TableSnapshot
	// armedAt and firedAt are when each node was last prepared and when
	// its snapshot was last asked for.
	armedAt, firedAt map[string]time.Time
	// onPrepare, when set, is called as a node is prepared.
	onPrepare func(node string)
}

var (
	_ worker.Preparer     = (*recordingTool)(nil)
	_ worker.Syncer       = (*recordingTool)(nil)
	_ worker.FactGatherer = (*recordingTool)(nil)
)

func (r *recordingTool) Prepare(_ context.Context, node messages.Node) error {
	if r.onPrepare != nil {
		r.onPrepare(node.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unreached[node.Name] {
		return errors.New("ssh: dial tcp 10.0.0.7:22: connect: connection refused")
	}
	if r.armedAt == nil {
		r.armedAt = map[string]time.Time{}
	}
	r.armedAt[node.Name] = time.Now()
	return nil
}

func (r *recordingTool) Snapshot(ctx context.Context, node messages.Node, tag string, ks []string) error {
	r.mu.Lock()
	if r.firedAt == nil {
		r.firedAt = map[string]time.Time{}
	}
	r.firedAt[node.Name] = time.Now()
	if r.notRun[node.Name] > 0 {
		r.notRun[node.Name]--
		r.mu.Unlock()
		return errclass.NotRun(errors.New("nodetool: Failed to connect to '127.0.0.1:7199' - ConnectException: 'Connection refused'."))
	}
	r.mu.Unlock()
	return r.NodeTool.Snapshot(ctx, node, tag, ks)
}

func (r *recordingTool) ClearSnapshot(ctx context.Context, node messages.Node, tag string) error {
	r.mu.Lock()
	if r.clears == nil {
		r.clears = map[string]int{}
	}
	r.clears[node.Name]++
	r.mu.Unlock()
	return r.NodeTool.ClearSnapshot(ctx, node, tag)
}

func (r *recordingTool) Sync(_ context.Context, node messages.Node, dirs []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.synced == nil {
		r.synced = map[string][][]string{}
	}
	r.synced[node.Name] = append(r.synced[node.Name], dirs)
	return r.syncErr
}

func (r *recordingTool) DataDirs(context.Context, messages.Node) ([]string, error) {
	return []string{"/found/data"}, nil
}

func (r *recordingTool) SnapshotTables(_ context.Context, node messages.Node, dirs []string, tag string) ([]messages.TableSnapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.NodeTool.TagsOn(node.Name)) == 0 {
		return nil, nil
	}
	out := append([]messages.TableSnapshot(nil), r.snapTables...)
	for i := range out {
		out[i].DataDir = dirs[0]
	}
	return out, nil
}

func (r *recordingTool) Describe(_ context.Context, node messages.Node) (messages.NodeFacts, error) {
	return messages.NodeFacts{HostID: "6d194555-f6eb-41d0-c000-000000000001", Datacenter: "dc1", Rack: "rack1",
		Address: "10.0.0.1", Tokens: []string{"-9", "9"}, Version: "5.0.6", ClusterName: "orders"}, nil
}

func (r *recordingTool) clearCalls(node string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clears[node]
}

func (b *flushBundle) publish(t *testing.T, task messages.Task) {
	t.Helper()
	task.Schema, task.JobID, task.Cluster = messages.TaskSchema, flushJob, "c1"
	if task.Tag == "" {
		task.Tag = "quiesce-t1"
	}
	task.ID = messages.TaskID(flushJob, task.Kind, task.Target)
	data, err := json.Marshal(task)
	require.NoError(t, err)
	_, err = b.env.JS.Publish(context.Background(), messages.SubjectTask(task.Kind, "c1"), data, jetstream.WithMsgID(task.ID))
	require.NoError(t, err)
}

// waitSettled waits until every published task was acknowledged: run,
// skipped or refused, none left for redelivery.
func (b *flushBundle) waitSettled(t *testing.T, what string) {
	t.Helper()
	require.NoError(t, testenv.Eventually(20*time.Second, func() bool {
		info, err := b.env.JS.Stream(context.Background(), messages.StreamTasks)
		return err == nil && info.CachedInfo().State.Msgs == 0
	}), what)
}

// setPhase writes the job's record with phase.
func (b *flushBundle) setPhase(t *testing.T, phase messages.Phase) {
	t.Helper()
	_, err := b.env.H.Jobs.Put(context.Background(), flushJob, []byte(`{"id":"`+flushJob+`","phase":"`+string(phase)+`"}`))
	require.NoError(t, err)
}

// result waits for the outcome of the task of kind on target.
func (b *flushBundle) result(t *testing.T, kind messages.Kind, target string) messages.TaskResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := b.env.JS.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectTaskEvent(flushJob, kind)}})
	require.NoError(t, err)
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
		require.NoError(t, err, "no %s result for %s", kind, target)
		var r messages.TaskResult
		require.NoError(t, json.Unmarshal(msg.Data(), &r))
		if r.Target == target {
			return r
		}
	}
}

func (b *flushBundle) intent(t *testing.T, node string) map[string]any {
	t.Helper()
	e, err := b.env.H.Jobs.Get(context.Background(), messages.IntentKey(flushJob, node))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal(e.Value(), &v))
	return v
}

func flushTask(node string, dirs []string) messages.Task {
	n := &messages.Node{Name: node}
	if dirs != nil {
		n.Dirs = &messages.NodeDirs{Data: dirs}
	}
	return messages.Task{Kind: messages.KindFlush, Target: node, Node: n}
}

func clearTask(node string, flushed, facts bool) messages.Task {
	return messages.Task{Kind: messages.KindClear, Target: node, Node: &messages.Node{Name: node}, Flushed: flushed, Facts: facts}
}

// A flush reports success with what it made durable: the data directories'
// file systems, or every file system when they are unknown.
func TestFlushSyncsAndSaysSo(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	b.publish(t, flushTask("n1", []string{"/var/lib/cassandra/data", "/data2"}))
	r := b.result(t, messages.KindFlush, "n1")
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
	require.Equal(t, &messages.FlushReport{Tag: "quiesce-t1", Synced: []string{"/var/lib/cassandra/data", "/data2"}}, untimed(t, r.Flush))
	require.Equal(t, "ran", b.intent(t, "n1")["state"])

	b.publish(t, flushTask("n2", nil))
	r = b.result(t, messages.KindFlush, "n2")
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
	require.Equal(t, &messages.FlushReport{Tag: "quiesce-t1", SyncedAll: true}, untimed(t, r.Flush))
	b.tool.mu.Lock()
	require.Equal(t, [][]string{nil}, b.tool.synced["n2"])
	b.tool.mu.Unlock()
}

// untimed checks that a flush report says when its command started and
// returned, and returns it without those times.
func untimed(t *testing.T, f *messages.FlushReport) *messages.FlushReport {
	t.Helper()
	require.NotNil(t, f)
	require.False(t, f.Started.IsZero(), "no start time")
	require.False(t, f.Returned.Before(f.Started), "returned %s before it started %s", f.Returned, f.Started)
	c := *f
	c.Started, c.Returned = time.Time{}, time.Time{}
	return &c
}

// A sync that fails fails the flush: the snapshot is not durable.
func TestFlushFailsWhenSyncFails(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	b.tool.syncErr = errclass.Permanent(errors.New("sync -f -- /nope exited 1: error opening '/nope': No such file or directory"))
	b.publish(t, flushTask("n1", []string{"/nope"}))
	r := b.result(t, messages.KindFlush, "n1")
	require.Equal(t, messages.OutcomeFailed, r.Outcome)
	require.Contains(t, r.Error, "snapshot quiesce-t1 made, but syncing the file systems of its data directories failed")
	require.Contains(t, r.Error, "No such file or directory")
}

// A tag already on the node that the job did not make (an operator's
// snapshot) fails the node with an error saying what to do; it is recorded
// as foreign, so the job's clean-up leaves it in place.
func TestForeignTagFailsTheNodeAndIsNeverCleared(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	b.tool.NodeTool.Tags["n1"] = map[string]bool{"quiesce-t1": true}
	b.publish(t, flushTask("n1", nil))
	r := b.result(t, messages.KindFlush, "n1")
	require.Equal(t, messages.OutcomeFailed, r.Outcome)
	require.Equal(t, messages.ClassPermanent, r.ErrorClass)
	require.Contains(t, r.Error, "snapshot tag quiesce-t1 already exists on node n1 and is not job "+flushJob+"'s own")
	require.Contains(t, r.Error, "nodetool clearsnapshot -t quiesce-t1")
	require.Equal(t, "foreign", b.intent(t, "n1")["state"])

	b.publish(t, clearTask("n1", false, false))
	c := b.result(t, messages.KindClear, "n1")
	require.Equal(t, messages.OutcomeSucceeded, c.Outcome, c.Error)
	require.False(t, c.Clear.Cleared)
	require.Contains(t, c.Clear.Note, "left in place")
	require.Zero(t, b.tool.clearCalls("n1"))
	require.Equal(t, []string{"quiesce-t1"}, b.tool.TagsOn("n1"), "the operator's snapshot is still there")
}

// A flush whose earlier attempt ran nodetool (and died before reporting)
// finds the tag its job made: success, marked as such.
func TestRedeliveredFlushOwnsItsTag(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	earlier, err := json.Marshal(map[string]any{"state": "ran", "attempt": 1, "worker": "w-dead", "at": time.Now()})
	require.NoError(t, err)
	_, err = b.env.H.Jobs.Create(context.Background(), messages.IntentKey(flushJob, "n1"), earlier)
	require.NoError(t, err)
	b.tool.NodeTool.Tags["n1"] = map[string]bool{"quiesce-t1": true}
	b.publish(t, flushTask("n1", nil))
	r := b.result(t, messages.KindFlush, "n1")
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
	require.True(t, r.Flush.Again)
	require.Equal(t, "ran", b.intent(t, "n1")["state"])
}

// A node that cannot be reached gets no intent, so its clean-up has nothing
// to clear and does not try the node again: the clear succeeds, and says so.
func TestUnreachableNodeHasNothingToClear(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	b.tool.unreached = map[string]bool{"n7": true}
	b.publish(t, flushTask("n7", nil))
	r := b.result(t, messages.KindFlush, "n7")
	require.Equal(t, messages.OutcomeFailed, r.Outcome)
	require.Contains(t, r.Error, "connection refused")
	require.Nil(t, b.intent(t, "n7"))

	b.publish(t, clearTask("n7", false, false))
	c := b.result(t, messages.KindClear, "n7")
	require.Equal(t, messages.OutcomeSucceeded, c.Outcome, c.Error)
	require.False(t, c.Clear.Cleared)
	require.Contains(t, c.Clear.Note, "nothing to clear")
	require.Zero(t, b.tool.clearCalls("n7"))
}

// A nodetool run that left the node as it was (JMX refused) withdraws the
// attempt's intent; the retry that succeeds makes a new one and owns its tag.
func TestNothingDoneWithdrawsTheIntent(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	b.tool.notRun = map[string]int{"n1": 2}
	b.publish(t, flushTask("n1", nil))
	r := b.result(t, messages.KindFlush, "n1")
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
	require.Equal(t, 3, r.Attempt, "two refused connections were retried")
	require.False(t, r.Flush.Again, "the tag was made by this attempt")
}

// A clear finds the tag its job made and clears it; asked for, it gathers
// the node's facts first (what the snapshot holds, before the tag goes),
// then what the node says about itself.
func TestClearGathersFactsThenClears(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	b.tool.snapTables = []messages.TableSnapshot{{Keyspace: "shop", Table: "orders", ID: "abc", SSTables: 2, Files: 16, Bytes: 4096}}
	b.publish(t, flushTask("n1", nil))
	require.Equal(t, messages.OutcomeSucceeded, b.result(t, messages.KindFlush, "n1").Outcome)

	b.publish(t, clearTask("n1", true, true))
	c := b.result(t, messages.KindClear, "n1")
	require.Equal(t, messages.OutcomeSucceeded, c.Outcome, c.Error)
	require.True(t, c.Clear.Cleared)
	require.Equal(t, messages.NodeFactsKey(flushJob, "n1"), c.Clear.Facts)
	require.Empty(t, b.tool.TagsOn("n1"))

	e, err := b.env.H.Jobs.Get(context.Background(), c.Clear.Facts)
	require.NoError(t, err)
	f, err := messages.DecodeNodeFacts(e.Value())
	require.NoError(t, err)
	require.Equal(t, "n1", f.Node)
	require.Equal(t, []string{"/found/data"}, f.Dirs.Data, "found with nodetool datapaths: none configured")
	require.Equal(t, []messages.TableSnapshot{{Keyspace: "shop", Table: "orders", ID: "abc", DataDir: "/found/data", SSTables: 2, Files: 16, Bytes: 4096}}, f.Tables)
	require.Equal(t, "6d194555-f6eb-41d0-c000-000000000001", f.HostID)
	require.Equal(t, "5.0.6", f.Version)
	require.Empty(t, f.Errors)
}

// A clear of a job planned before flushes recorded intents (Flushed set)
// clears even without one.
func TestClearWithoutIntentOfAFlushedNodeClears(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	b.tool.NodeTool.Tags["n1"] = map[string]bool{"quiesce-t1": true}
	b.publish(t, clearTask("n1", true, false))
	c := b.result(t, messages.KindClear, "n1")
	require.Equal(t, messages.OutcomeSucceeded, c.Outcome, c.Error)
	require.True(t, c.Clear.Cleared)
	require.Empty(t, b.tool.TagsOn("n1"))
	require.Equal(t, 1, b.tool.clearCalls("n1"))
}

// Facts too large for a value of the jobs bucket (a node of many tables)
// are stored in parts, the key saying how many and their digest: keys of
// the jobs bucket, which an agent's NATS user may write for its node.
func TestLargeFactsAreStoredInParts(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	for i := range 400 {
		b.tool.snapTables = append(b.tool.snapTables, messages.TableSnapshot{Keyspace: "ks", Table: fmt.Sprintf("t%d", i),
			CQL: strings.Repeat("x", 1024)})
	}
	b.publish(t, flushTask("n1", nil))
	require.Equal(t, messages.OutcomeSucceeded, b.result(t, messages.KindFlush, "n1").Outcome)
	b.publish(t, clearTask("n1", true, true))
	c := b.result(t, messages.KindClear, "n1")
	require.Equal(t, messages.OutcomeSucceeded, c.Outcome, c.Error)
	require.Equal(t, messages.NodeFactsKey(flushJob, "n1"), c.Clear.Facts)
	ctx := context.Background()
	e, err := b.env.H.Jobs.Get(ctx, c.Clear.Facts)
	require.NoError(t, err)
	head, err := messages.DecodeNodeFacts(e.Value())
	require.NoError(t, err)
	require.Equal(t, 2, head.Parts, "400 KiB of schema in parts of 256 KiB")
	var whole []byte
	for i := 1; i <= head.Parts; i++ {
		e, err := b.env.H.Jobs.Get(ctx, messages.NodeFactsPartKey(flushJob, "n1", i))
		require.NoError(t, err)
		whole = append(whole, e.Value()...)
	}
	sum := sha256.Sum256(whole)
	require.Equal(t, hex.EncodeToString(sum[:]), head.SHA256)
	f, err := messages.DecodeNodeFacts(whole)
	require.NoError(t, err)
	require.Len(t, f.Tables, 400)
	require.Equal(t, "n1", f.Node)
}

// A flush delivered again after its job ended, when an earlier attempt ran
// nodetool snapshot on the node (its result never counted: a publish that
// failed), clears the tag that attempt may have made after the job's
// clean-up cleared the node; a tag with no intent of the job's is left.
func TestFlushAfterItsJobEndedClearsWhatItsEarlierAttemptMade(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	ctx := context.Background()
	b.setPhase(t, messages.PhaseSucceeded)
	earlier, err := json.Marshal(map[string]any{"state": "ran", "attempt": 2, "worker": "w-dead", "at": time.Now()})
	require.NoError(t, err)
	_, err = b.env.H.Jobs.Create(ctx, messages.IntentKey(flushJob, "n1"), earlier)
	require.NoError(t, err)
	b.tool.NodeTool.Tags["n1"] = map[string]bool{"quiesce-t1": true}
	b.tool.NodeTool.Tags["n2"] = map[string]bool{"quiesce-t1": true}

	b.publish(t, flushTask("n1", nil))
	b.publish(t, flushTask("n2", nil))
	require.NoError(t, testenv.Eventually(20*time.Second, func() bool { return b.tool.clearCalls("n1") == 1 }))
	require.Empty(t, b.tool.NodeTool.TagsOn("n1"), "the job's own tag, made after its clean-up")
	// n2's flush is settled too (skipped), and its tag, never the job's, stays.
	b.waitSettled(t, "n2's flush settled")
	require.Zero(t, b.tool.clearCalls("n2"))
	require.Equal(t, []string{"quiesce-t1"}, b.tool.NodeTool.TagsOn("n2"))
}

// The job's default tag names the job: found on the node with no intent of
// an earlier attempt (withdrawn after an error that hid a command that did
// run), it is the job's own; the flush succeeds and the clean-up clears it.
func TestDefaultTagOnTheNodeIsTheJobsOwn(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	tag := messages.DefaultTag(flushJob)
	b.tool.NodeTool.Tags["n1"] = map[string]bool{tag: true}
	task := flushTask("n1", nil)
	task.Tag = tag
	b.publish(t, task)
	r := b.result(t, messages.KindFlush, "n1")
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
	require.True(t, r.Flush.Again)
	require.Equal(t, "ran", b.intent(t, "n1")["state"])

	clear := clearTask("n1", true, false)
	clear.Tag = tag
	b.publish(t, clear)
	c := b.result(t, messages.KindClear, "n1")
	require.Equal(t, messages.OutcomeSucceeded, c.Outcome, c.Error)
	require.True(t, c.Clear.Cleared)
	require.Empty(t, b.tool.TagsOn("n1"))
}

// A job's phase is read for each task, never remembered from an earlier
// task of the job: once the job has failed, a flush delivered after that
// runs nothing on its node, though the job's previous flush, a moment
// before, found it flushing.
func TestFlushOfAJobThatEndedSinceItsPreviousTaskRunsNothing(t *testing.T) {
	t.Parallel()
	b := newFlushBundle(t)
	b.setPhase(t, messages.PhaseFlushing)
	b.publish(t, flushTask("n1", nil))
	require.Equal(t, messages.OutcomeSucceeded, b.result(t, messages.KindFlush, "n1").Outcome)
	b.waitSettled(t, "n1's flush settled")

	b.setPhase(t, messages.PhaseFailed)
	b.publish(t, flushTask("n2", nil))
	b.waitSettled(t, "n2's flush settled")
	require.Empty(t, b.tool.NodeTool.TagsOn("n2"), "a flush of a job that ended ran nodetool snapshot")
	require.Nil(t, b.intent(t, "n2"), "a flush of a job that ended recorded an intent")
}
