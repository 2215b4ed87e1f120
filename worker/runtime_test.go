package worker_test

import (
	"context"
	"encoding/json"
	"errors"
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
)

func publishFlush(t *testing.T, env *testenv.Env, id string) {
	t.Helper()
	task := messages.Task{Schema: messages.TaskSchema, ID: "c1-000000000000.flush." + id, Kind: messages.KindFlush,
		JobID: "c1-000000000000", Cluster: "c1", Target: id, Tag: "t1", Node: &messages.Node{Name: id}}
	data, err := json.Marshal(task)
	require.NoError(t, err)
	_, err = env.JS.Publish(context.Background(), messages.SubjectTask(messages.KindFlush, "c1"), data)
	require.NoError(t, err)
}

func TestHeartbeatKeepsLongTaskFromRedelivery(t *testing.T) {
	t.Parallel()
	// The task outlasts AckWait by half again; heartbeats come twenty
	// times within it, so a loaded machine delaying a few changes nothing.
	env := testenv.New(t, topology.Options{AckWait: 2 * time.Second})
	tool := fakes.NewNodeTool()
	tool.Delay = func(string) time.Duration { return 3 * time.Second }
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool}, worker.Config{
		Logger: zerolog.Nop(), Heartbeat: 100 * time.Millisecond, Kinds: []messages.Kind{messages.KindFlush},
	})
	require.NoError(t, w.Start(context.Background()))
	publishFlush(t, env, "n1")
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(tool.TagsOn("n1")) == 1 }))
	require.NoError(t, w.Stop(context.Background()))
	require.EqualValues(t, 1, tool.Calls.Load(), "a task that heartbeats is not handed to a second runner")
}

func TestStopWaitsForRunningTasks(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	tool := fakes.NewNodeTool()
	tool.Delay = func(string) time.Duration { return 300 * time.Millisecond }
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool}, worker.Config{Logger: zerolog.Nop(), Kinds: []messages.Kind{messages.KindFlush}})
	require.NoError(t, w.Start(context.Background()))
	publishFlush(t, env, "n1")
	require.NoError(t, testenv.Eventually(5*time.Second, func() bool { return tool.Calls.Load() == 1 }))
	require.NoError(t, w.Stop(context.Background()))
	require.Len(t, tool.TagsOn("n1"), 1, "Stop let the running task finish")
	n, err := env.StreamCount(context.Background(), messages.StreamTasks)
	require.NoError(t, err)
	require.Zero(t, n, "and it was acked")
}

func TestStopAndCancelHandsTasksBack(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	tool := fakes.NewNodeTool()
	tool.Block = make(chan struct{}) // never released
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool}, worker.Config{Logger: zerolog.Nop(), Kinds: []messages.Kind{messages.KindFlush}})
	require.NoError(t, w.Start(context.Background()))
	publishFlush(t, env, "n1")
	require.NoError(t, testenv.Eventually(5*time.Second, func() bool { return tool.Calls.Load() == 1 }))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, w.StopAndCancel(ctx))
	n, err := env.StreamCount(context.Background(), messages.StreamTasks)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the cancelled task stays for another worker")

	tool2 := fakes.NewNodeTool()
	w2 := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool2}, worker.Config{Logger: zerolog.Nop(), Kinds: []messages.Kind{messages.KindFlush}})
	require.NoError(t, w2.Start(context.Background()))
	defer func() { _ = w2.Stop(context.Background()) }()
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(tool2.TagsOn("n1")) == 1 }),
		"handed back at once, not after AckWait")
}

