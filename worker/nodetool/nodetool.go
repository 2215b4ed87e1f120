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
	"path"
	"strings"
	"sync"

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
	// Label names the command in error messages (default: Label(Argv)).
	Label string
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
	// Label names the command in messages ("nodetool snapshot -t T shop"),
	// set by the Client; without it a short form of Argv stands in. A
	// message never carries the whole argv: a nodetool run as "java …" is
	// kilobytes of JVM options and classpath.
	Label string
}

// maxReason bounds the reason an error quotes.
const maxReason = 300

func (e *ExitError) Error() string {
	label := e.Label
	if label == "" {
		label = Label(e.Argv)
	}
	return fmt.Sprintf("%s exited %d: %s", label, e.ExitCode, e.Reason())
}

// Reason is what the command said went wrong, in one bounded line, from
// whichever stream and line it said it on: nodetool prints some failures on
// stderr ("error: Snapshot T already exists."), some on stdout, and not
// always on the first line (a missing keyspace for snapshot is on the
// second).
func (e *ExitError) Reason() string { return Reason(e.Out) }

// Reason finds the line of a command's output that says why it failed: the
// first "error: ", "nodetool: " or "Error: " line of stderr, then of stdout;
// failing those, the first line of stderr, then of stdout, that is neither
// nodetool's echo of the request nor a Java stack frame.
func Reason(out Output) string {
	for _, b := range [][]byte{out.Stderr, out.Stdout} {
		for line := range strings.SplitSeq(string(b), "\n") {
			line = strings.TrimSpace(line)
			for _, p := range []string{"error: ", "nodetool: ", "Error: "} {
				if r, ok := strings.CutPrefix(line, p); ok && strings.TrimSpace(r) != "" {
					return bound(strings.TrimSpace(r))
				}
			}
		}
	}
	for _, b := range [][]byte{out.Stderr, out.Stdout} {
		for line := range strings.SplitSeq(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !noise(line) {
				return bound(line)
			}
		}
	}
	return "(no output)"
}

