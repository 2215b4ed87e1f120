package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// status --flushes lists each node's flush: when its nodetool started after
// the job's fire time, how long it took, and a failed node's error.
func TestStatusFlushesListsEachNode(t *testing.T) {
	env, _ := cliEnv(t)
	ok := messages.JobIDFor("demo", "flushes-ok")
	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "flushes-ok")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	code, out, errOut = run("status", "--flushes", "--nats", env.URL, ok)
	require.Equal(t, ExitOK, code, errOut)
	t.Logf("quiesce status --flushes %s:\n%s", ok, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	require.Contains(t, lines[0], "STARTED (after the fire time)")
	for i, node := range []string{"node-1", "node-2"} {
		require.Regexp(t, regexp.MustCompile(`^`+node+`\s+1\s+succeeded\s+-?[0-9.]+[µm]?s\s+[0-9.]+[µm]?s\s+-$`), lines[i+1])
	}

	bad := messages.JobIDFor("demo", "flushes-failed")
	code, out, errOut = run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "flushes-failed", "--keyspace", "nosuchks")
	require.Equal(t, ExitFailed, code, "%s\n%s", out, errOut)
	code, out, errOut = run("status", "--flushes", "--nats", env.URL, bad)
	require.Equal(t, ExitOK, code, errOut)
	t.Logf("quiesce status --flushes %s:\n%s", bad, out)
	require.Regexp(t, `node-1\s+\d+\s+failed\s+.*nosuchks`, out)
}
