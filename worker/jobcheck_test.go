package worker_test

import (
	"context"
	"encoding/json"
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

// unansweredKV is a jobs bucket whose reads are never answered, as when the
// server a request went to stops before replying; its writes are.
type unansweredKV struct{ jetstream.KeyValue }

func (unansweredKV) Get(ctx context.Context, _ string) (jetstream.KeyValueEntry, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// The check whether a task's job already ended is an optimisation; a read
// that is never answered must not hold the task (heartbeating, so never
// redelivered) until the task's deadline.
func TestUnansweredJobCheckDoesNotHoldTheTask(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	tool := fakes.NewNodeTool()
	w := worker.New(env.JS, unansweredKV{env.H.Jobs}, fakes.Drivers{Tool: tool}, worker.Config{
		Logger: zerolog.Nop(), Kinds: []messages.Kind{messages.KindFlush},
	})
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.StopAndCancel(ctx)
	})
	publishFlushWithDeadline(t, env, "n1", time.Now().Add(time.Hour))
	require.NoError(t, testenv.Eventually(20*time.Second, func() bool { return len(tool.TagsOn("n1")) == 1 }))
}

func publishFlushWithDeadline(t *testing.T, env *testenv.Env, id string, deadline time.Time) {
	t.Helper()
	task := messages.Task{Schema: messages.TaskSchema, ID: "c1-000000000000.flush." + id, Kind: messages.KindFlush,
		JobID: "c1-000000000000", Cluster: "c1", Target: id, Tag: "t1", Node: &messages.Node{Name: id}, Deadline: deadline}
	data, err := json.Marshal(task)
	require.NoError(t, err)
	_, err = env.JS.Publish(context.Background(), messages.SubjectTask(messages.KindFlush, "c1"), data)
	require.NoError(t, err)
}
