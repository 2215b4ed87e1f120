package proc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NATSCluster is a JetStream cluster of nats-server processes on loopback
// ports. Each server keeps its ports and store directory across Kill and
// Restart, as a rebooted machine would.
type NATSCluster struct {
	// ClientAddrs are the servers' client addresses, "127.0.0.1:port".
	ClientAddrs []string
	servers     []*Process
	monitor     []string
}

// startTimeout bounds a server's start, or its rejoining after a restart.
const startTimeout = 60 * time.Second

// StartNATSCluster starts n nats-server processes from bin, forming one
// JetStream cluster, and waits until each reports JetStream healthy.
// Servers do not advertise their addresses to clients, so a client whose
// URL is a proxy stays behind it. Every server is killed at cleanup.
func StartNATSCluster(t testing.TB, bin, dir string, n int) *NATSCluster {
	t.Helper()
	ports, err := FreePorts(3 * n)
	if err != nil {
		t.Fatalf("proc: free ports: %v", err)
	}
	c := &NATSCluster{}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	for i := range n {
		sdir := filepath.Join(dir, fmt.Sprintf("nats-%d", i))
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			t.Fatalf("proc: %v", err)
		}
		conf := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
max_payload: 8MB
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 4GB
}
cluster {
  name: quiesce-procs
  listen: 127.0.0.1:%d
  routes: [%s]
  no_advertise: true
}
`, i, ports[i], ports[2*n+i], filepath.Join(sdir, "store"), ports[n+i], strings.Join(routes, ", "))
		path := filepath.Join(sdir, "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatalf("proc: %v", err)
		}
		c.ClientAddrs = append(c.ClientAddrs, fmt.Sprintf("127.0.0.1:%d", ports[i]))
		c.monitor = append(c.monitor, fmt.Sprintf("http://127.0.0.1:%d", ports[2*n+i]))
		c.servers = append(c.servers, Start(t, Spec{Name: fmt.Sprintf("nats-%d", i),
			Argv: []string{bin, "-c", path}, Log: filepath.Join(sdir, "nats.log")}))
	}
	for i := range n {
		if err := c.WaitHealthy(t.Context(), i); err != nil {
			t.Fatalf("proc: %v\n%s", err, c.servers[i].Tail(4096))
		}
	}
	return c
}

// URL lists every server for a client that fails over between them.
func (c *NATSCluster) URL() string {
	urls := make([]string, len(c.ClientAddrs))
	for i, a := range c.ClientAddrs {
		urls[i] = "nats://" + a
	}
	return strings.Join(urls, ",")
}

// Size is the number of servers.
func (c *NATSCluster) Size() int { return len(c.servers) }

// Server is server i's process.
func (c *NATSCluster) Server(i int) *Process { return c.servers[i] }

// Kill kills server i with SIGKILL.
func (c *NATSCluster) Kill(i int) { c.servers[i].Kill() }

// Restart starts server i again (killing it first if it runs) and waits
// until it reports JetStream healthy.
func (c *NATSCluster) Restart(ctx context.Context, i int) error {
	if err := c.servers[i].Restart(); err != nil {
		return err
	}
	return c.WaitHealthy(ctx, i)
}

// WaitHealthy waits until server i answers its health check with JetStream
// enabled and current.
func (c *NATSCluster) WaitHealthy(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.monitor[i]+"/healthz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats server %d not healthy within %s", i, startTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePorts reserves n distinct loopback ports by listening on port 0, then
// releases them for the caller.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
