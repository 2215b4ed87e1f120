package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// Defaults for settings a Config or Options leaves at zero.
const (
	DefaultPort               = 22
	DefaultConnectTimeout     = 10 * time.Second
	DefaultCommandTimeout     = 15 * time.Minute
	DefaultKeepaliveInterval  = 30 * time.Second
	DefaultMaxSessionsPerHost = 8
	DefaultMaxSessions        = 256
	DefaultMaxOutput          = 1 << 20
	DefaultKillGrace          = 5 * time.Second
)

// Options are the executor's settings that are the process's rather than a
// cluster's.
type Options struct {
	// KeyStore persists pinned host keys; required when
	// Config.TrustOnFirstUse is set.
	KeyStore KeyStore
	// MaxSessions bounds concurrent sessions over all hosts.
	MaxSessions int
	// MaxOutput bounds the bytes kept of each of stdout and stderr.
	MaxOutput int
	// HandshakeTimeout bounds the SSH handshake; default the connect timeout.
	HandshakeTimeout time.Duration
	// KillGrace is how long a cancelled command gets to exit after it was
	// told to stop, before its session is closed under it.
	KillGrace time.Duration
	// OnError is called with the code (Code* constants) of every failed
	// Run, for metrics. It must not block.
	OnError func(code string)
	// Logger receives connection events; default none.
	Logger *zerolog.Logger
	// HandshakesStart and HandshakesMax bound the connections being set up
	// (TCP connect, SSH handshake, authentication) at once: the limit
	// starts at HandshakesStart (default 16), grows by one per connection
	// made up to HandshakesMax (default 512), and halves when handshakes
	// time out or are dropped by the server (sshd's MaxStartups), so a
	// burst of connections is admitted as fast as the nodes and this
	// process take them, never faster.
	HandshakesStart int
	HandshakesMax   int
}

// Executor runs commands on nodes over SSH. It is safe for concurrent use.
type Executor struct {
	cfg     Config
	opts    Options
	log     zerolog.Logger
	keys    *hostKeys
	auth    *auth
	bastion *endpoint

	sem   chan struct{}
	admit *admission
	done  chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	hosts  map[string]*host
	closed bool
}

var _ nodetool.Runner = (*Executor)(nil)

// endpoint is a user at an address.
type endpoint struct {
	user string
	addr string
}

// host is the shared connection to one address and its session bound.
type host struct {
	addr string
	sem  chan struct{}
	// lock serialises dialling; a channel so waiting honours a context.
	lock chan struct{}
	conn *conn
}

// conn is one SSH client and the goroutines that watch it.
type conn struct {
	client *gossh.Client
	// closed is closed when the connection has ended.
	closed chan struct{}
}

func (c *conn) broken() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// New builds an executor from a cluster's SSH settings. It reads the
// identity files and known_hosts files now, so a bad setting fails here.
func New(cfg Config, opts Options) (*Executor, error) {
	keys, err := newHostKeys(cfg.KnownHosts, cfg.TrustOnFirstUse, opts.KeyStore)
	if err != nil {
		return nil, errclass.Permanent(&Error{Op: "config", Class: CodeConfig, Err: err})
	}
	a, err := newAuth(cfg)
	if err != nil {
		return nil, errclass.Permanent(&Error{Op: "config", Class: CodeConfig, Err: err})
	}
	if cfg.User == "" {
		// As ssh(1) does: the local user name.
		u, err := user.Current()
		if err != nil {
			return nil, errclass.Permanent(&Error{Op: "config", Class: CodeConfig, Err: fmt.Errorf("ssh.user is not set and the local user is unknown: %w", err)})
		}
		cfg.User = u.Username
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxOutput <= 0 {
		opts.MaxOutput = DefaultMaxOutput
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = orDefault(cfg.ConnectTimeout, DefaultConnectTimeout)
	}
	e := &Executor{
		cfg: cfg, opts: opts, keys: keys, auth: a,
		log:   zerolog.Nop(),
		sem:   make(chan struct{}, opts.MaxSessions),
		admit: newAdmission(opts.HandshakesStart, opts.HandshakesMax),
		done:  make(chan struct{}),
		hosts: map[string]*host{},
	}
	if opts.Logger != nil {
		e.log = *opts.Logger
	}
	if cfg.Bastion != "" {
		b, err := parseBastion(cfg.Bastion, cfg.User)
		if err != nil {
			return nil, errclass.Permanent(&Error{Op: "config", Class: CodeConfig, Err: err})
		}
		e.bastion = b
	}
	return e, nil
}

// parseBastion reads "[user@]host[:port]".
func parseBastion(s, defaultUser string) (*endpoint, error) {
	user := defaultUser
	if u, rest, ok := strings.Cut(s, "@"); ok {
		user, s = u, rest
	}
	if user == "" || s == "" {
		return nil, fmt.Errorf("bastion %q: want user@host:port", s)
	}
	addr, err := withPort(s, DefaultPort)
	if err != nil {
		return nil, fmt.Errorf("bastion: %w", err)
	}
	return &endpoint{user: user, addr: addr}, nil
}

// withPort returns host:port, adding port when s has none.
func withPort(s string, port int) (string, error) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		if _, err := strconv.Atoi(p); err != nil || h == "" {
			return "", fmt.Errorf("address %q: bad host or port", s)
		}
		return s, nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if s == "" {
		return "", errors.New("empty address")
	}
	return net.JoinHostPort(s, strconv.Itoa(port)), nil
}

