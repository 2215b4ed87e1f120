package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/internal/topology"
	"github.com/quiesce/quiesce/messages"
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
	env := testenv.New(t, topology.Options{AckWait: time.Second})
	tool := fakes.NewNodeTool()
	tool.Delay = func(string) time.Duration { return 2500 * time.Millisecond }
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool}, worker.Config{
		Logger: zerolog.Nop(), Heartbeat: 200 * time.Millisecond, Kinds: []messages.Kind{messages.KindFlush},
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
