package nodetool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// A recorded run of Cassandra 5.0.6's nodetool (testdata/cassandra-5.0.6):
// the command, its exit code, stdout and stderr, as captured on a real node.
type recorded struct {
	args []string
	out  nodetool.Output
}

var exitLine = regexp.MustCompile(`^--- exit code: (\d+)`)

func readRecorded(t testing.TB, name string) recorded {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cassandra-5.0.6", name))
	require.NoError(t, err)
	text := string(b)
	head, rest, ok := strings.Cut(text, "\n")
	require.True(t, ok, name)
	cmd, _, _ := strings.Cut(strings.TrimPrefix(head, "$ "), "   (")
	f := strings.Fields(cmd)
	// "nodetool -h H -p P args..."
	require.GreaterOrEqual(t, len(f), 5, name)
	r := recorded{args: f[5:]}
	codeLine, rest, _ := strings.Cut(rest, "\n")
	m := exitLine.FindStringSubmatch(codeLine)
	require.NotNil(t, m, name)
	r.out.ExitCode, _ = strconv.Atoi(m[1])
	rest = strings.TrimPrefix(rest, "--- stdout:\n")
	stdout, stderr, ok := strings.Cut(rest, "--- stderr:\n")
	if !ok {
		stdout, stderr, _ = strings.Cut(rest, "--- stderr:")
	}
	r.out.Stdout, r.out.Stderr = []byte(stdout), []byte(stderr)
	return r
}

// replay is a Runner that answers every command with one recorded run, and
// keeps the commands it was given.
type replay struct {
	rec  recorded
	argv [][]string
}

func (r *replay) Run(_ context.Context, _ messages.Node, cmd nodetool.Command) (nodetool.Output, error) {
	r.argv = append(r.argv, cmd.Argv)
	if r.rec.out.ExitCode != 0 {
		return r.rec.out, &nodetool.ExitError{Argv: cmd.Argv, ExitCode: r.rec.out.ExitCode, Out: r.rec.out}
	}
	return r.rec.out, nil
}

// javaBase is nodetool run as the harness and many installations run it: a
// java command line of several kilobytes.
func javaBase() []string {
	cp := make([]string, 100)
	for i := range cp {
		cp[i] = fmt.Sprintf("/root/.m2/repository/org/example/lib%d/1.0/lib%d-1.0.jar", i, i)
	}
	return []string{"/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "-Xmx128m", "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
		"-cp", strings.Join(cp, ":"), "org.apache.cassandra.tools.NodeTool", "-h", "127.0.0.1", "-p", "7199", "-pw", "secret"}
}

func clientFor(t testing.TB, name string) (*nodetool.Client, *replay) {
	r := &replay{rec: readRecorded(t, name)}
	return nodetool.New(r, nodetool.Settings{Base: javaBase()}), r
}

var node = messages.Node{Name: "n1"}

func TestSnapshotVerifiedFromRealOutput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, r := clientFor(t, "snapshot-test1.txt")
	require.NoError(t, c.Snapshot(ctx, node, "quiesce-test1", nil))
	require.Equal(t, []string{"snapshot", "-t", "quiesce-test1"}, r.argv[0][len(javaBase()):])

	c, _ = clientFor(t, "snapshot-test3-2ks.txt")
	require.NoError(t, c.Snapshot(ctx, node, "quiesce-test3", []string{"shop", "audit"}))

	// Exit 0 for another tag, or with no "Snapshot directory" line at all,
	// is no snapshot of this tag.
	c, _ = clientFor(t, "snapshot-test2-ks.txt")
	err := c.Snapshot(ctx, node, "quiesce-other", []string{"shop"})
	require.Error(t, err)
	require.True(t, errclass.IsPermanent(err))
	require.Contains(t, err.Error(), `no "Snapshot directory: quiesce-other" line`)
	c, _ = clientFor(t, "clearsnapshot-test1.txt")
	require.ErrorContains(t, c.Snapshot(ctx, node, "quiesce-test1", nil), "without reporting snapshot quiesce-test1")
}

