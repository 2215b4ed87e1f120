// Package local runs node commands on this host: the agent mode (a worker on
// the Cassandra node itself) and the embedded demo's simulated nodes.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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

var (
	_ nodetool.Runner      = (*Runner)(nil)
	_ nodetool.ArmedRunner = (*Runner)(nil)
)

// heldExit is the exit status of a held command withdrawn before it started:
// its input ended before the line that starts it.
const heldExit = 125

// Run starts cmd.Argv in its own process group and waits for it. A cancelled
// ctx signals the whole group, so nothing the command started outlives it.
func (r *Runner) Run(ctx context.Context, _ messages.Node, cmd nodetool.Command) (nodetool.Output, error) {
	return r.run(ctx, cmd, nil, nil)
}

// RunArmed runs cmd as Run does, in two steps: a shell is started now that
// holds the command until one line on its input, ready is called, and the
// line is written when fire closes, so that starting the command costs one
// write, no process start. Ending ctx before fire closes the shell's input:
// the command never runs.
func (r *Runner) RunArmed(ctx context.Context, _ messages.Node, cmd nodetool.Command, ready func(), fire <-chan struct{}) (nodetool.Output, error) {
	if len(cmd.Stdin) > 0 {
		return nodetool.Output{}, errclass.Permanent(errclass.NotRun(errors.New("local: a held command's input is the line that starts it")))
	}
	return r.run(ctx, cmd, ready, fire)
}

func (r *Runner) run(ctx context.Context, cmd nodetool.Command, ready func(), fire <-chan struct{}) (nodetool.Output, error) {
	if len(cmd.Argv) == 0 {
		return nodetool.Output{}, errclass.Permanent(errclass.NotRun(errors.New("local: empty command")))
	}
	argv := cmd.Argv
	if cmd.Sudo {
		argv = append([]string{"sudo", "-n", "--"}, argv...)
	}
	run := argv
	if fire != nil {
		// The held shell would only find out at the fire time that the
		// program cannot be started: find out now, before anything is done.
		if _, err := exec.LookPath(argv[0]); err != nil {
			return nodetool.Output{}, errclass.Permanent(errclass.NotRun(fmt.Errorf("local: start %s: %w", argv[0], err)))
		}
		run = append([]string{"sh", "-c", "IFS= read -r _ || exit " + fmt.Sprint(heldExit) + `; exec "$@"`, "quiesce-run"}, argv...)
	}
	c := exec.Command(run[0], run[1:]...)
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
	var hold io.WriteCloser
	if fire != nil {
		var err error
		if hold, err = c.StdinPipe(); err != nil {
			return nodetool.Output{}, errclass.NotRun(fmt.Errorf("local: %s: %w", argv[0], err))
		}
	}
	if err := c.Start(); err != nil {
		// Nothing ran: the node is as it was.
		return nodetool.Output{}, errclass.Permanent(errclass.NotRun(fmt.Errorf("local: start %s: %w", argv[0], err)))
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	if fire != nil {
		ready()
		select {
		case <-fire:
			_, werr := hold.Write([]byte("\n"))
			_ = hold.Close()
			if werr != nil {
				<-done
				return nodetool.Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: -1},
					fmt.Errorf("local: starting %s: %w", argv[0], werr)
			}
		case err := <-done:
			if err == nil {
				err = errors.New("exited")
			}
			return nodetool.Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: -1},
				fmt.Errorf("local: %s ended before it was started: %w", argv[0], err)
		case <-ctx.Done():
			// The held shell reads the end of its input and exits.
			_ = hold.Close()
			r.reap(c, done)
			return nodetool.Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: -1},
				fmt.Errorf("local: %s withdrawn before it started: %w", argv[0], context.Cause(ctx))
		}
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		r.reap(c, done)
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

// reap waits for the command to exit, and after the wait delay kills its
// process group.
func (r *Runner) reap(c *exec.Cmd, done <-chan error) {
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
