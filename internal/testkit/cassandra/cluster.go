package cassandra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// MaxNodes bounds a cluster: 6 nodes take about 6 GiB.
const MaxNodes = 6

// Options configure a cluster. The zero value is one node on 127.0.0.1.
type Options struct {
	// Nodes is the number of nodes, 1 to MaxNodes; default 1.
	Nodes int
	// BaseAddr is the first node's address; node i listens on BaseAddr+i.
	// Default 127.0.0.1; a second cluster of a test can use 127.0.0.4.
	// Addresses must be in 127.0.0.0/8 (Linux routes it all to lo).
	BaseAddr string
	// ClusterName is cluster_name; default quiesce-test.
	ClusterName string
	// NumTokens is num_tokens; default 16.
	NumTokens int
	// HeapMB is each node's -Xms and -Xmx; default 512.
	HeapMB int
	// StoragePort and NativePort are shared by every node (they differ by
	// address); default 7000 and 9042.
	StoragePort, NativePort int
	// Topology gives node i its DC, rack and overrides; nodes beyond it
	// are dc1/rack1.
	Topology []NodeSpec
	// YAML overrides top-level entries of every node's cassandra.yaml
	// (key → YAML text).
	YAML map[string]string
	// JVMArgs are added to every node's JVM flags, one argv word each.
	JVMArgs []string
	// StartTimeout bounds one node's start, JVM launch to CQL; default 3 min
	// (a loaded 2-core machine needs far more than the usual 8 s).
	StartTimeout time.Duration
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL;
	// default 30 s.
	StopGrace time.Duration
	// Parallel bounds how many nodes start at once after the seed; default
	// what MemAvailable holds at about HeapMB+512 MiB a node, at least 1.
	Parallel int
	// Dir holds node1, node2, ...; default a t.TempDir().
	Dir string
	// Resolve configures the classpath resolution.
	Resolve ResolveOptions
	// Logf receives the harness's progress lines; default t.Logf.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() (Options, error) {
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return o, fmt.Errorf("%d nodes: 1 to %d", o.Nodes, MaxNodes)
	}
	if o.BaseAddr == "" {
		o.BaseAddr = "127.0.0.1"
	}
	if o.ClusterName == "" {
		o.ClusterName = "quiesce-test"
	}
	if strings.ContainsAny(o.ClusterName, "\n\"'\\:#") {
		return o, fmt.Errorf("cluster name %q: no quotes, colons, '#' or newlines", o.ClusterName)
	}
	if o.NumTokens == 0 {
		o.NumTokens = 16
	}
	if o.HeapMB == 0 {
		o.HeapMB = 512
	}
	if o.StoragePort == 0 {
		o.StoragePort = 7000
	}
	if o.NativePort == 0 {
		o.NativePort = 9042
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 3 * time.Minute
	}
	if o.StopGrace == 0 {
		o.StopGrace = 30 * time.Second
	}
	if len(o.Topology) > o.Nodes {
		return o, fmt.Errorf("topology of %d nodes for a cluster of %d", len(o.Topology), o.Nodes)
	}
	return o, nil
}

// Cluster is a set of Cassandra nodes started by one test.
type Cluster struct {
	opts         Options
	java         string
	cp           Classpath
	dir          string
	toolsLogback string
	nodes        []*Node
	logf         func(format string, args ...any)
}

// Start brings up a cluster as New and Cluster.Start do, and fails t when it
// does not come up. Every node is killed when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := New(t, opts)
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("cassandra: %v", err)
	}
	return c
}

