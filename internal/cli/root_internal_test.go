package cli

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
)

// The file's nats section shapes the topology every role creates: how soon
// a dead worker's task is handed out again, and how often a task may be.
func TestTopologyOptionsFromConfig(t *testing.T) {
	t.Parallel()
	o := topologyOptions(&config.Config{NATS: config.NATS{Replicas: 3, AckWait: config.Duration(5 * time.Second), MaxDeliver: 9}})
	require.Equal(t, 3, o.Replicas)
	require.Equal(t, 5*time.Second, o.AckWait)
	for _, k := range messages.Kinds {
		require.Equal(t, 9, o.MaxDeliverFor(k), "kind %s", k)
	}
	o = topologyOptions(&config.Config{})
	require.Zero(t, o.AckWait, "the topology's default")
	require.Equal(t, 5, o.MaxDeliverFor(messages.KindSnapshot))
	require.Equal(t, 3, o.MaxDeliverFor(messages.KindAwait))
}
