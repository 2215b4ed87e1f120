package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// A partial backup is shown as such in the listing, with the nodes it lacks.
func TestBackupsListingShowsPartialBackups(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	printBackups(&out, []messages.Backup{
		{JobID: "c1-000000000002", FinishedAt: at, Policy: "nightly", Mode: messages.ModeApplication, NodeCount: 2,
			SnapshotCount: 2, Tag: "t2", Partial: true, MissingNodes: []string{"n3"}},
		{JobID: "c1-000000000001", FinishedAt: at.Add(-24 * time.Hour), Policy: "nightly", Mode: messages.ModeApplication,
			NodeCount: 3, SnapshotCount: 3, Tag: "t1", Regions: []string{"us-east-1", "us-west-2"}},
		{JobID: "c1-000000000000", Partial: true, MissingNodes: []string{"a", "b", "c", "d", "e"}},
	})
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	require.Len(t, lines, 4)
	require.Contains(t, string(lines[0]), "COVERS")
	require.Contains(t, string(lines[1]), "PARTIAL: without n3")
	require.Contains(t, string(lines[2]), "all nodes")
	require.Contains(t, string(lines[2]), "us-east-1,us-west-2", "the regions a backup's snapshots are in")
	require.Contains(t, string(lines[3]), "PARTIAL: without a, b, c and 2 more")
}
