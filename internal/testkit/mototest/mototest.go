package mototest

import (
	"github.com/quiesce/quiesce/internal/testkit/testenv"

	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SkipMessage is the reason a test is skipped when moto_server is missing.
const SkipMessage = "moto_server not found: pip install 'moto[server]'"

// Credentials moto accepts; any value works, these are conventional.
const (
	AccessKeyID     = "testing"
	SecretAccessKey = "testing"
)

// startTimeout bounds moto's start-up (a Python import of every service).
const startTimeout = 60 * time.Second

// slots bounds the moto servers running at once in one test binary: each is
// a Python process that takes about a CPU-second to start, and parallel
// tests starting a dozen on a small CI machine only slow each other down.
var slots = make(chan struct{}, max(2, runtime.NumCPU()))

// Server is a running moto_server.
type Server struct {
	// URL is the endpoint, http://127.0.0.1:<port>.
	URL string

	cmd    *exec.Cmd
	out    *capped
	exited chan struct{}
}

// Start runs moto_server on a free loopback port, waits until it answers and
// stops it when the test ends. It skips the test when moto_server is not
// installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		testenv.Missing(t, SkipMessage)
	}
	select {
	case slots <- struct{}{}:
	case <-t.Context().Done():
		t.Fatalf("mototest: no moto_server slot: %v", context.Cause(t.Context()))
	}
	t.Cleanup(func() { <-slots })
	port, err := freePort()
	if err != nil {
		t.Fatalf("mototest: free port: %v", err)
	}
	s := &Server{
		URL:    "http://127.0.0.1:" + strconv.Itoa(port),
		out:    &capped{max: 64 << 10},
		exited: make(chan struct{}),
	}
	s.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	// Its own process group, so stopping it also stops whatever the Python
	// launcher (a pyenv shim, say) started beneath it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.cmd.WaitDelay = 5 * time.Second
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("mototest: start %s: %v", bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.stop)
	if err := s.wait(t.Context()); err != nil {
		t.Fatalf("mototest: %v\n%s", err, s.out.String())
	}
	return s
}

// wait polls moto's own API until it answers, the process exits, or the
// start-up timeout passes.
func (s *Server) wait(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/moto-api/data.json", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return errors.New("moto_server exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("moto_server did not answer within %s", startTimeout)
		case <-tick.C:
		}
	}
}

func (s *Server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// Output returns what moto_server printed (capped), for failure messages.
func (s *Server) Output() string { return s.out.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
