package ssh_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/sshtest"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// fakeNodetoolEnv, when set, makes the test binary act as nodetool on the
// node directory it names (see TestMain).
const fakeNodetoolEnv = "QUIESCE_FAKE_NODETOOL_ROOT"

// fakeNodetool answers like Cassandra 4.1's nodetool for a node whose
// snapshots are directories under root.
func fakeNodetool(root string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: nodetool <command>")
		return 1
	}
	snaps := filepath.Join(root, "snapshots")
	tagArg := func() string {
		for i, a := range args {
			if a == "-t" && i+1 < len(args) {
				return args[i+1]
			}
		}
		return ""
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, "ReleaseVersion: 4.1.3")
	case "snapshot":
		tag := tagArg()
		dir := filepath.Join(snaps, tag)
		if _, err := os.Stat(dir); err == nil {
			fmt.Fprintf(stderr, "error: Snapshot %s already exists.\n-- StackTrace --\njava.io.IOException: Snapshot %s already exists.\n", tag, tag)
			return 2
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 2
		}
		fmt.Fprintf(stdout, "Requested creating snapshot(s) for [all keyspaces] with snapshot name [%s] and options {skipFlush=false}\nSnapshot directory: %s\n", tag, tag)
	case "clearsnapshot":
		tag := tagArg()
		_ = os.RemoveAll(filepath.Join(snaps, tag))
		fmt.Fprintf(stdout, "Requested clearing snapshot(s) for [all keyspaces] with snapshot name [%s]\n", tag)
	case "listsnapshots":
		entries, _ := os.ReadDir(snaps)
		if len(entries) == 0 {
			fmt.Fprintln(stdout, "Snapshot Details: \nThere are no snapshots")
			return 0
		}
		var tags []string
		for _, e := range entries {
			tags = append(tags, e.Name())
		}
		sort.Strings(tags)
		fmt.Fprintln(stdout, "Snapshot Details: \nSnapshot name Keyspace name Column family name True size Size on disk Creation time")
		for _, tag := range tags {
			fmt.Fprintf(stdout, "%s ks tbl 0 bytes 1.5 KiB 2026-11-24T10:00:00.000Z\n", tag)
		}
		fmt.Fprintln(stdout, "\nTotal TrueDiskSpaceUsed: 0 bytes")
	case "status":
		fmt.Fprint(stdout, "Datacenter: dc1\n===============\nStatus=Up/Down\n|/ State=Normal/Leaving/Joining/Moving\n"+
			"--  Address    Load       Tokens  Owns (effective)  Host ID                               Rack\n"+
			"UN  127.0.0.1  1.5 KiB    16      100.0%            6d194555-f6eb-41d0-c000-000000000001  rack1\n")
	case "info":
		fmt.Fprint(stdout, "ID                     : 6d194555-f6eb-41d0-c000-000000000001\nGossip active          : true\n"+
			"Load                   : 1.5 KiB\nData Center            : dc1\nRack                   : rack1\n")
	default:
		fmt.Fprintf(stderr, "nodetool: Found unexpected parameters: [%s]\n", args[0])
		return 1
	}
	return 0
}

func nodetoolClient(t *testing.T, r nodetool.Runner) (*nodetool.Client, string) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	root := t.TempDir()
	return &nodetool.Client{Runner: r, Base: []string{exe}, Env: map[string]string{fakeNodetoolEnv: root}}, root
}

func TestNodetoolOverSSH(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{})
	c, root := nodetoolClient(t, e)
	ctx := testCtx(t)

	v, err := c.Version(ctx, b.node)
	require.NoError(t, err)
	require.Equal(t, "4.1.3", v)

	require.NoError(t, c.Snapshot(ctx, b.node, "quiesce-job-1", []string{"shop"}))
	require.DirExists(t, filepath.Join(root, "snapshots", "quiesce-job-1"))
	// A redelivered flush task finds its tag already there: success.
	require.NoError(t, c.Snapshot(ctx, b.node, "quiesce-job-1", nil))
	tags, err := c.Tags(ctx, b.node)
	require.NoError(t, err)
	require.Equal(t, []string{"quiesce-job-1"}, tags)

	status, err := c.Status(ctx, b.node, "")
	require.NoError(t, err)
	require.Len(t, status, 1)
	require.True(t, status[0].UpNormal())
	info, err := c.Info(ctx, b.node, false)
	require.NoError(t, err)
	require.Equal(t, "dc1", info.Datacenter)

	require.NoError(t, c.ClearSnapshot(ctx, b.node, "quiesce-job-1"))
	require.NoDirExists(t, filepath.Join(root, "snapshots", "quiesce-job-1"))

	// Bad values never reach the node.
	require.True(t, errclass.IsPermanent(c.Snapshot(ctx, b.node, "bad tag; rm -rf /", nil)))
	require.True(t, errclass.IsPermanent(c.Snapshot(ctx, b.node, "ok", []string{"$(id)"})))

	// A nodetool error is permanent and carries nodetool's words.
	_, err = c.Runner.Run(ctx, b.node, nodetool.Command{Argv: append(c.Base, "bogus"), Env: c.Env})
	require.Error(t, err)
	require.Contains(t, errclass.Stderr(err), "Found unexpected parameters")
}