// New prepares a cluster without starting it: it finds Java 17 and the
// classpath (skipping t, or failing it under QUIESCE_REQUIRE_INTEGRATION,
// when Java or Maven is missing), leases the nodes' addresses (waiting while
// another test process holds one), picks a JMX port per node and writes each
// node's directory. At the end of the test every node still running is
// killed (SIGKILL: the directories are thrown away with the test's) and the
// addresses are released.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	o, err := opts.withDefaults()
	if err != nil {
		t.Fatalf("cassandra: options: %v", err)
	}
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	if o.Resolve.Logf == nil {
		o.Resolve.Logf = o.Logf
	}
	ctx := t.Context()
	java, cp := Prerequisites(t, o.Resolve)
	addrs, err := nodeAddrs(o.BaseAddr, o.Nodes)
	if err != nil {
		t.Fatalf("cassandra: %v", err)
	}
	if o.Dir == "" {
		// Before the clean-up below, so that it runs after the nodes are gone.
		o.Dir = t.TempDir()
	}
	c := &Cluster{opts: o, java: java, cp: cp, dir: o.Dir, logf: o.Logf}
	var leases []func()
	// One clean-up, so that no address is released before its node is gone.
	t.Cleanup(func() {
		c.killAll()
		for _, unlock := range leases {
			unlock()
		}
	})
	for _, a := range addrs {
		unlock, err := lockFile(ctx, filepath.Join(leaseDir(), a+".lock"), func() {
			o.Logf("cassandra: waiting for %s: another test process runs a node there", a)
		})
		if err != nil {
			t.Fatalf("cassandra: lease %s: %v", a, err)
		}
		leases = append(leases, unlock)
	}

	c.toolsLogback = filepath.Join(c.dir, "logback-tools.xml")
	if err := os.WriteFile(c.toolsLogback, logbackToolsXML, 0o644); err != nil {
		t.Fatalf("cassandra: %v", err)
	}
	var taken []int
	for i, a := range addrs {
		port, err := jmxPort(a, taken)
		if err != nil {
			t.Fatalf("cassandra: node %s: %v", a, err)
		}
		taken = append(taken, port)
		n := &Node{c: c, index: i, addr: a, jmxPort: port, dir: filepath.Join(c.dir, "node"+strconv.Itoa(i+1))}
		if i < len(o.Topology) {
			n.spec = o.Topology[i]
		}
		n.spec = n.spec.withDefaults()
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := n.writeConfig(); err != nil {
			t.Fatalf("cassandra: node %s: %v", n.addr, err)
		}
		if err := n.writeNodetoolScript(); err != nil {
			t.Fatalf("cassandra: node %s: %v", n.addr, err)
		}
	}
	return c
}

