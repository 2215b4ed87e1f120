//go:build integration

package drivers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// Node-scoped hooks run on the node through the cluster's SSH executor, a
// real OpenSSH sshd here: the job's facts reach the command as environment
// variables, its output and exit code come back, and its timeout stops the
// remote command.
func TestSSHDNodeHook(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath, user := sshtest.UserKey(t, dir)
	sshd := sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
	cfg := &config.Config{Clusters: []config.Cluster{{Name: "c1", Executor: "ssh", Snapshotter: "fs",
		FS: config.FS{Store: dir},
		SSH: config.SSH{User: sshd.User, IdentityFiles: []string{keyPath},
			KnownHosts:     []string{sshtest.WriteKnownHosts(t, dir, sshd.KnownHosts())},
			ConnectTimeout: config.Duration(10 * time.Second), CommandTimeout: config.Duration(60 * time.Second)},
		Nodes: []config.Node{{Name: "n1", Address: sshd.Addr, Volumes: []config.Volume{{ID: "v1", Path: dir}}}}}}}
	reg := drivers.New(cfg, drivers.Env{Ctx: t.Context(), Log: zerolog.Nop()})
	t.Cleanup(func() { _ = reg.Close() })
	runner, err := reg.Hooks("c1")
	require.NoError(t, err)
	node := &messages.Node{Name: "n1", Address: sshd.Addr}

	out := filepath.Join(dir, "facts")
	res, err := runner.RunHook(t.Context(), node, worker.HookCommand{
		Argv: []string{"/bin/sh", "-c", `printf '%s %s %s\n' "$QUIESCE_NODE" "$QUIESCE_JOB_ID" "$QUIESCE_HOOK" > "$0"; echo resumed`, out},
		Env:  map[string]string{"QUIESCE_NODE": "n1", "QUIESCE_JOB_ID": "c1-00000000000a", "QUIESCE_HOOK": "resume; rm -rf /"},
	})
	require.NoError(t, err)
	require.Equal(t, "resumed\n", string(res.Stdout))
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "n1 c1-00000000000a resume; rm -rf /\n", string(data), "facts arrive as values, never parsed by a shell")

	res, err = runner.RunHook(t.Context(), node, worker.HookCommand{
		Argv: []string{"/bin/sh", "-c", `echo "compaction still running" >&2; exit 3`}})
	var exit *nodetool.ExitError
	require.True(t, errors.As(err, &exit), "%v", err)
	require.Equal(t, 3, res.ExitCode)
	require.Contains(t, string(res.Stderr), "compaction still running")

	marker := fmt.Sprintf("300.%06d", time.Now().UnixNano()%1_000_000)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	_, err = runner.RunHook(ctx, node, worker.HookCommand{Argv: []string{"/bin/sleep", marker}})
	require.Error(t, err)
	require.Less(t, time.Since(start), 30*time.Second)
	require.Eventually(t, func() bool {
		return exec.Command("pgrep", "-f", "sleep "+marker).Run() != nil
	}, 20*time.Second, 100*time.Millisecond, "the remote command stopped with its hook's timeout")

	_, err = runner.RunHook(t.Context(), node, worker.HookCommand{Argv: []string{"/bin/cat"}, Stdin: []byte("x")})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "standard input"), "%v", err)
}
