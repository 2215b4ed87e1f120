package deploy_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

// The NATS files are read by nats-server's own config parser, so a typo in a
// key or a block is caught here rather than on the first server start.
// Not parallel: the configs read their passwords from the environment.
func TestNATSClusterConfig(t *testing.T) {
	t.Setenv("QUIESCE_NATS_PASSWORD", "$2a$11$abcdefghijklmnopqrstuuY1Cgu1uHt0vbbR4xGF4yAM3GwkAn1JW")
	t.Setenv("NATS_SYS_PASSWORD", "$2a$11$abcdefghijklmnopqrstuuY1Cgu1uHt0vbbR4xGF4yAM3GwkAn1JW")
	files, err := filepath.Glob(filepath.Join("nats", "nats-*.conf"))
	require.NoError(t, err)
	require.Len(t, files, 3, "a JetStream cluster of three servers")

	names := map[string]bool{}
	for _, f := range files {
		opts, err := server.ProcessConfigFile(f)
		require.NoError(t, err, f)
		require.True(t, opts.JetStream, f)
		require.NotEmpty(t, opts.StoreDir, f)
		require.Equal(t, "quiesce", opts.Cluster.Name, f)
		require.Len(t, opts.Routes, 3, f)
		require.Equal(t, 8222, opts.HTTPPort, "%s: KEDA reads the monitoring port", f)
		require.Equal(t, "SYS", opts.SystemAccount, f)
		require.False(t, names[opts.ServerName], "%s: server name %s twice", f, opts.ServerName)
		names[opts.ServerName] = true

		var quiesce *server.Account
		for _, a := range opts.Accounts {
			if a.Name == "QUIESCE" {
				quiesce = a
			}
		}
		require.NotNil(t, quiesce, "%s: account QUIESCE (the ScaledObject's account)", f)
		var users []string
		for _, u := range opts.Users {
			users = append(users, u.Username)
			// No password is written in the file.
			require.True(t, strings.HasPrefix(u.Password, "$2a$"), "%s: %s", f, u.Username)
		}
		require.Contains(t, users, "quiesce", f)
	}
}

var (
	execStart      = regexp.MustCompile(`^/usr/local/bin/quiesce (planner|coordinator|worker|all) --config=\S+ --metrics-addr=(:\d+)$`)
	agentExecStart = regexp.MustCompile(`^/usr/local/bin/quiesce (agent) --config=\S+ --cluster=\$\{QUIESCE_CLUSTER\} --node=%i --metrics-addr=(:\d+)$`)
)

// A unit file is simple enough to check by reading it: sections, known
// quiesce subcommands and flags, and one metrics port per role so the three
// can share a host.
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("systemd", "quiesce-*.service"))
	require.NoError(t, err)
	require.Len(t, files, 4)
	ports := map[string]string{}
	for _, f := range files {
		fh, err := os.Open(f)
		require.NoError(t, err)
		sections := map[string]map[string]string{}
		var cur string
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			l := strings.TrimSpace(sc.Text())
			switch {
			case l == "" || strings.HasPrefix(l, "#"):
			case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
				cur = strings.Trim(l, "[]")
				sections[cur] = map[string]string{}
			default:
				k, v, ok := strings.Cut(l, "=")
				require.True(t, ok, "%s: %q", f, l)
				require.NotEmpty(t, cur, "%s: %q outside a section", f, l)
				sections[cur][k] = v
			}
		}
		require.NoError(t, sc.Err())
		require.NoError(t, fh.Close())

		for _, s := range []string{"Unit", "Service", "Install"} {
			require.Contains(t, sections, s, f)
		}
		user, unit := "quiesce", "quiesce-%s.service"
		m := execStart.FindStringSubmatch(sections["Service"]["ExecStart"])
		if m == nil {
			// The agent runs on a Cassandra node, one unit instance per
			// node, as the Cassandra service user.
			m = agentExecStart.FindStringSubmatch(sections["Service"]["ExecStart"])
			user, unit = "cassandra", "quiesce-%s@.service"
		}
		require.NotNil(t, m, "%s: ExecStart %q", f, sections["Service"]["ExecStart"])
		require.Equal(t, fmt.Sprintf(unit, m[1]), filepath.Base(f))
		require.NotContains(t, ports, m[2], "%s and %s share a metrics port", f, ports[m[2]])
		ports[m[2]] = f
		require.Equal(t, user, sections["Service"]["User"], f)
		require.Equal(t, "yes", sections["Service"]["NoNewPrivileges"], f)
	}
}