func TestSnapshotOfAnExistingTagIsTyped(t *testing.T) {
	t.Parallel()
	c, _ := clientFor(t, "snapshot-test1-dup.txt")
	err := c.Snapshot(context.Background(), node, "quiesce-test1", nil)
	require.ErrorIs(t, err, worker.ErrSnapshotExists)
	require.True(t, errclass.IsPermanent(err))
	require.False(t, errclass.IsNotRun(err))
	require.Equal(t, "nodetool snapshot -t quiesce-test1 exited 2: Snapshot quiesce-test1 already exists.", err.Error())
	require.Contains(t, errclass.Stderr(err), "java.io.IOException: Snapshot quiesce-test1 already exists.")
	require.NotContains(t, errclass.Stderr(err), "\tat org.apache", "stack frames are left out")

	// A tag that only begins like the one asked for is another snapshot.
	c, _ = clientFor(t, "snapshot-test1-dup.txt")
	require.NotErrorIs(t, c.Snapshot(context.Background(), node, "quiesce-test", nil), worker.ErrSnapshotExists)
}

// Every failure of real 5.0.6 is classified by what happened, its reason is
// in the error whichever stream and line it was on, and the error never
// carries the argv (here 10 KB of java command line, with a password).
func TestRealFailuresAreClassifiedAndBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		file      string
		call      func(*nodetool.Client) error
		want      string
		transient bool
		notRun    bool
		code      string
	}{
		{file: "snapshot-nosuchks.txt", call: func(c *nodetool.Client) error { return c.Snapshot(ctx, node, "quiesce-test4", []string{"nosuchks"}) },
			want: "nodetool snapshot -t quiesce-test4 nosuchks exited 1: Keyspace nosuchks does not exist", notRun: true, code: "exit"},
		{file: "connrefused.txt", call: func(c *nodetool.Client) error { _, err := c.Version(ctx, node); return err },
			want: "nodetool version exited 1: Failed to connect to '127.0.0.1:7299' - ConnectException: 'Connection refused'.", transient: true, notRun: true, code: "jmx"},
		{file: "3n-n3down-version.txt", call: func(c *nodetool.Client) error { return c.Snapshot(ctx, node, "quiesce-x", nil) },
			want: "Failed to connect to '127.0.0.1:7399'", transient: true, notRun: true, code: "jmx"},
		{file: "status-nosuchks.txt", call: func(c *nodetool.Client) error { _, err := c.Status(ctx, node, "nosuchks"); return err },
			want: "nodetool status nosuchks exited 1: The keyspace nosuchks, does not exist", notRun: true, code: "exit"},
		{file: "describering-nosuchks.txt", call: func(c *nodetool.Client) error { _, _, err := c.DescribeRing(ctx, node, "nosuchks"); return err },
			want: "nodetool describering nosuchks exited 2: No such keyspace: nosuchks", code: "exit"},
		{file: "clearsnapshot-noargs.txt", call: func(c *nodetool.Client) error { return c.ClearSnapshot(ctx, node, "x") },
			want: "nodetool clearsnapshot -t x exited 1: Specify snapshot name or --all", notRun: true, code: "exit"},
		{file: "badcmd.txt", call: func(c *nodetool.Client) error { _, err := c.Ring(ctx, node, ""); return err },
			want: "exited 1: Found unexpected parameters: [nosuchcommand]", notRun: true, code: "exit"},
	} {
		c, _ := clientFor(t, tc.file)
		err := tc.call(c)
		require.Error(t, err, tc.file)
		require.Contains(t, err.Error(), tc.want, tc.file)
		require.Less(t, len(err.Error()), 500, "%s: error text is bounded", tc.file)
		require.NotContains(t, err.Error(), ".jar", tc.file)
		require.NotContains(t, err.Error(), "secret", tc.file)
		require.Equal(t, !tc.transient, errclass.IsPermanent(err), "%s: permanent", tc.file)
		require.Equal(t, tc.notRun, errclass.IsNotRun(err), "%s: not run", tc.file)
		require.Equal(t, tc.code, errclass.Code(err), tc.file)
		require.NotEmpty(t, errclass.Stderr(err), "%s: the node's words reach the failure event", tc.file)
	}
}

