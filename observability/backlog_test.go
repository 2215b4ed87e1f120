package observability

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// startJetStream runs an embedded JetStream server on a free loopback port
// and returns a client connected to it; both stop at test end.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
	})
	require.NoError(t, err)
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	require.True(t, srv.ReadyForConnections(10*time.Second), "nats-server did not start")
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func TestBacklogCollectorReadsConsumerInfo(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	js := startJetStream(t)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      messages.StreamTasks,
		Subjects:  []string{messages.SubjectTasksAll},
		Retention: jetstream.WorkQueuePolicy,
	})
	require.NoError(t, err)
	consumers := map[messages.Kind]jetstream.Consumer{}
	for _, kind := range []messages.Kind{messages.KindFlush, messages.KindSnapshot} {
		c, err := js.CreateOrUpdateConsumer(ctx, messages.StreamTasks, jetstream.ConsumerConfig{
			Durable:       topology.TaskConsumer(kind),
			FilterSubject: messages.SubjectTaskKind(kind),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Minute,
		})
		require.NoError(t, err)
		consumers[kind] = c
	}
	for i := 0; i < 3; i++ {
		_, err := js.Publish(ctx, messages.SubjectTask(messages.KindFlush, "c1"), []byte("{}"))
		require.NoError(t, err)
	}
	_, err = js.Publish(ctx, messages.SubjectTask(messages.KindSnapshot, "c1"), []byte("{}"))
	require.NoError(t, err)

	// One flush task in flight, not acknowledged.
	batch, err := consumers[messages.KindFlush].Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var got int
	for range batch.Messages() {
		got++
	}
	require.NoError(t, batch.Error())
	require.Equal(t, 1, got)

	c := NewBacklogCollector(ctx, js, BacklogOptions{})
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))

	const want = `
# HELP quiesce_jetstream_consumer_ack_pending_messages Tasks of a kind delivered to a worker and not yet acknowledged (consumer NumAckPending): in flight fleet-wide.
# TYPE quiesce_jetstream_consumer_ack_pending_messages gauge
quiesce_jetstream_consumer_ack_pending_messages{kind="flush"} 1
quiesce_jetstream_consumer_ack_pending_messages{kind="snapshot"} 0
# HELP quiesce_jetstream_consumer_pending_messages Tasks of a kind waiting in JetStream for a worker (consumer NumPending): the backlog.
# TYPE quiesce_jetstream_consumer_pending_messages gauge
quiesce_jetstream_consumer_pending_messages{kind="flush"} 2
quiesce_jetstream_consumer_pending_messages{kind="snapshot"} 1
# HELP quiesce_jetstream_consumer_redelivered_messages In-flight tasks of a kind delivered more than once (consumer NumRedelivered).
# TYPE quiesce_jetstream_consumer_redelivered_messages gauge
quiesce_jetstream_consumer_redelivered_messages{kind="flush"} 0
quiesce_jetstream_consumer_redelivered_messages{kind="snapshot"} 0
# HELP quiesce_jetstream_consumer_info_errors_total Scrapes in which a task consumer's info could not be read.
# TYPE quiesce_jetstream_consumer_info_errors_total counter
quiesce_jetstream_consumer_info_errors_total{kind="await"} 1
quiesce_jetstream_consumer_info_errors_total{kind="cleanup"} 1
quiesce_jetstream_consumer_info_errors_total{kind="clear"} 1
quiesce_jetstream_consumer_info_errors_total{kind="hook"} 1
quiesce_jetstream_consumer_info_errors_total{kind="restore-prepare"} 1
quiesce_jetstream_consumer_info_errors_total{kind="restore-start"} 1
quiesce_jetstream_consumer_info_errors_total{kind="restore-stop"} 1
quiesce_jetstream_consumer_info_errors_total{kind="restore-verify"} 1
quiesce_jetstream_consumer_info_errors_total{kind="restore-volume"} 1
quiesce_jetstream_consumer_info_errors_total{kind="retention"} 1
`
	// The consumers of clear, await, retention, cleanup, hook and the restore's do not exist: they are
	// left out and counted as errors, the others still reported.
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"quiesce_jetstream_consumer_pending_messages",
		"quiesce_jetstream_consumer_ack_pending_messages",
		"quiesce_jetstream_consumer_redelivered_messages",
		"quiesce_jetstream_consumer_info_errors_total"))
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP quiesce_jetstream_consumer_waiting_pulls Pull requests of workers waiting for tasks of a kind (consumer NumWaiting).
# TYPE quiesce_jetstream_consumer_waiting_pulls gauge
quiesce_jetstream_consumer_waiting_pulls{kind="flush"} 0
quiesce_jetstream_consumer_waiting_pulls{kind="snapshot"} 0
`), "quiesce_jetstream_consumer_waiting_pulls"))
	// Every series the collector emits is one Names announces.
	names := map[string]bool{}
	for _, n := range Names() {
		names[n] = true
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		require.True(t, names[mf.GetName()], mf.GetName())
	}
}

// blockingLookup never answers until its context ends, like a NATS server
// that stopped responding.
type blockingLookup struct{}

func (blockingLookup) Consumer(ctx context.Context, _, _ string) (jetstream.Consumer, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestBacklogCollectorBoundedByTimeout(t *testing.T) {
	t.Parallel()
	c := NewBacklogCollector(t.Context(), blockingLookup{}, BacklogOptions{
		Kinds:   []messages.Kind{messages.KindFlush},
		Timeout: 50 * time.Millisecond,
	})
	done := make(chan int, 1)
	go func() { done <- testutil.CollectAndCount(c, "quiesce_jetstream_consumer_pending_messages") }()
	select {
	case n := <-done:
		require.Equal(t, 0, n)
	case <-time.After(30 * time.Second):
		t.Fatal("Collect did not honour its timeout")
	}
	require.Equal(t, 1.0, testutil.ToFloat64(c.errors.WithLabelValues("flush")))
}

func TestBacklogCollectorOptions(t *testing.T) {
	t.Parallel()
	c := NewBacklogCollector(t.Context(), blockingLookup{}, BacklogOptions{})
	require.Equal(t, messages.StreamTasks, c.opts.Stream)
	require.Equal(t, messages.Kinds, c.opts.Kinds)
	require.Equal(t, "tasks-flush", c.opts.ConsumerName(messages.KindFlush))
	require.Equal(t, DefaultBacklogTimeout, c.opts.Timeout)
}
