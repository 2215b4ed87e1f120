package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/simnode"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

func TestDemoRunsBackupsAndRetention(t *testing.T) {
	var out, errOut bytes.Buffer
	g := &globals{stdout: &out, stderr: &errOut}
	err := runDemo(context.Background(), g, demoOptions{dir: t.TempDir(), nodes: 2, volumes: 2, backups: 3, keep: 2, keepDir: true})
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	s := out.String()
	require.Contains(t, s, "demo finished: every backup succeeded")
	require.Equal(t, 3, strings.Count(s, "SUCCEEDED"), s)
	require.Contains(t, s, "flush spread")
	require.Contains(t, s, "retention retired")
	require.Contains(t, s, "Cassandra snapshot tags left on the nodes: 0")
	require.Contains(t, s, "restore check of backup")
	require.NotContains(t, s, "missing")
	require.Equal(t, 3*4, strings.Count(s, "snap-"), "every snapshot ID of every backup is printed:\n%s", s)
}

// cliEnv runs every role against an embedded server with a cluster of
// simulated nodes reached by the local executor and snapshotted by fs.
func cliEnv(t *testing.T) (*testenv.Env, string) {
	t.Helper()
	return cliEnvWith(t, nil)
}

// cliEnvWith is cliEnv with the configuration changed by edit first.
func cliEnvWith(t *testing.T, edit func(*config.Config)) (*testenv.Env, string) {
	t.Helper()
	env := testenv.New(t, topology.Options{})
	cfg, path := writeDemoConfig(t, demoOptions{nodes: 2, volumes: 1, keep: 2})
	if edit != nil {
		edit(cfg)
	}

	ctx := context.Background()
	n, err := startRoles(ctx, cfg, env.JS, []string{"planner", "coordinator", "worker"}, zerolog.Nop(), nil,
		roleOptions{awaitPoll: 50 * time.Millisecond, sweep: 200 * time.Millisecond, softStop: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { n.stop(ctx) })
	return env, path
}

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSubmitExitCodes(t *testing.T) {
	env, cfgPath := cliEnv(t)

	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "cli-ok", "--reason", "test")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	job := messages.JobIDFor("demo", "cli-ok")
	require.Contains(t, out, "job "+job+" submitted")
	require.Contains(t, out, "succeeded")

	code, out, _ = run("status", "--nats", env.URL, job)
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "phase")
	require.Contains(t, out, "succeeded")
	require.Contains(t, out, "nodes flushed   2/2")

	code, out, _ = run("backups", "--nats", env.URL, "demo")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, job)

	code, out, _ = run("jobs", "--nats", env.URL)
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, job)

	code, out, _ = run("retention", "--nats", env.URL, "--config", cfgPath, "--cluster", "demo")
	require.Equal(t, ExitOK, code, out)
	require.Contains(t, out, "keep last 2; 1 backups, 0 would be retired")

	// Refused by the planner: an unknown cluster. Exit 2, nothing started.
	code, _, errOut = run("submit", "--nats", env.URL, "--cluster", "nowhere", "--request-id", "cli-bad", "--timeout", "20s")
	require.Equal(t, ExitRejected, code, errOut)
	require.Contains(t, errOut, `unknown cluster "nowhere"`)

	// Refused before sending: a tag with shell metacharacters.
	code, _, errOut = run("submit", "--nats", env.URL, "--cluster", "demo", "--tag", "$(reboot)")
	require.Equal(t, ExitRejected, code)
	require.Contains(t, errOut, "shell metacharacters")

	code, _, errOut = run("status", "--nats", env.URL, "demo-000000000000")
	require.Equal(t, ExitRejected, code)
	require.Contains(t, errOut, "no job demo-000000000000")
}

func TestSubmitFailedJobExitsOne(t *testing.T) {
	env, _ := cliEnv(t)
	// The keyspace does not exist on the nodes: nodetool fails, permanently.
	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "cli-fail", "--keyspace", "nosuchks")
	require.Equal(t, ExitFailed, code, "%s\n%s", out, errOut)
	require.Contains(t, errOut, "failed")
	require.Contains(t, errOut, "nosuchks")
}

// A node whose nodetool could not be run never flushed: status shows its
// flush failed, and no failed clear of it or warning about its tag, since
// the job made no tag there to clear.
func TestStatusOfANodeThatNeverFlushed(t *testing.T) {
	env, _ := cliEnvWith(t, func(cfg *config.Config) {
		cfg.Clusters[0].Nodes[1].Nodetool = []string{filepath.Join(t.TempDir(), "no-such-nodetool")}
	})
	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "cli-unrun")
	require.Equal(t, ExitFailed, code, "%s\n%s", out, errOut)
	job := messages.JobIDFor("demo", "cli-unrun")
	env.WaitFor(t, job, time.Minute, func(j messages.Job) bool { return j.Progress.Cleared+j.Progress.ClearFailed == j.Progress.ClearTasks })

	code, out, _ = run("status", "--nats", env.URL, job)
	require.Equal(t, ExitOK, code, out)
	require.Contains(t, out, "FAILED flush node-2: ")
	require.Contains(t, out, "no-such-nodetool")
	require.Equal(t, 1, strings.Count(out, "FAILED"), out)
	require.NotContains(t, out, "FAILED clear", out)
	require.NotContains(t, out, "not cleared", out)
	m := regexp.MustCompile(`tags cleared\s+(\d+)/(\d+)(.*)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	require.Equal(t, m[1], m[2], "every clear succeeded: %s", m[0])
	require.NotContains(t, m[3], "failed", m[0])
}

func TestPreflightLocalCluster(t *testing.T) {
	cfg, path := writeDemoConfig(t, demoOptions{nodes: 2, volumes: 1})
	dir := filepath.Dir(path)

	code, out, errOut := run("preflight", "--config", path, "--cluster", "demo")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "node-1")
	require.Contains(t, out, simnode.Version)

	// A node whose nodetool cannot run fails the check, and the exit code.
	cfg.Clusters[0].Nodes[1].Nodetool = []string{filepath.Join(dir, "no-such-nodetool")}
	data, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	code, out, _ = run("preflight", "--config", path, "--cluster", "demo")
	require.Equal(t, ExitFailed, code, out)

	code, _, errOut = run("preflight", "--config", path, "--cluster", "nope")
	require.Equal(t, ExitRejected, code)
	require.Contains(t, errOut, `unknown cluster "nope"`)
}

// writeDemoConfig writes a configuration of simulated nodes, reached by the
// local executor (this test binary as nodetool) and snapshotted by fs.
func writeDemoConfig(t *testing.T, o demoOptions) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	self, err := os.Executable()
	require.NoError(t, err)
	cfg, _, err := demoCluster(dir, self, o)
	require.NoError(t, err)
	data, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(dir, "quiesce.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return cfg, path
}
