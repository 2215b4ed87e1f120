package cassandra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nodetoolMain is nodetool's main class in cassandra-all.
const nodetoolMain = "org.apache.cassandra.tools.NodeTool"

// NodetoolResult is what one nodetool run printed and how it exited.
type NodetoolResult struct {
	// Argv is the whole command line, java first.
	Argv []string
	// Stdout and Stderr are the command's output. Note that nodetool gives
	// some failures on stdout (a missing keyspace for snapshot, on its
	// second line).
	Stdout, Stderr string
	// ExitCode is the exit status (-1 when killed by a signal).
	ExitCode int
	// Took is the wall time, JVM start-up included (about 1 to 2 s).
	Took time.Duration
}

// String describes the run for a test failure.
func (r NodetoolResult) String() string {
	args := r.Argv
	if i := indexOf(args, nodetoolMain); i >= 0 {
		args = append([]string{"nodetool"}, args[i+1:]...)
	}
	return fmt.Sprintf("%s: exit %d after %s\n--- stdout:\n%s--- stderr:\n%s",
		strings.Join(args, " "), r.ExitCode, r.Took.Round(time.Millisecond), r.Stdout, r.Stderr)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// NodetoolArgv is the command line of `nodetool -h 127.0.0.1 -p <JMX port>
// args...` for this node: java with nodetool's JVM flags (each one argv
// word), the classpath and NodeTool's main class. It works whether the node
// runs or not (nodetool then fails to connect, exit 1).
func (n *Node) NodetoolArgv(args ...string) []string {
	argv := append([]string{n.c.java}, nodetoolJVMArgs(n.c.toolsLogback)...)
	argv = append(argv, "-cp", n.c.cp.String(), nodetoolMain, "-h", "127.0.0.1", "-p", strconv.Itoa(n.jmxPort))
	return append(argv, args...)
}

func nodetoolJVMArgs(logback string) []string {
	args := []string{
		"-Xmx128m", "-Xss256k",
		// A JVM that lives a second or two: no parallel GC threads to start,
		// no optimising compiler to feed.
		"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-XX:+PerfDisableSharedMem",
		"-Djava.net.preferIPv4Stack=true",
		"-Dlogback.configurationFile=file://" + logback,
	}
	return append(args, jvmWords(clientOptions)...)
}

// NodetoolScript is the path of an executable shell script that runs
// NodetoolArgv with its own arguments appended: a `nodetool` for the node,
// for whatever wants a program rather than an argv (an SSH command, a
// quiesce cluster's `nodetool:` setting).
func (n *Node) NodetoolScript() string { return filepath.Join(n.dir, "bin", "nodetool") }

func (n *Node) writeNodetoolScript() error {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# nodetool of Cassandra node %s (JMX on 127.0.0.1:%d), written by the quiesce test harness.\nexec", n.addr, n.jmxPort)
	for _, w := range n.NodetoolArgv() {
		b.WriteString(" " + shellQuote(w))
	}
	b.WriteString(" \"$@\"\n")
	if err := os.MkdirAll(filepath.Dir(n.NodetoolScript()), 0o755); err != nil {
		return err
	}
	return os.WriteFile(n.NodetoolScript(), []byte(b.String()), 0o755)
}

// Nodetool runs nodetool against the node and returns its output and exit
// code; a non-zero exit is not an error. The error is for a nodetool that
// could not be run, or was killed when ctx ended (with its process group).
func (n *Node) Nodetool(ctx context.Context, args ...string) (NodetoolResult, error) {
	argv := n.NodetoolArgv(args...)
	r := NodetoolResult{Argv: argv}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	began := time.Now()
	err := cmd.Run()
	r.Took = time.Since(began)
	r.Stdout, r.Stderr = stdout.String(), stderr.String()
	if ctx.Err() != nil {
		return r, fmt.Errorf("nodetool %s on %s: %w", strings.Join(args, " "), n.addr, context.Cause(ctx))
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.ExitCode = exit.ExitCode()
	default:
		return r, fmt.Errorf("nodetool %s on %s: %w", strings.Join(args, " "), n.addr, err)
	}
	return r, nil
}

// MustNodetool runs nodetool and fails t unless it exits 0.
func (n *Node) MustNodetool(t testing.TB, args ...string) NodetoolResult {
	t.Helper()
	r, err := n.Nodetool(t.Context(), args...)
	if err != nil {
		t.Fatalf("cassandra: %v\n%s", err, r)
	}
	if r.ExitCode != 0 {
		t.Fatalf("cassandra: node %s: %s", n.addr, r)
	}
	return r
}

// Status returns the ring as the node sees it in `nodetool status`:
// address → state (UN, DN, UJ, ...).
func (n *Node) Status(ctx context.Context) (map[string]string, error) {
	r, err := n.Nodetool(ctx, "status")
	if err != nil {
		return nil, err
	}
	if r.ExitCode != 0 {
		return nil, fmt.Errorf("node %s: %s", n.addr, r)
	}
	return parseStatus(r.Stdout), nil
}

// parseStatus reads the node lines of `nodetool status` ("UN  127.0.0.1
// 1.04 MiB  16  ?  <host id>  rack1"), of every datacenter.
func parseStatus(out string) map[string]string {
	ring := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || len(f[0]) != 2 || !strings.ContainsRune("UD", rune(f[0][0])) || !strings.ContainsRune("NLJM", rune(f[0][1])) {
			continue
		}
		ring[f[1]] = f[0]
	}
	return ring
}
