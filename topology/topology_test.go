package topology_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// A server whose jobs stream predates drill requests gains their subjects
// and the drill runner's consumer when a process of this release ensures
// the topology; what the stream held is kept.
func TestEnsureAddsDrillSubjectsToAnExistingStream(t *testing.T) {
	t.Parallel()
	s := testenv.StartServer(t, "")
	env := &testenv.Env{Server: s, URL: s.ClientURL()}
	_, js := env.Connect(t)
	ctx := t.Context()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      messages.StreamJobs,
		Subjects:  []string{messages.SubjectSubmit, messages.SubjectSchedulesAll, messages.SubjectRestoreSubmit},
		Retention: jetstream.WorkQueuePolicy, Duplicates: time.Hour, AllowMsgSchedules: true, AllowRollup: true,
	})
	require.NoError(t, err)
	_, err = js.Publish(ctx, messages.SubjectRestoreSubmit, []byte(`{}`))
	require.NoError(t, err)

	_, err = topology.Ensure(ctx, js, topology.Options{})
	require.NoError(t, err)
	stream, err := js.Stream(ctx, messages.StreamJobs)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Subset(t, info.Config.Subjects, []string{messages.SubjectDrillSubmit, messages.SubjectDrillSchedulesAll})
	require.EqualValues(t, 1, info.State.Msgs, "the stream keeps what it held")

	cons, err := js.Consumer(ctx, messages.StreamJobs, topology.ConsumerDrills)
	require.NoError(t, err)
	ci, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, ci.Config.MaxAckPending, "one drill at a time across the fleet")
	require.Equal(t, topology.DrillRunnerMaxDeliver, ci.Config.MaxDeliver)
	require.Equal(t, messages.SubjectDrillSubmit, ci.Config.FilterSubject)
	require.Equal(t, jetstream.AckExplicitPolicy, ci.Config.AckPolicy)
}
