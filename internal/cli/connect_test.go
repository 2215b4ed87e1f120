package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
)

// writeConfig writes cfg to a file of its own.
func writeConfig(t *testing.T, cfg *config.Config) string {
	t.Helper()
	data, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "quiesce.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// The operator commands connect where the configuration file says, like the
// roles do: with no --nats and no $NATS_URL, nats.url and nats.creds_file
// of the file are used. The flag wins over the environment, and the
// environment over the file.
func TestEveryCommandTakesNATSSettingsFromTheConfigFile(t *testing.T) {
	env, _ := cliEnv(t)
	t.Setenv("NATS_URL", "")
	t.Setenv("NATS_CREDS", "")
	t.Setenv(configEnv, "")

	cfg, _ := writeDemoConfig(t, demoOptions{nodes: 2, volumes: 1, keep: 2})
	cfg.NATS.URL = env.URL
	good := writeConfig(t, cfg)

	job := messages.JobIDFor("demo", "from-config")
	for _, args := range [][]string{
		{"submit", "--cluster", "demo", "--request-id", "from-config"},
		{"status", job},
		{"watch", job},
		{"jobs"},
		{"backups", "demo"},
		{"cancel", job, "--wait=false"},
		{"retention", "--cluster", "demo"},
	} {
		code, out, errOut := run(append([]string{"--config", good}, args...)...)
		require.Equal(t, ExitOK, code, "%v: %s\n%s", args, out, errOut)
	}
	code, out, _ := run("--config", good, "jobs")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, job)

	// The file's credentials are used too: a missing creds file is an
	// error naming it, for every command.
	cfg.NATS.CredsFile = filepath.Join(t.TempDir(), "missing.creds")
	withCreds := writeConfig(t, cfg)
	for _, args := range [][]string{{"status", job}, {"jobs"}, {"backups", "demo"}, {"watch", job}, {"cancel", job}, {"submit", "--cluster", "demo"}} {
		code, _, errOut := run(append([]string{"--config", withCreds}, args...)...)
		require.Equal(t, ExitError, code, "%v: %s", args, errOut)
		require.Contains(t, errOut, "missing.creds", args)
	}
	// The environment wins over the file, and the flag over the environment.
	t.Setenv("NATS_CREDS", filepath.Join(t.TempDir(), "env.creds"))
	code, _, errOut := run("--config", withCreds, "jobs")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "env.creds")
	code, _, errOut = run("--config", withCreds, "--creds", filepath.Join(t.TempDir(), "flag.creds"), "jobs")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "flag.creds")
	t.Setenv("NATS_CREDS", "")

	// Likewise for the URL.
	cfg.NATS.CredsFile = ""
	cfg.NATS.URL = "nats://127.0.0.1:1"
	nowhere := writeConfig(t, cfg)
	code, _, errOut = run("--config", nowhere, "jobs")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "127.0.0.1:1")
	t.Setenv("NATS_URL", env.URL)
	code, _, errOut = run("--config", nowhere, "jobs")
	require.Equal(t, ExitOK, code, errOut)
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	code, _, errOut = run("--config", nowhere, "--nats", env.URL, "jobs")
	require.Equal(t, ExitOK, code, errOut)

	// A configuration file that was named must exist.
	code, _, errOut = run("--config", filepath.Join(t.TempDir(), "none.yaml"), "--nats", env.URL, "jobs")
	require.Equal(t, ExitRejected, code)
	require.Contains(t, errOut, "none.yaml")
}
