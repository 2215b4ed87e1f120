package drill_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/drill"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
)

// testBundle is a server with the topology, a runner whose drills are
// played by outcome, and what the drills were asked.
type testBundle struct {
	env    *testenv.Env
	runner *drill.Runner

	mu    sync.Mutex
	calls map[string]int // drill ID → runs
	// outcome plays a drill; the default succeeds at once.
	outcome func(ctx context.Context, req messages.DrillRequest, id string) (messages.Drill, error)
}

type setupOpts struct {
	clusters []string
	ackWait  time.Duration
	outcome  func(ctx context.Context, req messages.DrillRequest, id string) (messages.Drill, error)
}

func setup(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	if o.clusters == nil {
		o.clusters = []string{"c1"}
	}
	b := &testBundle{env: testenv.New(t, topology.Options{AckWait: o.ackWait}), calls: map[string]int{}, outcome: o.outcome}
	if b.outcome == nil {
		b.outcome = func(_ context.Context, req messages.DrillRequest, id string) (messages.Drill, error) {
			now := time.Now().UTC()
			return messages.Drill{Schema: messages.DrillSchema, DrillID: id, Source: req.Cluster, Target: "scratch",
				Outcome: messages.DrillSucceeded, Began: now, Ended: now, TornDown: true}, nil
		}
	}
	b.runner = drill.NewRunner(b.env.JS, drill.RunnerConfig{Clusters: o.clusters, Catalog: b.env.H.Catalog, Logger: zerolog.Nop(),
		Heartbeat: 200 * time.Millisecond, UnknownDelay: 100 * time.Millisecond,
		Run: func(ctx context.Context, req messages.DrillRequest, id string) (messages.Drill, error) {
			b.mu.Lock()
			b.calls[id]++
			b.mu.Unlock()
			return b.outcome(ctx, req, id)
		}})
	require.NoError(t, b.runner.Start(t.Context()))
	t.Cleanup(func() { _ = b.runner.Stop(context.Background()) })
	return b
}

func (b *testBundle) runs() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.calls {
		out[k] = v
	}
	return out
}

func request(cluster, requestID string) messages.DrillRequest {
	return messages.DrillRequest{Schema: messages.DrillRequestSchema, RequestID: requestID, Cluster: cluster, RequestedBy: "test"}
}

func (b *testBundle) submit(t *testing.T, data []byte, msgID string) {
	t.Helper()
	_, err := b.env.JS.Publish(t.Context(), messages.SubjectDrillSubmit, data, jetstream.WithMsgID(msgID))
	require.NoError(t, err)
}

func (b *testBundle) submitRequest(t *testing.T, req messages.DrillRequest, msgID string) {
	t.Helper()
	data, err := json.Marshal(req)
	require.NoError(t, err)
	b.submit(t, data, msgID)
}

// drills reads the cluster's drill records, by drill ID.
func (b *testBundle) drills(t *testing.T, cluster string) map[string]messages.Drill {
	t.Helper()
	out := map[string]messages.Drill{}
	lister, err := b.env.H.Catalog.ListKeysFiltered(t.Context(), messages.DrillKey(cluster, "*"))
	require.NoError(t, err)
	for k := range lister.Keys() {
		e, err := b.env.H.Catalog.Get(t.Context(), k)
		require.NoError(t, err)
		d, err := messages.DecodeDrill(e.Value())
		require.NoError(t, err)
		out[d.DrillID] = d
	}
	return out
}

// settled waits until the drill consumer has nothing pending, waiting or
// in hand, and returns its state.
func (b *testBundle) settled(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	cons, err := b.env.JS.Consumer(t.Context(), messages.StreamJobs, topology.ConsumerDrills)
	require.NoError(t, err)
	var info *jetstream.ConsumerInfo
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		info, err = cons.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	}))
	return info
}

// A drill schedule's firings reach the runner: each firing is a drill of
// its own, recorded once, noting the schedule as its requester.
func TestScheduledDrillRunsOncePerFiring(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := t.Context()
	_, err := planner.SyncDrillSchedules(ctx, b.env.JS, []planner.DrillSchedule{{Cluster: "c1", Schedule: "@every 1s"}}, nil)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(20*time.Second, func() bool { return len(b.drills(t, "c1")) >= 2 }))
	_, err = planner.SyncDrillSchedules(ctx, b.env.JS, nil, nil)
	require.NoError(t, err)
	time.Sleep(1500 * time.Millisecond) // a firing already under way lands
	b.settled(t)

	recs := b.drills(t, "c1")
	runs := b.runs()
	require.Len(t, runs, len(recs), "every firing run is recorded")
	for id, rec := range recs {
		require.Equal(t, 1, runs[id], "drill %s ran once", id)
		require.Equal(t, "schedule", rec.RequestedBy)
		require.True(t, strings.HasPrefix(rec.RequestID, "drill-schedule-c1@"), rec.RequestID)
		require.Equal(t, messages.DrillIDFor(rec.RequestID), id)
		require.Equal(t, messages.DrillSucceeded, rec.Outcome)
	}
}

// The same request delivered again (published again under another message
// ID, past the stream's duplicate check) finds its drill recorded and does
// not run it again.
func TestDrillRequestDeliveredTwiceRecordsOneDrill(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	req := request("c1", "weekly-7")
	b.submitRequest(t, req, "weekly-7")
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(b.drills(t, "c1")) == 1 }))
	b.submitRequest(t, req, "weekly-7-again")
	b.submitRequest(t, req, "weekly-7") // dropped by the stream
	info := b.settled(t)
	require.EqualValues(t, 2, info.Delivered.Consumer, "the stream dropped the duplicate message ID")
	require.Equal(t, map[string]int{req.DrillID(): 1}, b.runs())
	rec := b.drills(t, "c1")[req.DrillID()]
	require.Equal(t, "weekly-7", rec.RequestID)
	require.Equal(t, "test", rec.RequestedBy)
}

