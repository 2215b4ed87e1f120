package topology_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// A message handed back is redelivered while deliveries are left; before
// the last one it is copied under a message ID of its own, with every
// delivery ahead of it, and the original is gone. Copying the same
// delivery twice (a replica that died before its ack) stores one copy.
func TestHandBackCopiesBeforeTheLastDelivery(t *testing.T) {
	t.Parallel()
	const maxDeliver = 3
	env := testenv.New(t, topology.Options{AckWait: 5 * time.Second,
		MaxDeliver: map[messages.Kind]int{messages.KindFlush: maxDeliver}})
	ctx := t.Context()
	msg := nats.NewMsg(messages.SubjectTask(messages.KindFlush, "c2"))
	msg.Data = []byte(`{"task":"t1"}`)
	msg.Header.Set(jetstream.MsgIDHeader, "job.flush.n1")
	_, err := env.JS.PublishMsg(ctx, msg)
	require.NoError(t, err)
	cons, err := env.JS.Consumer(ctx, messages.StreamTasks, topology.TaskConsumer(messages.KindFlush))
	require.NoError(t, err)
	next := func() jetstream.Msg {
		t.Helper()
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		require.NoError(t, err)
		return m
	}

	m := next()
	copied, err := topology.HandBack(ctx, env.JS, m, maxDeliver, 10*time.Millisecond, nil)
	require.NoError(t, err)
	require.False(t, copied, "a delivery is left: a delayed redelivery")

	m = next()
	meta, err := m.Metadata()
	require.NoError(t, err)
	require.EqualValues(t, 2, meta.NumDelivered)
	// The replica copies, then dies before its ack...
	copied, err = topology.HandBack(ctx, env.JS, m, maxDeliver, 10*time.Millisecond, func(c *nats.Msg) {
		c.Header.Set("X-Test", "rewritten")
	})
	require.NoError(t, err)
	require.True(t, copied)

	m = next()
	meta, err = m.Metadata()
	require.NoError(t, err)
	require.EqualValues(t, 1, meta.NumDelivered, "the copy has every delivery ahead of it")
	require.Equal(t, "job.flush.n1~h1", m.Headers().Get(jetstream.MsgIDHeader))
	require.Equal(t, "job.flush.n1", m.Headers().Get(topology.HandbackOfHeader))
	require.Equal(t, 1, topology.Handbacks(m))
	require.Equal(t, "rewritten", m.Headers().Get("X-Test"))
	require.Equal(t, `{"task":"t1"}`, string(m.Data()))

	// ...and the copy made again from the same delivery is stored once.
	_, err = env.JS.PublishMsg(ctx, &nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()})
	require.NoError(t, err)
	require.NoError(t, m.DoubleAck(ctx))
	n, err := env.StreamCount(ctx, messages.StreamTasks)
	require.NoError(t, err)
	require.Zero(t, n, "the original was acknowledged, the second copy dropped as a duplicate")
}

// The wait before a handed-back message comes again doubles with each
// delivery and each copy, within its bounds.
func TestHandbackDelayGrowsWithinBounds(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	ctx := t.Context()
	msg := nats.NewMsg(messages.SubjectTask(messages.KindFlush, "c2"))
	msg.Header.Set(topology.HandbackHeader, "2")
	_, err := env.JS.PublishMsg(ctx, msg)
	require.NoError(t, err)
	cons, err := env.JS.Consumer(ctx, messages.StreamTasks, topology.TaskConsumer(messages.KindFlush))
	require.NoError(t, err)
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	require.NoError(t, err)
	require.Equal(t, 64*time.Millisecond, topology.HandbackDelay(m, time.Millisecond, time.Second), "first delivery of the second copy: 2^6")
	require.Equal(t, 10*time.Millisecond, topology.HandbackDelay(m, time.Millisecond, 10*time.Millisecond))
	require.NoError(t, m.Ack())
}
