package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
)

// A request ID names one request. Submitting the same request again follows
// its job and says it was a duplicate; submitting a different request under
// the same ID is refused before anything is sent; a request the server
// drops as a duplicate is never reported as submitted, nor with an earlier
// request's answer as its own.
func TestSubmitSaysWhatBecameOfARequestID(t *testing.T) {
	env, _ := cliEnv(t)
	args := func(extra ...string) []string {
		return append([]string{"submit", "--nats", env.URL, "--requested-by", "alice", "--timeout", "1m"}, extra...)
	}

	code, out, errOut := run(args("--cluster", "demo", "--request-id", "dup-1", "--reason", "first")...)
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	job := messages.JobIDFor("demo", "dup-1")
	require.Contains(t, out, "job "+job+" submitted")

	// The same request again: no second job, and it says so.
	code, out, errOut = run(args("--cluster", "demo", "--request-id", "dup-1", "--reason", "first")...)
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "was submitted before")
	require.NotContains(t, out, "submitted (request")

	// A different request under the same ID: refused, nothing sent.
	code, out, errOut = run(args("--cluster", "demo", "--request-id", "dup-1", "--reason", "second")...)
	require.Equal(t, ExitRejected, code, "%s\n%s", out, errOut)
	require.Contains(t, errOut, `request ID "dup-1" already named a different request (job `+job)
	require.NotContains(t, out, "submitted")

	// A request rejected (unknown cluster), then corrected under the same
	// ID within the server's duplicate window: the server drops the
	// correction, and the CLI says so with the first request's answer, not
	// as its own.
	code, _, errOut = run(args("--cluster", "nowhere", "--request-id", "fix-1")...)
	require.Equal(t, ExitRejected, code, errOut)
	require.Contains(t, errOut, `unknown cluster "nowhere"`)
	code, out, errOut = run(args("--cluster", "demo", "--request-id", "fix-1")...)
	require.Equal(t, ExitRejected, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "not delivered again (duplicate)")
	require.NotContains(t, out, "submitted (request")
	require.Contains(t, errOut, "earlier, different request, which was rejected")
	require.Contains(t, errOut, "new request ID")
	_, err := env.Job(t.Context(), messages.JobIDFor("demo", "fix-1"))
	require.Error(t, err, "no job for the dropped duplicate")

	// The same rejected request again: its first answer, said as such.
	code, out, errOut = run(args("--cluster", "nowhere", "--request-id", "fix-1")...)
	require.Equal(t, ExitRejected, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "(duplicate)")
	require.Contains(t, errOut, "rejected when it was first submitted")
	require.Contains(t, errOut, `unknown cluster "nowhere"`)
}

// A request sent with another message ID (another client, or the same one
// after the duplicate window) reaches the planner, which answers a reused
// request ID with a rejection that says so, whichever cluster it names.
func TestPlannerRejectsAReusedRequestID(t *testing.T) {
	env, _ := cliEnv(t)
	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "reuse-1", "--timeout", "1m")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)

	other := messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: "reuse-1", Cluster: "demo", Reason: "another backup"}
	data, err := json.Marshal(other)
	require.NoError(t, err)
	env.SubmitRaw(t, data, "reuse-1-after-the-window")
	rej := env.Rejection(t, other.JobID(), "reuse-1", 20*time.Second)
	require.Equal(t, "request_id_reused", rej.Code)
	require.Contains(t, rej.Reason, "already named a different request")
	require.Equal(t, other.Digest(), rej.RequestDigest)
}

// A role refuses to start from a configuration that names no cluster: it
// would run beside the fleet and know nothing.
func TestRolesRefuseAConfigurationWithoutClusters(t *testing.T) {
	env, _ := cliEnv(t)
	for _, body := range []string{"", "nats:\n  replicas: 1\n", "clusters: []\n"} {
		path := filepath.Join(t.TempDir(), "quiesce.yaml")
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		for _, role := range []string{"planner", "coordinator", "worker", "all"} {
			code, out, errOut := run(role, "--config", path, "--nats", env.URL, "--metrics-addr", "")
			require.Equal(t, ExitRejected, code, "%s %q: %s\n%s", role, body, out, errOut)
			require.Contains(t, errOut, "names no cluster", role)
		}
	}
	// Nothing of them announced itself as a replica.
	reps, err := env.H.Replicas.ListKeys(t.Context())
	require.NoError(t, err)
	var keys []string
	for k := range reps.Keys() {
		keys = append(keys, k)
	}
	require.Len(t, keys, 1, "only the test's own replica: %v", keys)

	// startRoles refuses it too, whoever calls it.
	_, err = startRoles(context.Background(), &config.Config{}, env.JS, []string{"worker"}, zerolog.Nop(), nil, roleOptions{})
	require.ErrorIs(t, err, config.ErrNoCluster)
	require.True(t, strings.Contains(err.Error(), "worker"))
}
