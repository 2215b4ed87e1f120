// Package local runs node commands on this host: the agent mode (a worker on
// the Cassandra node itself) and the embedded demo's simulated nodes.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// MaxOutput bounds what is kept of a command's stdout and of its stderr.
const MaxOutput = 1 << 20

// Runner executes commands with os/exec, never through a shell.
type Runner struct {
	// WaitDelay is how long a cancelled command gets between SIGTERM and SIGKILL.
	WaitDelay time.Duration
}

var _ nodetool.Runner = (*Runner)(nil)

// Run starts cmd.Argv in its own process group and waits for it. A cancelled
// ctx signals the whole group, so nothing the command started outlives it.
func (r *Runner) Run(ctx context.Context, _ messages.Node, cmd nodetool.Command) (nodetool.Output, error) {
	if len(cmd.Argv) == 0 {
		return nodetool.Output{}, errclass.Permanent(errclass.NotRun(errors.New("local: empty command")))
	}
	argv := cmd.Argv
	if cmd.Sudo {
		argv = append([]string{"sudo", "-n", "--"}, argv...)
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if len(cmd.Env) > 0 {
		env := os.Environ()
		keys := make([]string, 0, len(cmd.Env))
		for k := range cmd.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			env = append(env, k+"="+cmd.Env[k])
		}
		c.Env = env
	}
	var stdout, stderr capped
	c.Stdout, c.Stderr = &stdout, &stderr
	if len(cmd.Stdin) > 0 {
		c.Stdin = bytes.NewReader(cmd.Stdin)
	}
	if err := c.Start(); err != nil {
		// Nothing ran: the node is as it was.
		return nodetool.Output{}, errclass.Permanent(errclass.NotRun(fmt.Errorf("local: start %s: %w", argv[0], err)))
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		delay := r.WaitDelay
		if delay == 0 {
			delay = 2 * time.Second
		}
		select {
		case <-done:
		case <-time.After(delay):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
		return nodetool.Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: -1},
			fmt.Errorf("local: %s stopped: %w", argv[0], context.Cause(ctx))
	}
	out := nodetool.Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: c.ProcessState.ExitCode()}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, &nodetool.ExitError{Argv: argv, ExitCode: out.ExitCode, Out: out}
		}
		return out, err
	}
	return out, nil
}

// capped keeps the first MaxOutput bytes written to it and drops the rest.
// The buffer is a field, not embedded: an embedded bytes.Buffer would give
// capped a ReadFrom that io.Copy prefers to Write, bypassing the cap.
type capped struct{ buf bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := MaxOutput - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

func (c *capped) Bytes() []byte { return c.buf.Bytes() }
