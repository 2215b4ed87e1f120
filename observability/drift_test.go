package observability

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// Replicas running different configurations are shown: in metrics, in
// /readyz's detail (still ready: replicas disagree during every rolling
// update), and in one log line when the picture changes; and again when
// they agree.
func TestConfigDriftIsShown(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	ctx := t.Context()
	announce := func(name, config string, clusters ...string) *topology.Presence {
		p, err := topology.StartPresence(ctx, env.H.Replicas, messages.Replica{Name: name,
			Roles: []string{messages.RoleWorker}, Clusters: clusters, Config: config}, 0)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Stop(context.Background()) })
		return p
	}
	self := announce("worker-1", "aaaaaaaaaaaa", "orders", "billing")
	announce("worker-2", "aaaaaaaaaaaa", "orders", "billing")
	old := announce("worker-3", "bbbbbbbbbbbb", "orders")

	var logs bytes.Buffer
	reg := NewRegistry()
	d, err := NewConfigDrift(reg, env.H.Replicas, self.Replica(), zerolog.New(&logs))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ServeListener(sctx, ln, reg, func() error { return nil }, d.Detail) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	base := "http://" + ln.Addr().String()

	require.NoError(t, d.Check(ctx))
	require.Equal(t, 2.0, testutil.ToFloat64(d.configs))
	require.Equal(t, 3.0, testutil.ToFloat64(d.replicas))
	require.Equal(t, 1.0, testutil.ToFloat64(d.info.WithLabelValues("aaaaaaaaaaaa")))
	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, "drift does not make a process unready")
	require.Contains(t, body, "ready\n")
	require.Contains(t, body, "the running replicas disagree, 2 configurations among 3 replicas")
	require.Contains(t, body, "bbbbbbbbbbbb [clusters orders] on worker-3 (worker)")
	require.Contains(t, body, "aaaaaaaaaaaa [clusters billing, orders] on worker-1 (worker), worker-2 (worker)")
	require.Equal(t, 1, strings.Count(logs.String(), "replicas run different configurations"))

	// Checked again with nothing changed: no second log line.
	require.NoError(t, d.Check(ctx))
	require.Equal(t, 1, strings.Count(logs.String(), "replicas run different configurations"))

	// The old replica is replaced: they agree again.
	require.NoError(t, old.Stop(ctx))
	require.NoError(t, d.Check(ctx))
	require.Equal(t, 1.0, testutil.ToFloat64(d.configs))
	require.Equal(t, 2.0, testutil.ToFloat64(d.replicas))
	_, body = get(t, base+"/readyz")
	require.Contains(t, body, "the 2 running replicas agree")
	require.Contains(t, logs.String(), "replicas agree on their configuration")
	metrics, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range metrics {
		names = append(names, mf.GetName())
	}
	require.Subset(t, names, []string{"quiesce_config_info", "quiesce_config_fleet_configurations", "quiesce_config_fleet_replicas"})
}

// A replica whose process died without stopping leaves the fleet once its
// entry's TTL passes, and reading the replicas while it expires never hangs
// (a key listing waits for entries that expired before it could deliver
// them).
func TestDeadReplicaExpires(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{ReplicaTTL: 2 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	data := []byte(`{"schema":"quiesce.replica/v1","id":"ghost-1","name":"ghost","roles":["planner"],"clusters":["c1"],"config":"x"}`)
	_, err := env.H.Replicas.Put(ctx, "ghost-1", data)
	require.NoError(t, err)
	reps, err := topology.LiveReplicas(ctx, env.H.Replicas)
	require.NoError(t, err)
	require.Len(t, reps, 1)
	require.True(t, reps[0].Knows(messages.RolePlanner, "c1"))
	require.NoError(t, testenv.Eventually(30*time.Second, func() bool {
		reps, err := topology.LiveReplicas(ctx, env.H.Replicas)
		return err == nil && len(reps) == 0
	}))
}
