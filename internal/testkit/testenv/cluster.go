package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// Cluster is a JetStream cluster of embedded servers on loopback ports.
// Each server keeps its ports and store directory across Stop and Restart,
// so a restarted server rejoins with its data, as a rebooted pod would.
type Cluster struct {
	t    TB
	mu   sync.Mutex
	opts []*server.Options
	srvs []*server.Server
	// URL lists every server's client URL, for clients that fail over.
	URL string
}

// freePorts reserves n distinct loopback ports by listening on port 0, then
// releases them for the servers. Routes need ports fixed in advance: every
// server's route list names the others before any has started.
func freePorts(n int) ([]int, error) {
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

// StartCluster starts n servers forming one JetStream cluster and waits for
// a meta leader. Every server is shut down at cleanup.
func StartCluster(t TB, n int) *Cluster {
	t.Helper()
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatalf("free ports: %v", err)
	}
	c := &Cluster{t: t}
	var routes []string
	var urls []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	c.URL = strings.Join(urls, ",")
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("q%d", i),
			Host:       "127.0.0.1", Port: ports[i],
			JetStream: true, StoreDir: t.TempDir(),
			NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
			Cluster: server.ClusterOpts{Name: "quiesce-test", Host: "127.0.0.1", Port: ports[n+i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.opts = append(c.opts, o)
		c.srvs = append(c.srvs, nil)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, s := range c.srvs {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	for i := range n {
		c.Restart(i)
	}
	if err := c.WaitMetaLeader(30 * time.Second); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return c
}

// Size is the number of servers, running or not.
func (c *Cluster) Size() int { return len(c.opts) }

// Server returns server i, or nil while it is stopped.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srvs[i]
}

// Running reports whether server i is up.
func (c *Cluster) Running(i int) bool { return c.Server(i) != nil }

// Stop shuts server i down abruptly, as a killed process would go: clients
// connected to it fail over to the others.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.srvs[i]
	c.srvs[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts server i again with its ports and store directory. It is a
// no-op while the server runs.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srvs[i] != nil {
		return
	}
	s, err := server.NewServer(c.opts[i].Clone())
	if err != nil {
		c.t.Fatalf("server %d: %v", i, err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		c.t.Fatalf("server %d not ready", i)
	}
	c.srvs[i] = s
}

// WaitMetaLeader waits until a running server knows the JetStream meta
// leader and every running server is current with it.
func (c *Cluster) WaitMetaLeader(timeout time.Duration) error {
	return Eventually(timeout, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		leader := false
		for _, s := range c.srvs {
			if s == nil {
				continue
			}
			if !s.JetStreamIsCurrent() {
				return false
			}
			if s.JetStreamIsLeader() {
				leader = true
			}
		}
		return leader
	})
}

// WaitStreamLeaders waits until every stream of the topology has a leader
// and, when all servers run, every replica is current.
func (c *Cluster) WaitStreamLeaders(ctx context.Context, js jetstream.JetStream) error {
	streams := []string{messages.StreamJobs, messages.StreamTasks, messages.StreamEvents,
		"KV_" + messages.BucketJobs, "KV_" + messages.BucketCatalog, "OBJ_" + messages.BucketPlans}
	all := true
	for i := range c.Size() {
		all = all && c.Running(i)
	}
	for {
		ready := true
		for _, name := range streams {
			if !streamReady(ctx, js, name, all) {
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream leaders: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func streamReady(ctx context.Context, js jetstream.JetStream, name string, allReplicas bool) bool {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ictx, name)
	if err != nil {
		return false
	}
	info, err := s.Info(ictx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		return false
	}
	if allReplicas {
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
	}
	return true
}

// NewEnv creates the topology on the cluster with o (Replicas defaults to
// the cluster size) and returns an Env whose connections fail over between
// servers.
func (c *Cluster) NewEnv(t TB, o topology.Options) *Env {
	t.Helper()
	if o.Replicas == 0 {
		o.Replicas = c.Size()
	}
	e := &Env{Server: c.Server(0), URL: c.URL, Opts: o}
	e.NC, e.JS = e.Connect(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var h *topology.Handles
	var err error
	// Stream creation right after the meta leader is elected can still
	// race the cluster settling; retry until the deadline.
	for {
		h, err = topology.Ensure(ctx, e.JS, o)
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	e.H = h
	if err := c.WaitStreamLeaders(ctx, e.JS); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("cluster: %v", err)
	}
	return e
}