// jmxPort picks a node's JMX port: 7199 (Cassandra's default) for x.x.x.1,
// 7299 for .2 and so on, or the next free one after it. All are below the
// ephemeral port range, so no outgoing connection takes a node's port while
// the node is down.
func jmxPort(addr string, taken []int) (int, error) {
	ip := net.ParseIP(addr).To4()
	base := 7199 + 100*(int(ip[3])-1)
	if ip[3] == 0 {
		base = 7099
	}
	for p := base; p < base+50; p++ {
		if slices.Contains(taken, p) {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free JMX port in 127.0.0.1:%d-%d", base, base+49)
}

// Nodes are the cluster's nodes, seed first.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns node i (from 0).
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Name is the cluster_name.
func (c *Cluster) Name() string { return c.opts.ClusterName }

// Dir holds the nodes' directories.
func (c *Cluster) Dir() string { return c.dir }

// Java is the java executable the nodes and nodetool run on.
func (c *Cluster) Java() string { return c.java }

// Classpath is cassandra-all's classpath.
func (c *Cluster) Classpath() Classpath { return c.cp }

// Start starts every node that does not run: the seed (node 0) first when
// it is down, then the others, as many at once as Options.Parallel allows;
// and waits until every running node sees every running node UN.
func (c *Cluster) Start(ctx context.Context) error {
	began := time.Now()
	var rest []*Node
	for _, n := range c.nodes {
		if !n.Running() {
			rest = append(rest, n)
		}
	}
	if len(rest) > 0 && rest[0] == c.nodes[0] {
		// The others would find no seed to gossip with.
		if err := rest[0].Start(ctx); err != nil {
			return err
		}
		rest = rest[1:]
	}
	parallel := min(c.parallel(), max(1, len(rest)))
	if len(rest) > 1 {
		c.logf("cassandra: starting %d nodes, %d at a time", len(rest), parallel)
	}
	sem := make(chan struct{}, parallel)
	errs := make([]error, len(rest))
	var wg sync.WaitGroup
	for i, n := range rest {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("node %s: %w", n.addr, context.Cause(ctx))
				return
			}
			defer func() { <-sem }()
			errs[i] = n.Start(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.WaitUN(ctx); err != nil {
		return err
	}
	c.logf("cassandra: %d nodes UN after %s", len(c.running()), time.Since(began).Round(100*time.Millisecond))
	return nil
}

// parallel is how many nodes may start at once.
func (c *Cluster) parallel() int {
	if c.opts.Parallel > 0 {
		return c.opts.Parallel
	}
	perNode := int64(c.opts.HeapMB+512) << 20
	reserve := int64(1) << 30
	return int(max(1, (memAvailable()-reserve)/perNode))
}

func (c *Cluster) running() []*Node {
	var r []*Node
	for _, n := range c.nodes {
		if n.Running() {
			r = append(r, n)
		}
	}
	return r
}

// WaitUN waits until `nodetool status` on every running node shows every
// running node UN (Up, Normal). Stopped nodes may show as anything. It gives
// up after the cluster's StartTimeout, or when ctx ends, with the last views.
func (c *Cluster) WaitUN(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	for {
		nodes := c.running()
		if len(nodes) == 0 {
			return errors.New("no node is running")
		}
		views := make([]string, len(nodes))
		ok := make([]bool, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Go(func() {
				ring, err := n.Status(ctx)
				if err != nil {
					views[i] = err.Error()
					return
				}
				ok[i] = true
				for _, m := range nodes {
					if ring[m.addr] != "UN" {
						ok[i] = false
					}
				}
				views[i] = fmt.Sprintf("%s sees %v", n.addr, ring)
			})
		}
		wg.Wait()
		if !slices.Contains(ok, false) {
			return nil
		}
		for _, n := range nodes {
			if !n.Running() {
				return fmt.Errorf("node %s exited while waiting for the ring\n%s", n.addr, n.LogTail(25))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes not all UN: %w\n%s", context.Cause(ctx), strings.Join(views, "\n"))
		case <-time.After(time.Second):
		}
	}
}

// killAll kills every node still running.
func (c *Cluster) killAll() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(n.Kill)
	}
	wg.Wait()
}

// Hosts are the addresses of the running nodes.
func (c *Cluster) Hosts() []string {
	var h []string
	for _, n := range c.running() {
		h = append(h, n.addr)
	}
	return h
}

// SessionConfig is a gocql configuration for the cluster's running nodes,
// with timeouts for a slow machine and quick reconnection to restarted
// nodes; consistency is gocql's default (QUORUM), set it per query.
func (c *Cluster) SessionConfig() *gocql.ClusterConfig {
	cfg := gocql.NewCluster(c.Hosts()...)
	cfg.Port = c.opts.NativePort
	cfg.Timeout = 30 * time.Second
	cfg.ConnectTimeout = 30 * time.Second
	cfg.ReconnectInterval = time.Second
	cfg.MaxWaitSchemaAgreement = 2 * time.Minute
	return cfg
}

// Session opens a CQL session on the cluster's running nodes and closes it
// when the test ends.
func (c *Cluster) Session(t testing.TB) *gocql.Session {
	t.Helper()
	s, err := c.SessionConfig().CreateSession()
	if err != nil {
		t.Fatalf("cassandra: CQL session on %v: %v", c.Hosts(), err)
	}
	t.Cleanup(s.Close)
	return s
}