// A request for a cluster whose drill this process does not have is left
// for another process, never run here.
func TestDrillOfAnUnknownClusterIsNotRun(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{clusters: []string{"c1"}})
	b.submitRequest(t, request("c2", "elsewhere"), "elsewhere")
	cons, err := b.env.JS.Consumer(t.Context(), messages.StreamJobs, topology.ConsumerDrills)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.Delivered.Consumer >= topology.DrillRunnerMaxDeliver && info.NumAckPending == 0
	}), "delivered again until the consumer's limit")
	require.Empty(t, b.runs())
	require.Empty(t, b.drills(t, "c2"))
}

// A drill that fails, or never begins, is recorded failed and its request
// acknowledged: it is not run again.
func TestFailedDrillIsRecordedAndNotRedelivered(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{outcome: func(_ context.Context, req messages.DrillRequest, id string) (messages.Drill, error) {
		if req.RequestID == "never-began" {
			return messages.Drill{}, errors.New("drill target \"gone\" is not in the configuration")
		}
		now := time.Now().UTC()
		return messages.Drill{Schema: messages.DrillSchema, DrillID: id, Source: req.Cluster, Target: "scratch",
			Outcome: messages.DrillFailed, Error: "verify: node s1 is DN", Began: now, Ended: now, TornDown: true}, nil
	}})
	b.submitRequest(t, request("c1", "failing"), "failing")
	b.submitRequest(t, request("c1", "never-began"), "never-began")
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(b.drills(t, "c1")) == 2 }))
	time.Sleep(500 * time.Millisecond)
	info := b.settled(t)
	require.EqualValues(t, 2, info.Delivered.Consumer)
	require.Equal(t, map[string]int{messages.DrillIDFor("failing"): 1, messages.DrillIDFor("never-began"): 1}, b.runs())
	recs := b.drills(t, "c1")
	failed := recs[messages.DrillIDFor("failing")]
	require.Equal(t, messages.DrillFailed, failed.Outcome)
	require.Equal(t, "verify: node s1 is DN", failed.Error)
	never := recs[messages.DrillIDFor("never-began")]
	require.Equal(t, messages.DrillFailed, never.Outcome)
	require.Equal(t, "c1", never.Source)
	require.Contains(t, never.Error, "not in the configuration")
}

// A request that is not a DrillRequest is refused, not run, not retried.
func TestBadDrillRequestIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.submit(t, []byte(`{"schema":"quiesce.drill-request/v1","request_id":"x","cluster":"c1","target":"prod"}`), "bad")
	info := b.settled(t)
	require.EqualValues(t, 1, info.Delivered.Consumer)
	require.Empty(t, b.runs())
}

// A drill cut short by its process's stop is not recorded: its request is
// delivered again, and the next runner runs the drill from the start.
func TestInterruptedDrillRunsAgain(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	b := setup(t, setupOpts{outcome: func(ctx context.Context, req messages.DrillRequest, id string) (messages.Drill, error) {
		started <- struct{}{}
		<-ctx.Done()
		now := time.Now().UTC()
		return messages.Drill{Schema: messages.DrillSchema, DrillID: id, Source: req.Cluster, Outcome: messages.DrillFailed,
			Error: ctx.Err().Error(), Began: now, Ended: now}, nil
	}})
	b.submitRequest(t, request("c1", "cut-short"), "cut-short")
	<-started
	time.Sleep(700 * time.Millisecond) // the heartbeat keeps it in hand meanwhile
	sctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, b.runner.Stop(sctx), context.DeadlineExceeded)
	require.Empty(t, b.drills(t, "c1"), "an interrupted drill is not recorded")

	b.outcome = func(_ context.Context, req messages.DrillRequest, id string) (messages.Drill, error) {
		now := time.Now().UTC()
		return messages.Drill{Schema: messages.DrillSchema, DrillID: id, Source: req.Cluster, Outcome: messages.DrillSucceeded,
			Began: now, Ended: now}, nil
	}
	require.NoError(t, b.runner.Start(t.Context()))
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(b.drills(t, "c1")) == 1 }))
	require.Equal(t, map[string]int{messages.DrillIDFor("cut-short"): 2}, b.runs())
	require.Equal(t, messages.DrillSucceeded, b.drills(t, "c1")[messages.DrillIDFor("cut-short")].Outcome)
}

// A drill longer than the consumer's AckWait stays in hand: the runner
// tells the server it is still at work, and the request is not delivered
// to another process meanwhile.
func TestLongDrillIsKeptInHand(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{ackWait: time.Second, outcome: func(ctx context.Context, req messages.DrillRequest, id string) (messages.Drill, error) {
		time.Sleep(2500 * time.Millisecond)
		now := time.Now().UTC()
		return messages.Drill{Schema: messages.DrillSchema, DrillID: id, Source: req.Cluster, Outcome: messages.DrillSucceeded,
			Began: now, Ended: now}, nil
	}})
	b.submitRequest(t, request("c1", "long"), "long")
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(b.drills(t, "c1")) == 1 }))
	info := b.settled(t)
	require.EqualValues(t, 1, info.Delivered.Consumer)
	require.Equal(t, map[string]int{messages.DrillIDFor("long"): 1}, b.runs())
}
