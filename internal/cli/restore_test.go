package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/fs"
)

func TestRestoreCommands(t *testing.T) {
	env, cfgPath := cliEnv(t)
	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "cli-backup")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	job := messages.JobIDFor("demo", "cli-backup")

	code, out, errOut = run("backups", "verify", "--nats", env.URL, "--config", cfgPath, job)
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "all 2 snapshots present, completed and tagged")

	// The plan names every snapshot and where its volume is made, and
	// changes nothing.
	code, out, errOut = run("restore", "plan", "--nats", env.URL, "--config", cfgPath, "--cluster", "demo", "--target", "volumes", "--request-id", "cli-r1")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	id := messages.RestoreIDFor("demo", "cli-r1")
	require.Contains(t, out, "restore "+id+": backup "+job)
	require.Contains(t, out, ".quiesce-restore/"+id)

	// In place needs --yes; refused before anything is sent.
	code, _, errOut = run("restore", "run", "--nats", env.URL, "--config", cfgPath, "--cluster", "demo", "--target", "in-place")
	require.Equal(t, ExitRejected, code)
	require.Contains(t, errOut, "--yes")

	// A refused plan says why, and starts nothing.
	code, _, errOut = run("restore", "run", "--nats", env.URL, "--config", cfgPath, "--cluster", "demo", "--target", "in-place",
		"--yes", "--node", "node-1", "--request-id", "cli-r0")
	require.Equal(t, ExitRejected, code, errOut)
	require.Contains(t, errOut, "1 of the backup's 2 nodes")
	code, _, _ = run("restore", "status", "--nats", env.URL, messages.RestoreIDFor("demo", "cli-r0"))
	require.Equal(t, ExitRejected, code)

	code, out, errOut = run("restore", "run", "--nats", env.URL, "--config", cfgPath, "--cluster", "demo", "--target", "volumes", "--request-id", "cli-r1")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "restore "+id+" submitted")
	require.Contains(t, out, "succeeded")

	code, out, errOut = run("restore", "list", "--nats", env.URL, "--cluster", "demo")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, id)
	require.Contains(t, out, "succeeded")

	code, out, errOut = run("restore", "status", "--nats", env.URL, id)
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "volumes 2/2")
	// Each volume's data is in its directory.
	var restored int
	require.NoError(t, filepath.WalkDir(filepath.Dir(cfgPath), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && filepath.Base(filepath.Dir(p)) == id {
			restored++
		}
		return nil
	}))
	require.Equal(t, 2, restored, out)

	code, _, errOut = run("restore", "status", "--nats", env.URL, "not-a-restore")
	require.Equal(t, ExitRejected, code)
	require.Contains(t, errOut, "restore ID")

	// A snapshot of the backup deleted behind quiesce's back: verify names
	// it and exits 1.
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	store, err := fs.New(cfg.Clusters[0].FS.Store)
	require.NoError(t, err)
	snaps, err := store.Find(t.Context(), map[string]string{messages.TagJob: job})
	require.NoError(t, err)
	require.NotEmpty(t, snaps)
	require.NoError(t, store.Delete(t.Context(), snaps[0].ID))
	code, out, errOut = run("backups", "verify", "--nats", env.URL, "--config", cfgPath, job)
	require.Equal(t, ExitFailed, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "PROBLEM "+snaps[0].ID)
	require.Contains(t, errOut, "1 of 2 snapshots have problems")
}
