package promtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
)

// startTimeout bounds a server's start-up on a loaded machine.
const startTimeout = 60 * time.Second

// lookPath finds the first of names on PATH, or skips t (fails it when
// testenv.RequireIntegrationEnv is set) with msg.
func lookPath(t testing.TB, msg string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	testenv.Missing(t, msg)
	return ""
}

// process is one server started for a test, in its own process group, its
// output in a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	once    sync.Once
}

// start runs bin with the args addr gives it (a fresh loopback address each
// try) until the server answers readyPath with 200, retrying on another
// port when it exits during start-up (another process took the port).
func start(t testing.TB, name, bin, dir string, args func(addr string) []string, readyPath string) (*process, string) {
	t.Helper()
	var lastErr error
	for try := range 3 {
		addr := freeAddr(t)
		p := &process{name: name, logPath: filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, try)), exited: make(chan struct{})}
		logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatalf("promtest: %v", err)
		}
		p.cmd = exec.Command(bin, args(addr)...)
		p.cmd.Dir = dir
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		err = p.cmd.Start()
		logf.Close()
		if err != nil {
			t.Fatalf("promtest: start %s: %v", bin, err)
		}
		go func() {
			_ = p.cmd.Wait()
			close(p.exited)
		}()
		if lastErr = p.waitReady(t.Context(), "http://"+addr+readyPath); lastErr == nil {
			t.Cleanup(p.stop)
			return p, addr
		}
		p.stop()
	}
	t.Fatalf("promtest: %s did not start: %v", name, lastErr)
	return nil, ""
}

func (p *process) waitReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during start-up:\n%s", p.name, p.Log())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s within %s:\n%s", p.name, url, startTimeout, p.Log())
		case <-tick.C:
		}
	}
}

// stop ends the server: SIGTERM to its group, SIGKILL after 10 s.
func (p *process) stop() {
	p.once.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	})
}

// Log returns the last 32 KiB the server logged, for failure messages.
func (p *process) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 32<<10 {
		b = b[len(b)-32<<10:]
	}
	return string(b)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("promtest: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