// Address returns the address the executor dials for node: its Address (or,
// without one, its Name), with the configured port unless it names one.
func (e *Executor) Address(node messages.Node) (string, error) {
	a := node.Address
	if a == "" {
		a = node.Name
	}
	port := e.cfg.Port
	if port == 0 {
		port = DefaultPort
	}
	return withPort(a, port)
}

// Close closes every connection and waits for the goroutines watching them.
// Commands still running fail.
func (e *Executor) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.done)
	hosts := make([]*host, 0, len(e.hosts))
	for _, h := range e.hosts {
		hosts = append(hosts, h)
	}
	e.mu.Unlock()
	for _, h := range hosts {
		// Wait for a dial in progress, so its connection is closed too.
		h.lock <- struct{}{}
		if h.conn != nil {
			_ = h.conn.client.Close()
		}
		<-h.lock
	}
	e.wg.Wait()
	return nil
}

var errClosed = errors.New("executor is closed")

func (e *Executor) host(addr string) (*host, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errClosed
	}
	h, ok := e.hosts[addr]
	if !ok {
		n := e.cfg.MaxSessionsPerHost
		if n <= 0 {
			n = DefaultMaxSessionsPerHost
		}
		h = &host{addr: addr, sem: make(chan struct{}, n), lock: make(chan struct{}, 1)}
		e.hosts[addr] = h
	}
	return h, nil
}

// connect returns the shared connection to addr, dialling when there is none
// or it broke. fresh tells whether it was dialled for this call.
func (e *Executor) connect(ctx context.Context, addr, user string) (c *conn, fresh bool, err error) {
	h, err := e.host(addr)
	if err != nil {
		return nil, false, err
	}
	select {
	case h.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, false, classify(ctx, "dial", addr, context.Cause(ctx))
	}
	defer func() { <-h.lock }()
	if h.conn != nil && !h.conn.broken() {
		return h.conn, false, nil
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, false, errClosed
	}
	var via *gossh.Client
	if e.bastion != nil && addr != e.bastion.addr {
		b, _, err := e.connect(ctx, e.bastion.addr, e.bastion.user)
		if err != nil {
			return nil, false, err
		}
		via = b.client
	}
	client, err := e.dial(ctx, addr, user, via)
	if err != nil {
		return nil, false, err
	}
	c = &conn{client: client, closed: make(chan struct{})}
	h.conn = c
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		_ = client.Wait()
		close(c.closed)
		e.log.Debug().Str("address", addr).Msg("ssh connection closed")
	}()
	go e.keepalive(c)
	e.log.Debug().Str("address", addr).Bool("bastion", via != nil).Msg("ssh connected")
	return c, true, nil
}

