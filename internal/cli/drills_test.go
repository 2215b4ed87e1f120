package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/drill"
	"github.com/quiesce/quiesce/messages"
)

// quiesce drills lists the catalog's drill records, newest first, with why a
// failed one failed; a cluster narrows it.
func TestDrillsListsTheRecordsNewestFirst(t *testing.T) {
	env, _ := cliEnv(t)
	code, out, errOut := run("drills", "--nats", env.URL)
	require.Equal(t, ExitOK, code, errOut)
	require.Equal(t, 1, strings.Count(out, "\n"), "a header only: %s", out)

	at := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	for _, d := range []messages.Drill{
		{DrillID: "drill-1", Source: "demo", Target: "scratch", BackupJob: "demo-a", Outcome: messages.DrillSucceeded,
			Began: at, Ended: at.Add(90 * time.Second), Phases: []messages.DrillPhase{{Name: "start", Seconds: 60}}},
		{DrillID: "drill-2", Source: "demo", Target: "scratch", Outcome: messages.DrillFailed, Error: "node s2 never answered CQL",
			Began: at.Add(24 * time.Hour), Ended: at.Add(24*time.Hour + time.Minute)},
		{DrillID: "drill-3", Source: "other", Target: "scratch2", Outcome: messages.DrillSucceeded, RequestedBy: "schedule", Began: at.Add(time.Hour), Ended: at.Add(2 * time.Hour)},
	} {
		d.Schema = messages.DrillSchema
		require.NoError(t, drill.Record(t.Context(), env.H.Catalog, d))
	}

	code, out, errOut = run("drills", "--nats", env.URL)
	require.Equal(t, ExitOK, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.True(t, strings.HasPrefix(lines[1], "drill-2"), out)
	require.Contains(t, lines[1], "failed: node s2 never answered CQL")
	require.True(t, strings.HasPrefix(lines[2], "drill-3"), out)
	require.Contains(t, lines[2], "schedule")
	require.True(t, strings.HasPrefix(lines[3], "drill-1"), out)
	require.Contains(t, lines[3], "demo-a")
	require.Contains(t, lines[3], "start 60.0s")

	code, out, errOut = run("drills", "--nats", env.URL, "--json", "--limit", "1", "demo")
	require.Equal(t, ExitOK, code, errOut)
	var got []messages.Drill
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got, 1)
	require.Equal(t, "drill-2", got[0].DrillID)

	code, _, errOut = run("drills", "--nats", env.URL, "no.such")
	require.Equal(t, ExitRejected, code)
	require.Contains(t, errOut, "no.such")
}
