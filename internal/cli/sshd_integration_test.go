//go:build integration

package cli

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// The operator's walk through a host-key refusal, on a real sshd: seven
// simulated nodes, one of which was rebuilt with a new host key. The job
// fails before any volume snapshot, submit follows the clean-up to its end
// and counts as status does; the refusal quotes the known_hosts line; once
// the operator corrects that line, the same running worker backs the
// cluster up, without a restart.
func TestHostKeyRefusalAsAnOperatorSeesIt(t *testing.T) {
	env := testenv.New(t, topology.Options{})
	dir := t.TempDir()
	self, err := os.Executable()
	require.NoError(t, err)
	cfg, nodes, err := demoCluster(dir, self, demoOptions{nodes: 7, volumes: 1, keep: 2})
	require.NoError(t, err)

	keyPath, user := sshtest.UserKey(t, t.TempDir())
	fleet := sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
	rebuilt := sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
	before := sshtest.NewKey(t).PublicKey()
	knownHosts := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(knownHosts, []byte(fleet.KnownHosts()+sshtest.KnownHostsLine(rebuilt.Addr, before)), 0o600))

	cl := &cfg.Clusters[0]
	cl.Executor = "ssh"
	cl.SSH = config.SSH{User: fleet.User, IdentityFiles: []string{keyPath}, KnownHosts: []string{knownHosts},
		ConnectTimeout: config.Duration(10 * time.Second)}
	for i := range cl.Nodes {
		cl.Nodes[i].Address = fleet.Addr
	}
	cl.Nodes[6].Address = rebuilt.Addr
	require.NoError(t, cfg.Validate())
	data, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	cfgPath := filepath.Join(dir, "quiesce.yaml")
	require.NoError(t, os.WriteFile(cfgPath, data, 0o600))

	ctx := context.Background()
	roles, err := startRoles(ctx, cfg, env.JS, []string{"planner", "coordinator", "worker"}, zerolog.Nop(), nil,
		roleOptions{awaitPoll: 50 * time.Millisecond, sweep: 200 * time.Millisecond, softStop: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { roles.stop(ctx) })

	job := messages.JobIDFor("demo", "hostkey-1")
	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "hostkey-1")
	require.Equal(t, ExitFailed, code, "%s\n%s", out, errOut)
	offered := gossh.FingerprintSHA256(rebuilt.HostKey.PublicKey())
	require.Contains(t, errOut, "node-7")
	require.Contains(t, errOut, offered)
	require.Contains(t, errOut, gossh.FingerprintSHA256(before))
	require.Contains(t, errOut, knownHosts+":2")

	// No volume snapshot; every node that flushed has its tag cleared.
	j, err := env.Job(ctx, job)
	require.NoError(t, err)
	require.Zero(t, j.Progress.SnapshotTasks)
	require.Zero(t, j.Progress.CleanupPending, "submit returned once the clean-up ended")
	for _, n := range nodes[:6] {
		tags, err := n.Tags()
		require.NoError(t, err)
		require.Empty(t, tags, n.Info().Name)
	}

	// submit's last line and status count the same way.
	cleared := regexp.MustCompile(`cleared (\d+/\d+(?: \(\d+ failed\))?)`)
	last := cleared.FindAllStringSubmatch(out, -1)
	require.NotEmpty(t, last, out)
	code, status, _ := run("status", "--nats", env.URL, job)
	require.Equal(t, ExitOK, code, status)
	require.Contains(t, status, "tags cleared    "+last[len(last)-1][1]+"\n", "submit:\n%s\nstatus:\n%s", out, status)
	require.Contains(t, status, "snapshot tasks  none: barrier not reached")
	require.Contains(t, out, "snapshots none: barrier not reached")

	// The operator checks node-7's key on the node, then corrects line 2
	// of known_hosts in place. Nothing is restarted.
	corrected := fleet.KnownHosts() + sshtest.KnownHostsLine(rebuilt.Addr, rebuilt.HostKey.PublicKey())
	require.NoError(t, os.WriteFile(knownHosts, []byte(corrected), 0o600))
	code, out, errOut = run("preflight", "--config", cfgPath, "--cluster", "demo")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)

	code, out, errOut = run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "hostkey-2")
	require.Equal(t, ExitOK, code, "the running worker reads the corrected known_hosts\n%s\n%s", out, errOut)
	require.Contains(t, lastProgressLine(out), "cleared 7/7", out)
	for _, n := range nodes {
		tags, err := n.Tags()
		require.NoError(t, err)
		require.Empty(t, tags, n.Info().Name)
	}
}

func lastProgressLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "[") {
			return lines[i]
		}
	}
	return ""
}