// dial opens a TCP connection (through via when set) and runs the handshake,
// each under its own timeout. A server that refuses every credential is
// tried once more if the credential files changed in a way their metadata
// did not show, so a refusal is never reported for keys since replaced.
//
// A connection dropped during its handshake, or a handshake that timed out,
// is tried again once admitted again, for as long as one connect timeout
// from the first try: that is how a server with more connections starting
// than it takes (sshd's MaxStartups) says so, and the admission has just
// lowered its limit.
func (e *Executor) dial(ctx context.Context, addr, user string, via *gossh.Client) (*gossh.Client, error) {
	var client *gossh.Client
	var err error
	until := time.Now().Add(orDefault(e.cfg.ConnectTimeout, DefaultConnectTimeout))
	for try := 1; ; try++ {
		client, err = e.admitted(ctx, addr, user, via)
		if err == nil || ctx.Err() != nil || outcomeOf(ctx, err) != handshakeOverload || !time.Now().Before(until) {
			break
		}
		e.log.Debug().Err(err).Str("address", addr).Int("try", try).Msg("ssh handshake dropped or timed out; trying again")
	}
	if err != nil && errclass.Code(err) == CodeAuth && e.auth.reread() {
		e.log.Info().Str("address", addr).Msg("ssh credentials changed on disk; trying them")
		client, err = e.admitted(ctx, addr, user, via)
	}
	return client, err
}

// admitted runs one connect and handshake once the admission lets it, and
// tells the admission how it went.
func (e *Executor) admitted(ctx context.Context, addr, user string, via *gossh.Client) (*gossh.Client, error) {
	t, err := e.admit.acquire(ctx)
	if err != nil {
		return nil, classify(ctx, "dial", addr, err)
	}
	client, err := e.dialOnce(ctx, addr, user, via)
	e.admit.release(t, outcomeOf(ctx, err))
	return client, err
}

// outcomeOf tells what a connect and handshake that ended with err says of
// the load: a timeout of its own (not the caller's deadline), or a
// connection reset or closed during the handshake, is overload.
func outcomeOf(ctx context.Context, err error) handshakeOutcome {
	if err == nil {
		return handshakeDone
	}
	if ctx.Err() != nil {
		return handshakeNeutral
	}
	var se *Error
	if !errors.As(err, &se) {
		return handshakeNeutral
	}
	dropped := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
	switch {
	case se.Class == CodeTimeout:
		return handshakeOverload
	case se.Class == CodeHandshake && dropped:
		return handshakeOverload
	case errors.Is(err, syscall.ECONNRESET):
		return handshakeOverload
	}
	return handshakeNeutral
}

func (e *Executor) dialOnce(ctx context.Context, addr, user string, via *gossh.Client) (*gossh.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, orDefault(e.cfg.ConnectTimeout, DefaultConnectTimeout))
	defer cancel()
	var nc net.Conn
	var err error
	if via != nil {
		nc, err = via.DialContext(dctx, "tcp", addr)
	} else {
		d := net.Dialer{KeepAlive: 30 * time.Second}
		nc, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, classify(dctx, "dial", addr, err)
	}

	hctx, hcancel := context.WithTimeout(ctx, e.opts.HandshakeTimeout)
	defer hcancel()
	// A connection through a bastion has no deadlines; closing it is the
	// one way to interrupt a handshake that hangs.
	stop := context.AfterFunc(hctx, func() { _ = nc.Close() })
	methods, release, err := e.auth.methods()
	if err != nil {
		stop()
		_ = nc.Close()
		if errors.Is(err, errCredentials) {
			return nil, errclass.Permanent(&Error{Op: "config", Host: addr, Class: CodeConfig, Err: err})
		}
		return nil, errclass.Permanent(&Error{Op: "handshake", Host: addr, Class: CodeAuth, Err: err})
	}
	defer release()
	cfg := &gossh.ClientConfig{
		User:              user,
		Auth:              methods,
		HostKeyCallback:   e.keys.callback(hctx),
		HostKeyAlgorithms: e.keys.algorithms(hctx, addr),
		ClientVersion:     "SSH-2.0-quiesce",
	}
	cc, chans, reqs, err := gossh.NewClientConn(nc, addr, cfg)
	if !stop() {
		// The handshake was cut short by its deadline.
		if err == nil {
			_ = cc.Close()
			err = context.Cause(hctx)
		}
		return nil, classify(hctx, "handshake", addr, err)
	}
	if err != nil {
		_ = nc.Close()
		return nil, classify(hctx, "handshake", addr, err)
	}
	return gossh.NewClient(cc, chans, reqs), nil
}

