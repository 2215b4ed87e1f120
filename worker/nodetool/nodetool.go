// Package nodetool drives Cassandra's nodetool through a command Runner (local
// exec or SSH). Commands are built from validated values only; the Runner gets
// an argv, never a shell string, and an SSH runner quotes each word itself.
package nodetool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

// Command is a program to run on a node.
type Command struct {
	// Argv is the program and its arguments, each a separate word.
	Argv []string
	// Env is set for the program.
	Env map[string]string
	// Sudo runs the program through "sudo -n".
	Sudo bool
	// Stdin is what the program reads on its standard input; only a local
	// runner supplies it (over SSH the wrapper owns the channel's input).
	Stdin []byte
}

// Output is what a command printed.
type Output struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// ExitError is a command that ran and exited non-zero.
type ExitError struct {
	Argv     []string
	ExitCode int
	Out      Output
}

func (e *ExitError) Error() string {
	msg := firstLine(e.Out.Stderr)
	if msg == "" {
		msg = firstLine(e.Out.Stdout)
	}
	return fmt.Sprintf("%s exited %d: %s", strings.Join(redact(e.Argv), " "), e.ExitCode, msg)
}

// redact hides the value of nodetool's password options, so a JMX password
// given on the command line never reaches an error message or a log.
func redact(argv []string) []string {
	out := make([]string, len(argv))
	copy(out, argv)
	for i, a := range out {
		switch {
		case a == "-pw" || a == "--password":
			if i+1 < len(out) {
				out[i+1] = "REDACTED"
			}
		case strings.HasPrefix(a, "--password="):
			out[i] = "--password=REDACTED"
		case strings.HasPrefix(a, "-pw="):
			out[i] = "-pw=REDACTED"
		}
	}
	return out
}

// Stderr returns the command's stderr, for the failure event.
func (e *ExitError) Stderr() string { return string(e.Out.Stderr) }

// Code is the metric label of a command that ran and failed.
func (e *ExitError) Code() string { return "exit" }

// Runner runs a command on a node. It returns *ExitError for a command that
// ran and failed, and a classified error (errclass) for one that could not
// run. A cancelled ctx stops the command.
type Runner interface {
	Run(ctx context.Context, node messages.Node, cmd Command) (Output, error)
}

// Settings say how nodetool runs on a cluster's nodes.
type Settings struct {
	// Base is the nodetool command and leading arguments, e.g.
	// ["/opt/cassandra/bin/nodetool", "-h", "127.0.0.1"]; default
	// ["nodetool"].
	Base []string
	// Env is set for nodetool (a non-login shell often lacks JAVA_HOME).
	Env map[string]string
	// Sudo runs nodetool through "sudo -n".
	Sudo bool
	// PerNode overrides Base for individual nodes (by node name).
	PerNode map[string][]string
}

// Client runs nodetool subcommands through a Runner.
type Client struct {
	Runner Runner
	Settings
}

// New returns a Client that runs nodetool through r as s says.
func New(r Runner, s Settings) *Client { return &Client{Runner: r, Settings: s} }

var _ worker.NodeTool = (*Client)(nil)

func (c *Client) command(node messages.Node, args ...string) Command {
	base := c.Base
	if b, ok := c.PerNode[node.Name]; ok {
		base = b
	}
	if len(base) == 0 {
		base = []string{"nodetool"}
	}
	argv := make([]string, 0, len(base)+len(args))
	argv = append(argv, base...)
	argv = append(argv, args...)
	return Command{Argv: argv, Env: c.Env, Sudo: c.Sudo}
}

func (c *Client) run(ctx context.Context, node messages.Node, args ...string) (Output, error) {
	return c.Runner.Run(ctx, node, c.command(node, args...))
}

// SnapshotArgs builds the arguments of "nodetool snapshot", validating every
// value first.
func SnapshotArgs(tag string, keyspaces []string) ([]string, error) {
	if err := messages.ValidateTag(tag); err != nil {
		return nil, err
	}
	args := []string{"snapshot", "-t", tag}
	for _, ks := range keyspaces {
		if err := messages.ValidateKeyspace(ks); err != nil {
			return nil, err
		}
		args = append(args, ks)
	}
	return args, nil
}

// Snapshot runs "nodetool snapshot -t TAG [keyspaces]": flush, then hard-link.
func (c *Client) Snapshot(ctx context.Context, node messages.Node, tag string, keyspaces []string) error {
	args, err := SnapshotArgs(tag, keyspaces)
	if err != nil {
		return errclass.Permanent(err)
	}
	out, err := c.run(ctx, node, args...)
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) && snapshotExists(ee.Out) {
			return nil
		}
		return classify(err)
	}
	_ = out
	return nil
}

// ClearSnapshot runs "nodetool clearsnapshot -t TAG".
func (c *Client) ClearSnapshot(ctx context.Context, node messages.Node, tag string) error {
	if err := messages.ValidateTag(tag); err != nil {
		return errclass.Permanent(err)
	}
	_, err := c.run(ctx, node, "clearsnapshot", "-t", tag)
	return classify(err)
}

// SnapshotEntry is one line of "nodetool listsnapshots".
type SnapshotEntry struct {
	Tag      string
	Keyspace string
	Table    string
	TrueSize string
	OnDisk   string
}

// ListSnapshots runs "nodetool listsnapshots".
func (c *Client) ListSnapshots(ctx context.Context, node messages.Node) ([]SnapshotEntry, error) {
	out, err := c.run(ctx, node, "listsnapshots")
	if err != nil {
		return nil, classify(err)
	}
	return ParseListSnapshots(out.Stdout)
}

// Tags returns the distinct snapshot tags present on a node.
func (c *Client) Tags(ctx context.Context, node messages.Node) ([]string, error) {
	entries, err := c.ListSnapshots(ctx, node)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var tags []string
	for _, e := range entries {
		if !seen[e.Tag] {
			seen[e.Tag] = true
			tags = append(tags, e.Tag)
		}
	}
	return tags, nil
}

// ParseListSnapshots parses "nodetool listsnapshots" output.
func ParseListSnapshots(out []byte) ([]SnapshotEntry, error) {
	var entries []SnapshotEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	header := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "Snapshot Details"):
			continue
		case strings.HasPrefix(line, "There are no snapshots"):
			return nil, nil
		case strings.HasPrefix(line, "Snapshot name"):
			header = true
			continue
		case strings.HasPrefix(line, "Total TrueDiskSpaceUsed"):
			continue
		}
		if !header {
			continue
		}
		f := strings.Fields(line)
		// name keyspace table <true size: n unit> <on disk: n unit> [created] [expires]
		if len(f) < 7 {
			return nil, fmt.Errorf("listsnapshots: malformed line %q", line)
		}
		entries = append(entries, SnapshotEntry{
			Tag: f[0], Keyspace: f[1], Table: f[2],
			TrueSize: f[3] + " " + f[4], OnDisk: f[5] + " " + f[6],
		})
	}
	return entries, sc.Err()
}

func snapshotExists(out Output) bool {
	all := string(out.Stderr) + string(out.Stdout)
	return strings.Contains(all, "already exists")
}

// classify makes a nodetool failure permanent: nodetool ran and said no, and
// running it again will say the same. Errors from the runner keep the class
// the runner gave them.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return errclass.Permanent(err)
	}
	return err
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