// Without a label (a runner used directly), the message names the program
// by its base name, nodetool's main class as "nodetool", passwords hidden.
func TestExitErrorLabelsAnArgv(t *testing.T) {
	t.Parallel()
	rec := readRecorded(t, "connrefused.txt")
	err := &nodetool.ExitError{Argv: append(javaBase(), "version"), ExitCode: 1, Out: rec.out}
	require.Equal(t, "nodetool -h 127.0.0.1 -p 7199 -pw REDACTED version exited 1: Failed to connect to '127.0.0.1:7299' - ConnectException: 'Connection refused'.", err.Error())
	err = &nodetool.ExitError{Argv: []string{"/opt/cassandra/bin/nodetool", "snapshot", strings.Repeat("x", 5000)}, ExitCode: 2,
		Out: nodetool.Output{Stderr: []byte(strings.Repeat("y", 5000))}}
	require.Less(t, len(err.Error()), 600)
	require.True(t, strings.HasPrefix(err.Error(), "nodetool snapshot xxx"))
}

func TestReasonFindsTheLineThatSaysWhy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ stdout, stderr, want string }{
		{stdout: "Requested creating snapshot(s) for [x]\nnodetool: Keyspace x does not exist\nSee 'nodetool help'\n", want: "Keyspace x does not exist"},
		{stderr: "error: boom\n-- StackTrace --\njava.io.IOException: boom\n\tat a.b\n", want: "boom"},
		{stderr: "sudo: a password is required\n", want: "sudo: a password is required"},
		{stdout: "Requested clearing snapshot(s)\nsomething odd\n", want: "something odd"},
		{want: "(no output)"},
	} {
		require.Equal(t, tc.want, nodetool.Reason(nodetool.Output{Stdout: []byte(tc.stdout), Stderr: []byte(tc.stderr)}))
	}
}

func TestParseRealInfo(t *testing.T) {
	t.Parallel()
	info, err := nodetool.ParseInfo(readRecorded(t, "info.txt").out.Stdout)
	require.NoError(t, err)
	require.Equal(t, "2164ea74-d818-447e-943d-2519f070db0e", info.HostID)
	require.Equal(t, int64(98631), info.LoadBytes)
	require.Equal(t, int64(140185), info.UncompressedLoadBytes)
	require.Equal(t, "COMPLETED", info.BootstrapState)
	require.False(t, info.BootstrapFailed || info.Decommissioning || info.DecommissionFailed)
	require.Empty(t, info.Tokens)
	require.Equal(t, []string{"dc1", "rack1"}, []string{info.Datacenter, info.Rack})

	info, err = nodetool.ParseInfo(readRecorded(t, "info-T.txt").out.Stdout)
	require.NoError(t, err)
	require.Len(t, info.Tokens, 16)
	require.Equal(t, "-7091964406012260259", info.Tokens[0])
	info, err = nodetool.ParseInfo(readRecorded(t, "3n-info-T-n3.txt").out.Stdout)
	require.NoError(t, err)
	require.Equal(t, "4df364ed-0a6a-4881-9fb5-f324b9d3f77c", info.HostID)
	require.Len(t, info.Tokens, 16)
}

func TestParseRealStatusAndRing(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"status.txt", "status-ks.txt", "status-after.txt", "3n-status.txt", "3n-status-ks.txt", "3n-status-n3down.txt", "3n-status-via-n2.txt"} {
		nodes, err := nodetool.ParseStatus(readRecorded(t, f).out.Stdout)
		require.NoError(t, err, f)
		require.NotEmpty(t, nodes, f)
	}
	nodes, err := nodetool.ParseStatus(readRecorded(t, "3n-status-n3down.txt").out.Stdout)
	require.NoError(t, err)
	down := 0
	for _, n := range nodes {
		if !n.UpNormal() {
			down++
		}
	}
	require.Equal(t, 1, down)
	for _, f := range []string{"ring.txt", "ring-ks.txt", "ring-after.txt", "3n-ring.txt", "3n-ring-n3down.txt"} {
		entries, err := nodetool.ParseRing(readRecorded(t, f).out.Stdout)
		require.NoError(t, err, f)
		require.NotEmpty(t, entries, f)
	}
	v, ranges, err := nodetool.ParseDescribeRing(readRecorded(t, "3n-describering.txt").out.Stdout)
	require.NoError(t, err)
	require.Equal(t, "4e424a9a-8452-3987-b270-62e0a600aa54", v)
	require.Len(t, ranges, 48)
	require.Len(t, ranges[0].Details, 3)
	_, _, err = nodetool.ParseDescribeRing(readRecorded(t, "describering-nosuchks.txt").out.Stdout)
	require.ErrorContains(t, err, "no token ranges")
	v, err = nodetool.ParseVersion(readRecorded(t, "version.txt").out.Stdout)
	require.NoError(t, err)
	require.Equal(t, "5.0.6", v)
}