// keepalive sends keepalive@openssh.com requests so a long command's idle
// connection is neither dropped by a middlebox nor kept when the peer is
// gone: a request unanswered for three intervals closes the connection.
func (e *Executor) keepalive(c *conn) {
	defer e.wg.Done()
	interval := orDefault(e.cfg.KeepaliveInterval, DefaultKeepaliveInterval)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-e.done:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			// Any reply, even a refusal, shows the peer is alive.
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		timeout := time.NewTimer(3 * interval)
		select {
		case err := <-reply:
			timeout.Stop()
			if err != nil {
				_ = c.client.Close()
				return
			}
		case <-timeout.C:
			e.log.Warn().Str("address", c.client.RemoteAddr().String()).Msg("ssh keepalive unanswered, closing connection")
			_ = c.client.Close()
			<-reply
			return
		}
	}
}

// Check connects to node (or reuses the connection) without running
// anything: the host answers, its key is trusted and the credentials are
// accepted. The error is classified like Run's.
func (e *Executor) Check(ctx context.Context, node messages.Node) error {
	err := e.check(ctx, node)
	e.report(err)
	return err
}

func (e *Executor) check(ctx context.Context, node messages.Node) error {
	addr, err := e.Address(node)
	if err != nil {
		return errclass.Permanent(&Error{Op: "config", Host: node.Name, Class: CodeConfig, Err: err})
	}
	_, _, err = e.connect(ctx, addr, e.cfg.User)
	if errors.Is(err, errClosed) {
		return &Error{Op: "dial", Host: addr, Class: CodeCancelled, Err: err}
	}
	return err
}

// Run runs cmd on node and waits for it. A command that exits non-zero is a
// *nodetool.ExitError (permanent); a failure to reach the node is an *Error
// classified by its Code. When ctx ends, or the configured command timeout
// passes, the remote command is stopped as well.
func (e *Executor) Run(ctx context.Context, node messages.Node, cmd nodetool.Command) (nodetool.Output, error) {
	out, err := e.run(ctx, node, cmd)
	e.report(err)
	return out, err
}

// report counts a failure (OnError) by its code: a connection made ready
// ahead of a command (Check) fails the same way a command's does.
func (e *Executor) report(err error) {
	if err == nil || e.opts.OnError == nil {
		return
	}
	code := errclass.Code(err)
	if code == "" {
		code = "other"
	}
	e.opts.OnError(code)
}

var _ nodetool.ArmedRunner = (*Executor)(nil)

// RunArmed runs cmd as Run does, in two steps: the session and the remote
// shell are started at once, holding the command until one line arrives on
// their input; ready is called then. Closing fire sends that line, so the
// command starts within one write of it. When ctx ends before fire, the
// session's input is closed and the command exits without ever starting.
func (e *Executor) RunArmed(ctx context.Context, node messages.Node, cmd nodetool.Command, ready func(), fire <-chan struct{}) (nodetool.Output, error) {
	out, err := e.runGated(ctx, node, cmd, &gate{ready: ready, fire: fire})
	e.report(err)
	return out, err
}

// gate holds a command until fire is closed.
type gate struct {
	ready func()
	fire  <-chan struct{}
}

func (e *Executor) run(ctx context.Context, node messages.Node, cmd nodetool.Command) (nodetool.Output, error) {
	return e.runGated(ctx, node, cmd, nil)
}

