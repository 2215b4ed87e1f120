package agent

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.LeakOptions()...) }

const (
	service  = "quiesce"
	password = "s3cret"
)

var nodes = []string{"n1", "n2"}

func agentUser(node string) string { return "agent-c1-" + node }

// bundle is a nats-server with a service user (every permission) and one
// user per node agent (topology.AgentPermissions), quiesce's topology, a
// planner, a coordinator and a snapshot worker on the service user.
type bundle struct {
	url   string
	env   *testenv.Env
	snap  *fakes.Snapshotter
	tools map[string]*fakes.NodeTool
}

func setup(t *testing.T, flushTimeout time.Duration) *bundle {
	t.Helper()
	users := []*server.User{{Username: service, Password: password}}
	for _, n := range nodes {
		pub, sub := topology.AgentPermissions("c1", n)
		users = append(users, &server.User{Username: agentUser(n), Password: password, Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: pub}, Subscribe: &server.SubjectPermission{Allow: sub}}})
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, Users: users})
	require.NoError(t, err)
	go s.Start()
	require.True(t, s.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })

	b := &bundle{url: s.ClientURL(), snap: fakes.NewSnapshotter(), tools: map[string]*fakes.NodeTool{}}
	nc, js := b.connect(t, service, "")
	h, err := topology.Ensure(t.Context(), js, topology.Options{AckWait: 2 * time.Second})
	require.NoError(t, err)
	b.env = &testenv.Env{URL: b.url, NC: nc, JS: js, H: h, Opts: topology.Options{AckWait: 2 * time.Second}}

	cl := planner.Cluster{Name: "c1", Agent: true, DefaultPolicy: "nightly"}
	for _, n := range nodes {
		cl.Nodes = append(cl.Nodes, messages.Node{Name: n, Volumes: []messages.Volume{{ID: "vol-" + n}}})
	}
	nop := planner.Options{Logger: zerolog.Nop()}
	stack.Start(t, b.env, stack.Config{
		Planner: planner.PlannerConfig{Options: nop, Inventory: planner.Inventory{Clusters: []planner.Cluster{cl},
			Policies: []planner.Policy{{Name: "nightly", Cluster: "c1", FlushTimeout: flushTimeout}}}},
		Coordinator: planner.CoordinatorConfig{Options: nop, SweepInterval: 100 * time.Millisecond, StallAfter: 500 * time.Millisecond},
		Worker: worker.Config{Logger: zerolog.Nop(), AwaitPoll: 20 * time.Millisecond, Heartbeat: 200 * time.Millisecond,
			BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		Drivers: fakes.Drivers{Snap: b.snap},
		Dial: func() (*nats.Conn, error) {
			return nats.Connect(b.url, nats.UserInfo(service, password), nats.MaxReconnects(-1))
		},
	})
	return b
}