func TestParseRealListSnapshots(t *testing.T) {
	t.Parallel()
	entries, err := nodetool.ParseListSnapshots(readRecorded(t, "listsnapshots.txt").out.Stdout)
	require.NoError(t, err)
	require.Len(t, entries, 58)
	require.Equal(t, nodetool.SnapshotEntry{Tag: "quiesce-test1", Keyspace: "system_auth", Table: "network_permissions",
		TrueSize: "110 bytes", OnDisk: "110 bytes"}, entries[0])
	entries, err = nodetool.ParseListSnapshots(readRecorded(t, "listsnapshots-ttl.txt").out.Stdout)
	require.NoError(t, err)
	require.Len(t, entries, 8)
	entries, err = nodetool.ParseListSnapshots(readRecorded(t, "listsnapshots-empty.txt").out.Stdout)
	require.NoError(t, err)
	require.Empty(t, entries)
	// quiesce-test1 cleared, quiesce-test2 and 3 left.
	entries, err = nodetool.ParseListSnapshots(readRecorded(t, "listsnapshots-after-clear.txt").out.Stdout)
	require.NoError(t, err)
	require.Len(t, entries, 6)
	for _, e := range entries {
		require.NotEqual(t, "quiesce-test1", e.Tag)
	}
}

func TestParseRealDescribeCluster(t *testing.T) {
	t.Parallel()
	c, err := nodetool.ParseDescribeCluster(readRecorded(t, "3n-describecluster.txt").out.Stdout)
	require.NoError(t, err)
	require.Equal(t, "quiesce-real", c.Name)
	require.Equal(t, "org.apache.cassandra.locator.GossipingPropertyFileSnitch", c.Snitch)
	require.Equal(t, "org.apache.cassandra.dht.Murmur3Partitioner", c.Partitioner)
	require.Equal(t, map[string][]string{"4e424a9a-8452-3987-b270-62e0a600aa54": {"127.0.0.1", "127.0.0.2", "127.0.0.3"}}, c.SchemaVersions)
	require.Equal(t, map[string][]string{"5.0.6": {"127.0.0.1:7000", "127.0.0.2:7000", "127.0.0.3:7000"}}, c.Versions)
	require.Len(t, c.Keyspaces, 8)
	require.Contains(t, c.Keyspaces, nodetool.Keyspace{Name: "shop3", Class: "NetworkTopologyStrategy", Options: map[string]string{"dc1": "3"}})
	require.Contains(t, c.Keyspaces, nodetool.Keyspace{Name: "system", Class: "LocalStrategy"})
	require.Contains(t, c.Keyspaces, nodetool.Keyspace{Name: "system_traces", Class: "SimpleStrategy", Options: map[string]string{"replication_factor": "2"}})

	c, err = nodetool.ParseDescribeCluster(readRecorded(t, "describecluster.txt").out.Stdout)
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"069b3db1-68df-30bd-8d47-42e3f8390898": {"127.0.0.1"}}, c.SchemaVersions)
	_, err = nodetool.ParseDescribeCluster([]byte("nothing\n"))
	require.Error(t, err)
}