func (e *Executor) runGated(ctx context.Context, node messages.Node, cmd nodetool.Command, g *gate) (nodetool.Output, error) {
	if len(cmd.Stdin) > 0 {
		return nodetool.Output{}, errclass.Permanent(&Error{Op: "command", Host: node.Name, Class: CodeConfig,
			Err: errors.New("a command's standard input cannot be sent over SSH: the session's input stops the command")})
	}
	words, err := cmd.Words()
	if err != nil {
		return nodetool.Output{}, errclass.Permanent(&Error{Op: "command", Host: node.Name, Class: CodeConfig, Err: err})
	}
	addr, err := e.Address(node)
	if err != nil {
		return nodetool.Output{}, errclass.Permanent(&Error{Op: "config", Host: node.Name, Class: CodeConfig, Err: err})
	}
	ctx, cancel := context.WithTimeout(ctx, orDefault(e.cfg.CommandTimeout, DefaultCommandTimeout))
	defer cancel()

	h, err := e.host(addr)
	if err != nil {
		return nodetool.Output{}, &Error{Op: "run", Host: addr, Class: CodeCancelled, Err: err}
	}
	release, err := e.acquire(ctx, h)
	if err != nil {
		return nodetool.Output{}, classify(ctx, "run", addr, err)
	}
	defer release()

	for attempt := 0; ; attempt++ {
		c, fresh, err := e.connect(ctx, addr, e.cfg.User)
		if err != nil {
			if errors.Is(err, errClosed) {
				return nodetool.Output{}, &Error{Op: "run", Host: addr, Class: CodeCancelled, Err: err}
			}
			return nodetool.Output{}, err
		}
		sess, err := c.client.NewSession()
		if err != nil {
			var oce *gossh.OpenChannelError
			if errors.As(err, &oce) {
				// The server is up and said no (MaxSessions, say): transient.
				return nodetool.Output{}, &Error{Op: "session", Host: addr, Class: CodeSession, Err: err}
			}
			// A shared connection can die between uses; one fresh dial
			// tells a stale connection from a dead host.
			_ = c.client.Close()
			<-c.closed
			if fresh || attempt > 0 {
				return nodetool.Output{}, classify(ctx, "session", addr, err)
			}
			continue
		}
		if g != nil {
			return e.exec(ctx, addr, sess, cmd.Argv, gatedCommand(words), g)
		}
		return e.exec(ctx, addr, sess, cmd.Argv, remoteCommand(words), nil)
	}
}

func (e *Executor) acquire(ctx context.Context, h *host) (func(), error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		<-e.sem
		return nil, context.Cause(ctx)
	}
	return func() { <-h.sem; <-e.sem }, nil
}

func (e *Executor) exec(ctx context.Context, addr string, sess *gossh.Session, argv []string, remote string, g *gate) (nodetool.Output, error) {
	defer sess.Close()
	// The remote wrapper reads its stdin until end of input; closing this
	// pipe is how a cancellation reaches a server that ignores signals.
	stdin, err := sess.StdinPipe()
	if err != nil {
		return nodetool.Output{}, classify(ctx, "session", addr, err)
	}
	stdout := &capped{max: e.opts.MaxOutput}
	stderr := &capped{max: e.opts.MaxOutput}
	sess.Stdout, sess.Stderr = stdout, stderr
	if err := sess.Start(remote); err != nil {
		return nodetool.Output{}, classify(ctx, "session", addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	output := func(code int) nodetool.Output {
		return nodetool.Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code}
	}
	if g != nil {
		g.ready()
		select {
		case <-g.fire:
			if _, err := stdin.Write([]byte("\n")); err != nil {
				_ = sess.Close()
				<-done
				return output(-1), classify(ctx, "run", addr, fmt.Errorf("starting %s: %w", argv[0], err))
			}
		case err := <-done:
			// The session ended while it held the command.
			if err == nil {
				err = errors.New("session ended before the command started")
			}
			return output(-1), classify(ctx, "run", addr, err)
		case <-ctx.Done():
			_ = stdin.Close()
			select {
			case <-done:
			case <-time.After(e.opts.KillGrace):
				_ = sess.Close()
				<-done
			}
			return output(-1), classify(ctx, "run", addr, fmt.Errorf("%s withdrawn before it started: %w", argv[0], context.Cause(ctx)))
		}
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(gossh.SIGTERM)
		_ = stdin.Close()
		grace := time.NewTimer(e.opts.KillGrace)
		select {
		case <-done:
			grace.Stop()
		case <-grace.C:
			// Closing the channel ends the remote stdin too, so the wrapper
			// still kills the command if it was only slow to notice.
			_ = sess.Close()
			<-done
		}
		e.log.Info().Str("address", addr).Str("command", argv[0]).Msg("remote command stopped")
		return output(-1), classify(ctx, "run", addr, fmt.Errorf("%s stopped: %w", argv[0], context.Cause(ctx)))
	}
	var ee *gossh.ExitError
	if errors.As(err, &ee) {
		// Bare, as the Runner contract says; nodetool.Client marks it permanent.
		out := output(ee.ExitStatus())
		return out, &nodetool.ExitError{Argv: argv, ExitCode: out.ExitCode, Out: out}
	}
	if err != nil {
		return output(-1), classify(ctx, "run", addr, err)
	}
	return output(0), nil
}

// capped keeps the first max bytes written to it and drops the rest, so a
// chatty command cannot exhaust the worker's memory.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

func (c *capped) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}