func (b *bundle) connect(t *testing.T, user, inbox string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opts := []nats.Option{nats.UserInfo(user, password), nats.MaxReconnects(-1)}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(b.url, opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return nc, js
}

// startAgent runs the agent of node as quiesce agent does, on its own user.
func (b *bundle) startAgent(t *testing.T, node string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := b.connect(t, agentUser(node), topology.AgentInboxPrefix("c1", node))
	_, err := topology.EnsureAgent(t.Context(), js, "c1", node, topology.Options{AckWait: 2 * time.Second})
	require.NoError(t, err)
	jobs, err := js.KeyValue(t.Context(), messages.BucketJobs)
	require.NoError(t, err)
	tool := fakes.NewNodeTool()
	b.tools[node] = tool
	w := worker.New(js, jobs, fakes.Drivers{Tool: tool}, worker.Config{Logger: zerolog.Nop(),
		Agent: &worker.Agent{Cluster: "c1", Node: node}, Heartbeat: 200 * time.Millisecond,
		BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { _ = w.StopAndCancel(context.Background()) })
	return nc, js
}

// Each node's flush and clear are taken by that node's agent alone, on a
// server that enforces the agents' permissions, and the backup succeeds.
func TestAgentsBackUpTheirOwnNodes(t *testing.T) {
	t.Parallel()
	b := setup(t, 30*time.Second)
	for _, n := range nodes {
		b.startAgent(t, n)
	}
	job := b.env.Submit(t, testenv.Request("c1", "agents-ok"))
	j := b.env.WaitTerminal(t, job, 30*time.Second)
	require.Equal(t, messages.PhaseSucceeded, j.Phase, j.Error)
	for _, n := range nodes {
		require.Len(t, b.tools[n].FlushedAt, 1, "agent %s flushed only its node", n)
		require.Contains(t, b.tools[n].FlushedAt, n)
		require.Empty(t, b.tools[n].TagsOn(n), "and cleared it")
	}
	require.EqualValues(t, 2, b.snap.Creates.Load())

	// Each agent stored its node's facts (a key its user may write): the
	// catalog record holds both nodes' topology and lacks nothing.
	backups, err := planner.Backups(t.Context(), b.env.H.Catalog, "c1")
	require.NoError(t, err)
	require.Len(t, backups, 1)
	require.Empty(t, backups[0].Warnings)
	require.NotNil(t, backups[0].Topology)
	var facts []string
	for _, f := range backups[0].Topology.Nodes {
		require.NotEmpty(t, f.HostID, "node %s", f.Node)
		require.Len(t, f.Tables, 1, "node %s", f.Node)
		facts = append(facts, f.Node)
	}
	require.ElementsMatch(t, nodes, facts)
}

// An agent cannot take another node's tasks, nor answer for another node:
// the server refuses its pull from the other consumer and its publish on the
// other node's subject, and the coordinator drops a result for the other
// node published on its own. An agent that is down fails its job at the
// flush deadline, naming the node; nothing was snapshotted.
func TestAgentCannotActForAnotherNode(t *testing.T) {
	t.Parallel()
	b := setup(t, 3*time.Second)
	nc, js := b.startAgent(t, "n1")

	job := b.env.Submit(t, testenv.Request("c1", "agents-down"))
	b.env.WaitFor(t, job, 10*time.Second, func(j messages.Job) bool { return j.Progress.Flushed == 1 })

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := js.Consumer(ctx, messages.StreamTasks, topology.AgentConsumer("c1", "n2"))
	require.Error(t, err, "n1's agent cannot bind n2's consumer")

	forged := messages.TaskResult{Schema: messages.TaskResultSchema, TaskID: messages.TaskID(job, messages.KindFlush, "n2"),
		JobID: job, Kind: messages.KindFlush, Cluster: "c1", Target: "n2", Outcome: messages.OutcomeSucceeded, Attempt: 1,
		StartedAt: time.Now(), FinishedAt: time.Now()}
	data, err := json.Marshal(forged)
	require.NoError(t, err)
	denied, cancel2 := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel2()
	_, err = js.Publish(denied, messages.AgentSubject(messages.SubjectTaskEvent(job, messages.KindFlush), "n2"), data)
	require.Error(t, err, "n1's agent cannot publish on n2's subject")
	own, cancel3 := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel3()
	_, err = js.Publish(own, messages.AgentSubject(messages.SubjectTaskEvent(job, messages.KindFlush), "n1"), data,
		jetstream.WithMsgID("forged"))
	require.NoError(t, err, "its own subject is allowed, but the coordinator drops a result for n2 there")
	require.ErrorContains(t, nc.LastError(), "Permissions Violation", "the server refused the other publishes")

	// Nor write another node's keys in the jobs bucket: its flush intent,
	// its facts for the catalog or a part of them. Its own it may write.
	kv, err := js.KeyValue(t.Context(), messages.BucketJobs)
	require.NoError(t, err)
	for _, key := range []string{messages.IntentKey(job, "n2"), messages.NodeFactsKey(job, "n2"), messages.NodeFactsPartKey(job, "n2", 1)} {
		pctx, pcancel := context.WithTimeout(t.Context(), 3*time.Second)
		_, err := kv.Put(pctx, key, []byte("{}"))
		pcancel()
		require.Error(t, err, "n1's agent cannot write %s", key)
	}
	_, err = kv.Put(t.Context(), messages.NodeFactsPartKey(job, "n1", 1), []byte("{}"))
	require.NoError(t, err, "n1's agent writes its own node's facts")

	j := b.env.WaitTerminal(t, job, 30*time.Second)
	require.Equal(t, messages.PhaseFailed, j.Phase)
	require.Equal(t, 1, j.Progress.Flushed, "the forged result counted for nothing")
	require.Contains(t, j.Error, "waiting on n2")
	require.Zero(t, b.snap.Creates.Load())
	require.NoError(t, testenv.Eventually(10*time.Second, func() bool { return len(b.tools["n1"].TagsOn("n1")) == 0 }),
		"n1 is cleared by its agent")
}
