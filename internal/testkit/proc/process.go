package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Spec says how to run a process.
type Spec struct {
	// Name identifies the process in logs and errors.
	Name string
	Argv []string
	// Env is added to the test's environment.
	Env []string
	// Log is the file its stdout and stderr are appended to, across
	// restarts.
	Log string
	// RestartOnFailure, when positive, starts the process again that long
	// after it exits by itself with a failure, as systemd's
	// Restart=on-failure does. A process killed through Kill stays down.
	RestartOnFailure time.Duration
}

// Process is a process a test started. Kill, Stop, Cont and Restart are
// safe to call from several goroutines.
type Process struct {
	spec Spec

	// ops serializes Restart and Kill, so a supervisor's restart and the
	// test's never start two processes.
	ops     sync.Mutex
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool
	starts  int
	// wanted is whether the process should run: set by Restart, cleared by
	// Kill.
	wanted  bool
	restart *time.Timer
	// failures counts exits the supervisor restarted.
	failures int
}

// Start starts spec's process; it is killed when the test ends.
func Start(t testing.TB, spec Spec) *Process {
	t.Helper()
	p := &Process{spec: spec}
	if err := p.Restart(); err != nil {
		t.Fatalf("proc: %v", err)
	}
	t.Cleanup(p.Kill)
	return p
}

// Name is the spec's name.
func (p *Process) Name() string { return p.spec.Name }

// Pid is the running process's ID, or 0.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.isExited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Starts counts how often the process was started.
func (p *Process) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

func (p *Process) isExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Running reports whether the process runs (stopped counts as running).
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.isExited()
}

// Failures counts the process's own failed exits (each restarted when the
// spec says so).
func (p *Process) Failures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures
}

// Restart starts the process again; one still running is killed first.
func (p *Process) Restart() error {
	p.ops.Lock()
	defer p.ops.Unlock()
	p.kill()
	return p.start()
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out io.Writer = io.Discard
	var logFile *os.File
	if p.spec.Log != "" {
		f, err := os.OpenFile(p.spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("%s: log: %w", p.spec.Name, err)
		}
		fmt.Fprintf(f, "==== %s start %d at %s\n", p.spec.Name, p.starts+1, time.Now().Format(time.RFC3339Nano))
		out, logFile = f, f
	}
	cmd := exec.Command(p.spec.Argv[0], p.spec.Argv[1:]...)
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Dies with the test binary, should that be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			_ = logFile.Close()
		}
		return fmt.Errorf("%s: start: %w", p.spec.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.stopped, p.wanted = cmd, exited, false, true
	p.starts++
	gen := p.starts
	go func() {
		err := cmd.Wait()
		if logFile != nil {
			_ = logFile.Close()
		}
		close(exited)
		if err != nil && p.spec.RestartOnFailure > 0 {
			p.supervise(gen)
		}
	}()
	return nil
}

// supervise restarts the process after a failed exit of start gen, unless it
// was killed or started again meanwhile.
func (p *Process) supervise(gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.wanted || p.starts != gen {
		return
	}
	p.restart = time.AfterFunc(p.spec.RestartOnFailure, func() {
		p.ops.Lock()
		defer p.ops.Unlock()
		p.mu.Lock()
		again := p.wanted && p.starts == gen
		if again {
			p.failures++
		}
		p.mu.Unlock()
		if again {
			_ = p.start()
		}
	})
}

// Kill sends SIGKILL and waits for the process to exit. A process not
// running is left alone; a supervised one is not restarted.
func (p *Process) Kill() {
	p.ops.Lock()
	defer p.ops.Unlock()
	p.kill()
}

func (p *Process) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.stopped, p.wanted = false, false
	if p.restart != nil {
		p.restart.Stop()
		p.restart = nil
	}
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Terminate sends SIGTERM (continuing a stopped process first) and waits up
// to timeout for the exit, then kills it. It returns the exit error, if any.
func (p *Process) Terminate(timeout time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.wanted = false
	p.mu.Unlock()
	if cmd == nil || p.waitExited(exited, 0) {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if !p.waitExited(exited, timeout) {
		p.Kill()
		return fmt.Errorf("%s: no exit within %s of SIGTERM; killed", p.spec.Name, timeout)
	}
	if st := cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("%s: %s", p.spec.Name, st)
	}
	return nil
}

func (p *Process) waitExited(exited chan struct{}, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-exited:
			return true
		default:
			return false
		}
	}
	select {
	case <-exited:
		return true
	case <-time.After(d):
		return false
	}
}

// ErrNotRunning is returned by Stop and Cont when there is no process.
var ErrNotRunning = errors.New("process is not running")

// Stop sends SIGSTOP: the process freezes, its connections stay open, and
// nothing it holds is released.
func (p *Process) Stop() error { return p.signal(syscall.SIGSTOP, true) }

// Cont sends SIGCONT to a stopped process.
func (p *Process) Cont() error { return p.signal(syscall.SIGCONT, false) }

// Stopped reports whether the last signal was SIGSTOP.
func (p *Process) Stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

func (p *Process) signal(sig syscall.Signal, stopped bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.isExited() {
		return fmt.Errorf("%s: %w", p.spec.Name, ErrNotRunning)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %s: %w", p.spec.Name, sig, err)
	}
	p.stopped = stopped
	return nil
}

// Tail returns the last n bytes of the process's log.
func (p *Process) Tail(n int64) string {
	return Tail(p.spec.Log, n)
}

// Tail returns the last n bytes of a file, or a note saying why not.
func Tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(log: %v)", err)
	}
	off := max(0, st.Size()-n)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(log: %v)", err)
	}
	return string(buf)
}