// noise reports lines that never say why a command failed.
func noise(line string) bool {
	for _, p := range []string{"Requested creating snapshot", "Requested clearing snapshot", "See 'nodetool help'",
		"-- StackTrace --", "at ", "... ", "Schema Version:", "TokenRange:"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

func bound(s string) string {
	if len(s) > maxReason {
		return s[:maxReason] + "…"
	}
	return s
}

// Label is a short name for argv in messages: the program's base name (or
// "nodetool" for a java command running nodetool's main class) and the
// arguments after it, password values hidden, at most 200 bytes.
func Label(argv []string) string {
	if len(argv) == 0 {
		return "(empty command)"
	}
	words := []string{path.Base(argv[0])}
	rest := argv[1:]
	for i, a := range argv {
		if a == "org.apache.cassandra.tools.NodeTool" {
			words, rest = []string{"nodetool"}, argv[i+1:]
			break
		}
	}
	words = append(words, redact(rest)...)
	return bound200(strings.Join(words, " "))
}

func bound200(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
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

// maxStderr bounds what Stderr returns.
const maxStderr = 4096

// Stderr returns what the command printed about its failure, for the
// failure event: its stderr without Java stack frames, or its stdout when
// it printed nothing on stderr (nodetool reports a missing keyspace there).
func (e *ExitError) Stderr() string {
	text := string(e.Out.Stderr)
	if strings.TrimSpace(text) == "" {
		text = string(e.Out.Stdout)
	}
	if strings.Contains(text, "\tat ") {
		var keep []string
		for line := range strings.SplitSeq(text, "\n") {
			t := strings.TrimSpace(line)
			if strings.HasPrefix(t, "at ") || (strings.HasPrefix(t, "... ") && strings.HasSuffix(t, "more")) {
				continue
			}
			keep = append(keep, line)
		}
		text = strings.Join(keep, "\n")
	}
	if len(text) > maxStderr {
		text = text[:maxStderr] + "…"
	}
	return text
}

// Code is the metric label of a command that ran and failed: "jmx" when
// nodetool could not reach the node's JMX port, "exit" otherwise.
func (e *ExitError) Code() string {
	if e.Unreachable() {
		return "jmx"
	}
	return "exit"
}

// Unreachable reports whether nodetool failed to connect to the node's JMX
// port because nothing answered (refused, timed out, reset): Cassandra is
// down or starting, a condition that passes. A refused login is not.
func (e *ExitError) Unreachable() bool {
	all := string(e.Out.Stderr) + "\n" + string(e.Out.Stdout)
	if !strings.Contains(all, "Failed to connect") {
		return false
	}
	for _, s := range []string{"ConnectException", "Connection refused", "SocketTimeoutException", "timed out",
		"NoRouteToHostException", "Connection reset", "ConnectIOException", "EOFException"} {
		if strings.Contains(all, s) {
			return true
		}
	}
	return false
}

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
	label := bound200(strings.Join(append([]string{"nodetool"}, redact(args)...), " "))
	return Command{Argv: argv, Env: c.Env, Sudo: c.Sudo, Label: label}
}

func (c *Client) run(ctx context.Context, node messages.Node, args ...string) (Output, error) {
	return c.exec(ctx, node, c.command(node, args...))
}

// exec runs cmd, naming it by its label in the error of a failed run.
func (c *Client) exec(ctx context.Context, node messages.Node, cmd Command) (Output, error) {
	out, err := c.Runner.Run(ctx, node, cmd)
	return out, labelled(cmd, err)
}

// labelled names a failed run of cmd by its label.
func labelled(cmd Command, err error) error {
	var ee *ExitError
	if errors.As(err, &ee) && ee.Label == "" {
		ee.Label = cmd.Label
	}
	return err
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

// Prepare makes the node's executor ready without running anything on the
// node: over SSH, the connection is made, the host key verified and the
// login accepted. A node that cannot be reached fails here, before a flush
// records anything.
func (c *Client) Prepare(ctx context.Context, node messages.Node) error {
	if ch, ok := c.Runner.(interface {
		Check(context.Context, messages.Node) error
	}); ok {
		return ch.Check(ctx, node)
	}
	return nil
}

// Snapshot runs "nodetool snapshot -t TAG [keyspaces]": flush, then
// hard-link, and returns only once nodetool said it made the snapshot
// ("Snapshot directory: TAG"): a command that exits 0 without saying so did
// not snapshot. A tag already on the node is an error wrapping
// worker.ErrSnapshotExists; whether that is the job's own is the caller's to
// know.
func (c *Client) Snapshot(ctx context.Context, node messages.Node, tag string, keyspaces []string) error {
	args, err := SnapshotArgs(tag, keyspaces)
	if err != nil {
		return errclass.Permanent(errclass.NotRun(err))
	}
	out, err := c.run(ctx, node, args...)
	return snapshotResult(tag, out, err)
}

// snapshotResult judges what nodetool snapshot of tag returned.
func snapshotResult(tag string, out Output, err error) error {
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) && snapshotExists(ee.Out, tag) {
			return errclass.Permanent(&existsError{err: ee})
		}
		return classify(err)
	}
	if got := ParseSnapshot(out.Stdout); got != tag {
		return errclass.Permanent(fmt.Errorf("nodetool snapshot exited 0 without reporting snapshot %s (no %q line): %s",
			tag, "Snapshot directory: "+tag, firstLine(append(out.Stdout, out.Stderr...))))
	}
	return nil
}

// ArmedRunner is a Runner that can start a command's session ahead of the
// command: RunArmed calls ready once the command is held on the node,
// starts it when fire is closed, and withdraws it, never run, when ctx ends
// first.
type ArmedRunner interface {
	RunArmed(ctx context.Context, node messages.Node, cmd Command, ready func(), fire <-chan struct{}) (Output, error)
}

var _ worker.SnapshotArmer = (*Client)(nil)

// ArmSnapshot makes nodetool snapshot ready to start on node. Over a runner
// that can hold a command (ArmedRunner: SSH) the session and its shell are
// started now, so firing costs one write; over any other (local) firing
// starts the command.
func (c *Client) ArmSnapshot(ctx context.Context, node messages.Node, tag string, keyspaces []string) (worker.ArmedSnapshot, error) {
	args, err := SnapshotArgs(tag, keyspaces)
	if err != nil {
		return nil, errclass.Permanent(errclass.NotRun(err))
	}
	a := &armed{fire: make(chan struct{}), done: make(chan error, 1)}
	ar, ok := c.Runner.(ArmedRunner)
	if !ok {
		go func() {
			select {
			case <-a.fire:
				a.done <- c.Snapshot(ctx, node, tag, keyspaces)
			case <-ctx.Done():
				a.done <- errclass.NotRun(context.Cause(ctx))
			}
		}()
		return a, nil
	}
	ready := make(chan struct{})
	cmd := c.command(node, args...)
	go func() {
		out, err := ar.RunArmed(ctx, node, cmd, func() { close(ready) }, a.fire)
		if err != nil && !fired(a.fire) {
			// Withdrawn or failed before nodetool started.
			a.done <- errclass.NotRun(labelled(cmd, err))
			return
		}
		a.done <- snapshotResult(tag, out, labelled(cmd, err))
	}()
	select {
	case <-ready:
		return a, nil
	case err := <-a.done:
		return nil, err
	}
}

// armed is a snapshot command waiting for its fire.
type armed struct {
	fire chan struct{}
	once sync.Once
	done chan error
}

func (a *armed) Fire()       { a.once.Do(func() { close(a.fire) }) }
func (a *armed) Wait() error { return <-a.done }

func fired(fire <-chan struct{}) bool {
	select {
	case <-fire:
		return true
	default:
		return false
	}
}

// existsError is a snapshot refused because its tag is on the node already.
type existsError struct{ err *ExitError }

func (e *existsError) Error() string   { return e.err.Error() }
func (e *existsError) Unwrap() []error { return []error{e.err, worker.ErrSnapshotExists} }

// ClearSnapshot runs "nodetool clearsnapshot -t TAG".
func (c *Client) ClearSnapshot(ctx context.Context, node messages.Node, tag string) error {
	if err := messages.ValidateTag(tag); err != nil {
		return errclass.Permanent(err)
	}
	_, err := c.run(ctx, node, "clearsnapshot", "-t", tag)
	return classify(err)
}

// Sync flushes the file systems holding dirs to their devices with
// "sync -f DIR..." (syncfs(2) of each), or every file system of the node
// with "sync" when dirs is empty, through the same executor and sudo
// setting as nodetool. Cassandra makes a snapshot's hard links without
// syncing their directories; a volume snapshot holds only what reached the
// volume.
func (c *Client) Sync(ctx context.Context, node messages.Node, dirs []string) error {
	argv := []string{"sync"}
	if len(dirs) > 0 {
		argv = append(argv, "-f", "--")
		for _, d := range dirs {
			if err := messages.ValidateDir("data directory", d); err != nil {
				return errclass.Permanent(err)
			}
			argv = append(argv, d)
		}
	}
	_, err := c.exec(ctx, node, Command{Argv: argv, Sudo: c.Sudo, Label: bound200(strings.Join(argv, " "))})
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

// snapshotExists reports nodetool's refusal of a tag already on the node
// ("Snapshot TAG already exists."), on whichever stream.
func snapshotExists(out Output, tag string) bool {
	all := string(out.Stderr) + string(out.Stdout)
	return strings.Contains(all, "Snapshot "+tag+" already exists")
}

// classify gives a failed command its class. nodetool that could not reach
// the node's JMX port is transient: Cassandra is down or starting, and
// trying again later may work. Any other failure nodetool reports is
// permanent: it ran and said no, and running it again will say the same.
// A failure that left the node as it was (no JMX connection, a refused
// argument: nodetool exits 1; a program that could not be run: 126, 127) is
// also marked errclass.NotRun. Errors from the runner keep the class the
// runner gave them.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if !errors.As(err, &ee) {
		return err
	}
	notRun := ee.ExitCode == 1 || ee.ExitCode == 126 || ee.ExitCode == 127
	if ee.Unreachable() {
		return errclass.NotRun(err)
	}
	if notRun {
		err = errclass.NotRun(err)
	}
	return errclass.Permanent(err)
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return bound(s)
}
