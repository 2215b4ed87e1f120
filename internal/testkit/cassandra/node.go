package cassandra

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NodeSpec is what differs between the nodes of a cluster.
type NodeSpec struct {
	// DC and Rack go to the node's cassandra-rackdc.properties; default dc1
	// and rack1.
	DC, Rack string
	// YAML overrides top-level entries of this node's cassandra.yaml, on top
	// of Options.YAML (initial_token, say). Values are YAML text.
	YAML map[string]string
	// JVMArgs are added to the node's JVM flags, after Options.JVMArgs (one
	// argv word each: "-Dcassandra.load_ring_state=false").
	JVMArgs []string
}

// Node is one Cassandra node of a Cluster: a JVM (while running) and a
// directory that outlives it.
type Node struct {
	c       *Cluster
	index   int
	addr    string
	jmxPort int
	dir     string

	mu        sync.Mutex
	spec      NodeSpec
	proc      *process
	lastStart time.Duration
	// logOffsets are the sizes of system.log and console.log when the JVM
	// was last launched: where that run's lines begin.
	logOffsets [2]int64
}

// process is one run of a node's JVM.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the JVM has exited and been reaped
	err  error         // cmd.Wait's result, set before done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Index is the node's position in its cluster, from 0.
func (n *Node) Index() int { return n.index }

// Addr is the node's address: its listen, RPC and CQL address.
func (n *Node) Addr() string { return n.addr }

// CQLAddr is host:port of the node's native transport.
func (n *Node) CQLAddr() string {
	return net.JoinHostPort(n.addr, strconv.Itoa(n.c.opts.NativePort))
}

// JMXPort is the port nodetool reaches the node on, at 127.0.0.1 whatever
// the node's own address (JMX listens on loopback only).
func (n *Node) JMXPort() int { return n.jmxPort }

// Spec returns the node's DC, rack and overrides.
func (n *Node) Spec() NodeSpec {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.spec
}

// Dir is the node's own directory: conf, data, commitlog, hints,
// saved_caches, cdc_raw, logs and bin below it.
func (n *Node) Dir() string { return n.dir }

// DataDir is the node's only data_file_directories entry:
// <keyspace>/<table>-<id>/ below it, and snapshots/<tag>/ below those.
func (n *Node) DataDir() string { return filepath.Join(n.dir, "data") }

// CommitLogDir is the node's commitlog_directory.
func (n *Node) CommitLogDir() string { return filepath.Join(n.dir, "commitlog") }

// HintsDir is the node's hints_directory.
func (n *Node) HintsDir() string { return filepath.Join(n.dir, "hints") }

// SavedCachesDir is the node's saved_caches_directory.
func (n *Node) SavedCachesDir() string { return filepath.Join(n.dir, "saved_caches") }

// CDCRawDir is the node's cdc_raw_directory.
func (n *Node) CDCRawDir() string { return filepath.Join(n.dir, "cdc_raw") }

// LogDir holds system.log (Cassandra's log) and console.log (the JVM's
// stdout and stderr: warnings, errors and what happens before logging).
func (n *Node) LogDir() string { return filepath.Join(n.dir, "logs") }

// ConfDir holds the node's cassandra.yaml, cassandra-rackdc.properties and
// logback.xml, rewritten from its spec at every Start.
func (n *Node) ConfDir() string { return filepath.Join(n.dir, "conf") }

// LogTail summarises what the node logged since its JVM was last launched:
// the ERROR lines and the last lines of system.log and console.log, Java
// stack frames left out.
func (n *Node) LogTail(lines int) string {
	n.mu.Lock()
	sysOff, conOff := n.logOffsets[0], n.logOffsets[1]
	n.mu.Unlock()
	sys, con := filepath.Join(n.LogDir(), "system.log"), filepath.Join(n.LogDir(), "console.log")
	sysText := logExcerpt(sys, sysOff, lines)
	out := fmt.Sprintf("--- %s:\n%s", sys, sysText)
	// The console repeats system.log's warnings and errors; it is worth
	// quoting for what only the JVM says there (a refused flag, an
	// OutOfMemoryError).
	seen := map[string]bool{}
	for l := range strings.SplitSeq(sysText, "\n") {
		seen[l] = true
	}
	var own []string
	for l := range strings.SplitSeq(logExcerpt(con, conOff, 10), "\n") {
		if !seen[l] && l != "errors:" && l != "last lines:" {
			own = append(own, l)
		}
	}
	if len(own) > 0 {
		out += fmt.Sprintf("\n--- %s:\n%s", con, strings.Join(own, "\n"))
	}
	return out
}

