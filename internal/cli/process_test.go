package cli

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The quiesce process runs every role, reports ready, backs up a cluster,
// and on SIGTERM drains and exits 0.
func TestProcessServesAndStopsOnSIGTERM(t *testing.T) {
	env := testenv.New(t, topology.Options{})
	_, path := writeDemoConfig(t, demoOptions{nodes: 2, volumes: 1, keep: 2})
	self, err := os.Executable()
	require.NoError(t, err)

	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	var stderr lockedBuffer
	cmd := exec.Command(self, "quiesce", "all", "--config", path, "--nats", env.URL, "--metrics-addr", addr,
		"--log-format", "json", "--soft-stop", "5s")
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "the process becomes ready: %s", stderr.String())

	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "process-1")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	j, err := env.Job(t.Context(), messages.JobIDFor("demo", "process-1"))
	require.NoError(t, err)
	require.Equal(t, messages.PhaseSucceeded, j.Phase)

	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	require.Contains(t, body.String(), `quiesce_`)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit 0 after SIGTERM: %s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit after SIGTERM: %s", stderr.String())
	}
	require.Contains(t, stderr.String(), `"message":"stopped"`)
}

// lockedBuffer is a bytes.Buffer safe to read while a process writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A role that cannot serve its metrics (the address is taken) stops and
// exits with a failure, so a supervisor starts it again, rather than exit
// 0 as if asked to stop.
func TestProcessExitsFailedWhenItCannotServeMetrics(t *testing.T) {
	env := testenv.New(t, topology.Options{})
	_, path := writeDemoConfig(t, demoOptions{nodes: 1, volumes: 1, keep: 1})
	self, err := os.Executable()
	require.NoError(t, err)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	var stderr lockedBuffer
	cmd := exec.Command(self, "quiesce", "worker", "--config", path, "--nats", env.URL,
		"--metrics-addr", taken.Addr().String(), "--log-format", "json", "--soft-stop", "1s")
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "stderr: %s", stderr.String())
		require.Equal(t, ExitError, ee.ExitCode())
		require.Contains(t, stderr.String(), "metrics server")
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("still running with its metrics address taken: %s", stderr.String())
	}
}
