package ssh_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

func TestPreflight(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	sim, base, env := simNode(t)
	stranger := sshtest.Start(t, sshtest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())

	data := sim.Info().DataDirs[0]
	nodes := []messages.Node{
		{Name: "good", Address: b.srv.Addr, Volumes: []messages.Volume{{ID: "v1", Path: data}}},
		{Name: "stranger", Address: stranger.Addr},
		{Name: "down", Address: closed},
		{Name: "no-nodetool", Address: b.srv.Addr},
	}
	rows, err := ssh.Preflight(testCtx(t), nodes, ssh.PreflightOptions{
		SSH: b.cfg,
		Nodetool: nodetool.Settings{Base: base, Env: env,
			PerNode: map[string][]string{"no-nodetool": {"/nonexistent/nodetool"}}},
		MaxClockSkew: time.Minute,
	})
	require.NoError(t, err)
	require.Len(t, rows, 4)

	good := rows[0]
	require.True(t, good.OK(), "%+v", good)
	require.Equal(t, sim.Info().Version, good.Nodetool.Detail)
	require.Equal(t, "UN", good.Cassandra.Detail)
	require.Contains(t, good.Disk.Detail, "free")
	require.Equal(t, ssh.CheckOK, good.Clock.State)

	require.Equal(t, ssh.CheckOK, rows[1].Reachable.State)
	require.Equal(t, ssh.CheckFail, rows[1].HostKey.State)
	require.Contains(t, rows[1].HostKey.Detail, "SHA256:")
	require.Equal(t, ssh.CheckSkip, rows[1].Nodetool.State)

	require.Equal(t, ssh.CheckFail, rows[2].Reachable.State)

	require.Equal(t, ssh.CheckOK, rows[3].Auth.State)
	require.Equal(t, ssh.CheckFail, rows[3].Nodetool.State)
	require.Equal(t, ssh.CheckOK, rows[3].Clock.State)

	require.False(t, ssh.PreflightOK(rows))
	require.True(t, ssh.PreflightOK(rows[:1]))

	var buf bytes.Buffer
	require.NoError(t, ssh.WritePreflight(&buf, rows))
	out := buf.String()
	require.Contains(t, out, "NODE")
	require.Contains(t, out, "CASSANDRA")
	require.Contains(t, out, sim.Info().Version)
	require.Contains(t, out, "stranger host key:")
	require.Contains(t, out, "problem(s)")
	t.Log("\n" + out)
}