// Running reports whether the node's JVM runs (it may not answer yet).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && !n.proc.exited()
}

// PID is the node's JVM process ID (also its process group), or 0 when it
// does not run.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.proc.exited() {
		return 0
	}
	return n.proc.cmd.Process.Pid
}

// RSS is the resident memory of the node's JVM in bytes.
func (n *Node) RSS() (int64, error) {
	pid := n.PID()
	if pid == 0 {
		return 0, fmt.Errorf("node %s is not running", n.addr)
	}
	return rss(pid)
}

// StartupTime is how long the node's last successful Start took, from
// launching the JVM to CQL answering.
func (n *Node) StartupTime() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lastStart
}

// Reconfigure replaces the node's spec, for its next Start. The node must
// be stopped.
func (n *Node) Reconfigure(spec NodeSpec) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("node %s: reconfigure while running", n.addr)
	}
	n.spec = spec.withDefaults()
	return nil
}

func (s NodeSpec) withDefaults() NodeSpec {
	if s.DC == "" {
		s.DC = "dc1"
	}
	if s.Rack == "" {
		s.Rack = "rack1"
	}
	return s
}

// writeConfig (re)writes the node's conf directory and creates its
// directories.
func (n *Node) writeConfig() error {
	o := n.c.opts
	yaml := make(map[string]string, len(o.YAML)+len(n.spec.YAML))
	for k, v := range o.YAML {
		yaml[k] = v
	}
	for k, v := range n.spec.YAML {
		yaml[k] = v
	}
	y, err := renderYAML(yamlParams{
		ClusterName: o.ClusterName,
		NumTokens:   o.NumTokens,
		Dir:         n.dir,
		Seeds:       net.JoinHostPort(n.c.nodes[0].addr, strconv.Itoa(o.StoragePort)),
		Addr:        n.addr,
		StoragePort: o.StoragePort,
		NativePort:  o.NativePort,
	}, yaml)
	if err != nil {
		return fmt.Errorf("cassandra.yaml: %w", err)
	}
	for _, d := range []string{n.ConfDir(), n.DataDir(), n.CommitLogDir(), n.HintsDir(), n.SavedCachesDir(), n.CDCRawDir(), n.LogDir(), filepath.Join(n.dir, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	files := map[string][]byte{
		"cassandra.yaml":              y,
		"cassandra-rackdc.properties": renderRackDC(n.spec.DC, n.spec.Rack),
		"logback.xml":                 logbackXML,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(n.ConfDir(), name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// serverArgv is the JVM command line of the node (without the java binary).
func (n *Node) serverArgv() []string {
	o := n.c.opts
	conf := n.ConfDir()
	heap := strconv.Itoa(o.HeapMB) + "m"
	args := []string{
		"-Xms" + heap, "-Xmx" + heap, "-Xss256k",
		"-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxGCPauseMillis=300",
		// No hsperfdata mmap: it shows up in RSS and is of no use here.
		"-XX:+PerfDisableSharedMem",
		"-Djava.net.preferIPv4Stack=true",
		"-Dio.netty.tryReflectionSetAccessible=true",
		"-javaagent:" + n.c.cp.Jar("jamm-"),
	}
	args = append(args, jvmWords(serverOptions)...)
	args = append(args,
		"-Dcassandra.config=file://"+filepath.Join(conf, "cassandra.yaml"),
		"-Dcassandra-rackdc.properties=file://"+filepath.Join(conf, "cassandra-rackdc.properties"),
		"-Dlogback.configurationFile=file://"+filepath.Join(conf, "logback.xml"),
		"-Dcassandra.logdir="+n.LogDir(),
		"-Dcassandra.storagedir="+n.dir,
		"-Dcassandra-foreground=yes",
		// JMX on 127.0.0.1 only, one port per node.
		"-Dcassandra.jmx.local.port="+strconv.Itoa(n.jmxPort),
		// A test cluster has no gossip worth waiting for. The ring delay
		// bounds a joining node's first gossip with its seed (twice the
		// delay), which ends as soon as the seed answers: 1 s, as on a
		// quiet machine, failed start-ups under load ("Unable to gossip
		// with any peers") when the seed took over 2 s to answer.
		"-Dcassandra.skip_wait_for_gossip_to_settle=0",
		"-Dcassandra.ring_delay_ms=10000",
	)
	args = append(args, o.JVMArgs...)
	args = append(args, n.spec.JVMArgs...)
	return append(args, "-cp", conf+string(os.PathListSeparator)+n.c.cp.String(), "org.apache.cassandra.service.CassandraDaemon")
}

// Start starts the node's JVM on its directories (again, after Stop or
// Kill) and waits until CQL answers on its address. It does not wait for the
// rest of the ring to see the node: Cluster.WaitUN does. On failure the
// error quotes the end of the node's logs, and the JVM, if still running, is
// killed.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.proc != nil && !n.proc.exited() {
		n.mu.Unlock()
		return fmt.Errorf("node %s: already running (pid %d)", n.addr, n.proc.cmd.Process.Pid)
	}
	p, err := n.launch()
	spec := n.spec
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("node %s: %w", n.addr, err)
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, n.c.opts.StartTimeout)
	defer cancel()
	if err := n.waitCQL(ctx, p); err != nil {
		n.killProcess(p)
		return fmt.Errorf("node %s: %w after %s\n%s", n.addr, err, time.Since(began).Round(100*time.Millisecond), n.LogTail(25))
	}
	took := time.Since(began)
	n.mu.Lock()
	n.lastStart = took
	n.mu.Unlock()
	n.c.logf("cassandra: node %s (%s/%s, pid %d, JMX %d) answers CQL after %s",
		n.addr, spec.DC, spec.Rack, p.cmd.Process.Pid, n.jmxPort, took.Round(100*time.Millisecond))
	return nil
}

// launch starts the JVM. The caller holds n.mu.
func (n *Node) launch() (*process, error) {
	if err := n.writeConfig(); err != nil {
		return nil, err
	}
	o := n.c.opts
	for _, hp := range []string{n.CQLAddr(), net.JoinHostPort(n.addr, strconv.Itoa(o.StoragePort)), net.JoinHostPort("127.0.0.1", strconv.Itoa(n.jmxPort))} {
		if err := portFree(hp); err != nil {
			return nil, err
		}
	}
	n.logOffsets = [2]int64{fileSize(filepath.Join(n.LogDir(), "system.log")), fileSize(filepath.Join(n.LogDir(), "console.log"))}
	console, err := os.OpenFile(filepath.Join(n.LogDir(), "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer console.Close() // the child has its own descriptor
	cmd := exec.Command(n.c.java, n.serverArgv()...)
	cmd.Dir = n.dir
	cmd.Stdout = console
	cmd.Stderr = console
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, signalled as a whole by Stop and Kill.
		Setpgid: true,
		// A safety net for a test binary that dies without its clean-up
		// (a panic, a timeout): the kernel kills the JVM with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", n.c.java, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.proc = p
	return p, nil
}

// portFree fails when something already listens on hostport: another
// Cassandra, most likely, not started by this harness.
func portFree(hostport string) error {
	c, err := net.DialTimeout("tcp", hostport, time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	return fmt.Errorf("%s is already in use (a Cassandra not started by this test? pick another Options.BaseAddr)", hostport)
}

func (n *Node) waitCQL(ctx context.Context, p *process) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", n.CQLAddr())
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("JVM exited during start-up (%v)", p.err)
		case <-ctx.Done():
			return fmt.Errorf("CQL not answering on %s: %w", n.CQLAddr(), context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM to the node's process group and waits for the JVM to
// exit (Cassandra drains on SIGTERM); after the cluster's StopGrace, or when
// ctx ends, it sends SIGKILL. Stopping a stopped node does nothing.
func (n *Node) Stop(ctx context.Context) error {
	p := n.current()
	if p == nil {
		return nil
	}
	began := time.Now()
	signalGroup(p, syscall.SIGTERM)
	t := time.NewTimer(n.c.opts.StopGrace)
	defer t.Stop()
	select {
	case <-p.done:
		n.c.logf("cassandra: node %s stopped after %s", n.addr, time.Since(began).Round(100*time.Millisecond))
		return nil
	case <-t.C:
		n.killProcess(p)
		return fmt.Errorf("node %s: no exit %s after SIGTERM, killed", n.addr, n.c.opts.StopGrace)
	case <-ctx.Done():
		n.killProcess(p)
		return fmt.Errorf("node %s: killed: %w", n.addr, context.Cause(ctx))
	}
}

// Kill sends SIGKILL to the node's process group and waits until the JVM
// is gone: a crash, with whatever had not reached the disk lost.
func (n *Node) Kill() {
	if p := n.current(); p != nil {
		n.killProcess(p)
		n.c.logf("cassandra: node %s killed", n.addr)
	}
}

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.proc.exited() {
		return nil
	}
	return n.proc
}

func (n *Node) killProcess(p *process) {
	signalGroup(p, syscall.SIGKILL)
	<-p.done
}

// signalGroup signals the JVM's process group, unless the JVM has already
// been reaped (its group ID could then belong to someone else).
func signalGroup(p *process, sig syscall.Signal) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}