// Stop lets a running task finish for the worker's soft-stop time only; then
// it is cancelled and handed back, and another worker takes it.
func TestStopCancelsAfterTheSoftStop(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	tool := fakes.NewNodeTool()
	tool.Block = make(chan struct{}) // never released
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool}, worker.Config{Logger: zerolog.Nop(),
		Kinds: []messages.Kind{messages.KindFlush}, SoftStop: 200 * time.Millisecond})
	require.NoError(t, w.Start(context.Background()))
	publishFlush(t, env, "n1")
	require.NoError(t, testenv.Eventually(5*time.Second, func() bool { return tool.Calls.Load() == 1 }))
	require.NoError(t, w.Stop(context.Background()), "the caller's context did not end")
	n, err := env.StreamCount(context.Background(), messages.StreamTasks)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the cancelled task stays for another worker")
}

// A stopped worker says it is not ready, and starts again.
func TestWorkerRestartsAfterStop(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	tool := fakes.NewNodeTool()
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool}, worker.Config{Logger: zerolog.Nop(), Kinds: []messages.Kind{messages.KindFlush}})
	require.Error(t, w.Ready(), "not started")
	require.NoError(t, w.Start(context.Background()))
	require.NoError(t, w.Ready())
	require.Error(t, w.Start(context.Background()), "started twice")
	require.NoError(t, w.Stop(context.Background()))
	require.Error(t, w.Ready(), "a stopped worker is not ready")
	require.NoError(t, w.Stop(context.Background()), "stopping twice is harmless")

	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	require.NoError(t, w.Ready())
	publishFlush(t, env, "n1")
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(tool.TagsOn("n1")) == 1 }),
		"the restarted worker takes tasks")
}

// Start, Stop and Ready from many goroutines at once never leave the worker
// half started: at the end it is either stopped (not ready) or running, and
// one last Stop always stops it.
func TestWorkerLifecycleUnderConcurrency(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: fakes.NewNodeTool()}, worker.Config{Logger: zerolog.Nop(),
		Kinds: []messages.Kind{messages.KindFlush, messages.KindClear}, SoftStop: 100 * time.Millisecond})
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				switch (g + i) % 3 {
				case 0:
					_ = w.Start(context.Background())
				case 1:
					_ = w.Stop(context.Background())
				default:
					_ = w.Ready()
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, w.Stop(context.Background()))
	require.Error(t, w.Ready())
	require.NoError(t, w.Start(context.Background()))
	require.NoError(t, w.Ready())
	require.NoError(t, w.Stop(context.Background()))
}

// A worker takes its heartbeat and delivery limit from the consumer it binds
// to: with no heartbeat configured below a short AckWait, a task running
// past it is still not handed to a second runner, and a failing task ends
// after the consumer's MaxDeliver, not the default's.
func TestWorkerFitsTheConsumersLimits(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{AckWait: time.Second,
		MaxDeliver: map[messages.Kind]int{messages.KindFlush: 2}})
	tool := fakes.NewNodeTool()
	tool.Delay = func(node string) time.Duration {
		if node == "slow" {
			return 2500 * time.Millisecond
		}
		return 0
	}
	tool.Fail = func(node string) error {
		if node == "bad" {
			return errors.New("connection refused")
		}
		return nil
	}
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool}, worker.Config{Logger: zerolog.Nop(),
		Kinds: []messages.Kind{messages.KindFlush}, BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })

	events, err := env.JS.OrderedConsumer(context.Background(), messages.StreamEvents, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	publishFlush(t, env, "slow")
	publishFlush(t, env, "bad")
	got := map[string]messages.TaskResult{}
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		m, err := events.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		var r messages.TaskResult
		require.NoError(t, json.Unmarshal(m.Data(), &r))
		got[r.Target] = r
	}
	require.Equal(t, messages.OutcomeSucceeded, got["slow"].Outcome)
	// The slow flush ran once and the failing one twice: no second runner
	// took the slow one while heartbeats within the 1s AckWait held it.
	require.EqualValues(t, 3, tool.Calls.Load(), "nodetool runs")
	require.Equal(t, messages.OutcomeFailed, got["bad"].Outcome)
	require.Equal(t, messages.ClassExhausted, got["bad"].ErrorClass)
	require.Equal(t, 2, got["bad"].Attempt, "the consumer's MaxDeliver of 2, not the default 5")
}