func TestParseRealDataPaths(t *testing.T) {
	t.Parallel()
	tables, err := nodetool.ParseDataPaths(readRecorded(t, "datapaths.txt").out.Stdout)
	require.NoError(t, err)
	require.Len(t, tables, 49)
	require.Equal(t, nodetool.TablePaths{Keyspace: "shop", Table: "orders",
		Paths: []string{"/var/lib/cassandra/data/shop/orders-834612c0ee0911f1a0286b6c2e0eb17a"}}, tables[2])
	require.Equal(t, []string{"/var/lib/cassandra/data"}, nodetool.DataDirs(tables))
	_, err = nodetool.ParseDataPaths([]byte("Paths:\n\t/x\n"))
	require.Error(t, err)
}

func TestDataDirsFromRealDataPaths(t *testing.T) {
	t.Parallel()
	c, r := clientFor(t, "datapaths.txt")
	dirs, err := c.DataDirs(context.Background(), node)
	require.NoError(t, err)
	require.Equal(t, []string{"/var/lib/cassandra/data"}, dirs)
	require.Equal(t, "datapaths", r.argv[0][len(r.argv[0])-1])
}

func TestDescribeFromRealOutputs(t *testing.T) {
	t.Parallel()
	r := &byCommand{files: map[string]string{
		"info": "3n-info-T-n3.txt", "status": "3n-status.txt", "describecluster": "3n-describecluster.txt",
	}}
	c := nodetool.New(r, nodetool.Settings{Base: javaBase()})
	f, err := c.Describe(context.Background(), messages.Node{Name: "n3"})
	require.NoError(t, err)
	require.Empty(t, f.Errors)
	require.Equal(t, "4df364ed-0a6a-4881-9fb5-f324b9d3f77c", f.HostID)
	require.Equal(t, "127.0.0.3", f.Address)
	require.Equal(t, "5.0.6", f.Version)
	require.Equal(t, "quiesce-real", f.ClusterName)
	require.Equal(t, "4e424a9a-8452-3987-b270-62e0a600aa54", f.SchemaVersion)
	require.Len(t, f.Tokens, 16)
	require.Equal(t, []string{"dc1", "rack1"}, []string{f.Datacenter, f.Rack})
	require.Len(t, f.Keyspaces, 8)

	// A node that answers info but not the rest: what is missing is named.
	r.files["describecluster"] = "connrefused.txt"
	r.files["version"] = "connrefused.txt"
	f, err = c.Describe(context.Background(), messages.Node{Name: "n3"})
	require.NoError(t, err)
	require.Len(t, f.Errors, 2)
	require.Contains(t, f.Errors[0], "describecluster: nodetool describecluster exited 1: Failed to connect")
	r.files["info"] = "connrefused.txt"
	_, err = c.Describe(context.Background(), messages.Node{Name: "n3"})
	require.Error(t, err)
	require.False(t, errclass.IsPermanent(err))
}

// byCommand answers each nodetool subcommand with its recorded run.
type byCommand struct{ files map[string]string }

func (b *byCommand) Run(_ context.Context, _ messages.Node, cmd nodetool.Command) (nodetool.Output, error) {
	sub := ""
	for i, a := range cmd.Argv {
		if a == "org.apache.cassandra.tools.NodeTool" && i+5 < len(cmd.Argv)+1 {
			for _, w := range cmd.Argv[i+1:] {
				if !strings.HasPrefix(w, "-") && !strings.Contains(w, ".") && w != "secret" && w != "7199" {
					sub = w
					break
				}
			}
		}
	}
	f, ok := b.files[sub]
	if !ok {
		return nodetool.Output{}, errors.New("no recording for " + sub)
	}
	rec := (&replay{}).load(f)
	if rec.out.ExitCode != 0 {
		return rec.out, &nodetool.ExitError{Argv: cmd.Argv, ExitCode: rec.out.ExitCode, Out: rec.out}
	}
	return rec.out, nil
}

func (*replay) load(name string) recorded { return readRecorded(panicTB{}, name) }

// panicTB is enough of a testing.TB for readRecorded outside a test's goroutine.
type panicTB struct{ testing.TB }

func (panicTB) Helper() {}
func (panicTB) Errorf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
func (panicTB) FailNow() { panic("FailNow") }
