package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Options configure an in-process server.
type Options struct {
	// HostKey is the server's key; default a new ed25519 key.
	HostKey gossh.Signer
	// ExtraHostKeys are offered too, for clients that ask for their types.
	ExtraHostKeys []gossh.Signer
	// AuthorizedKeys may log in, as any user.
	AuthorizedKeys []gossh.PublicKey
	// UserCA signs user certificates that may log in.
	UserCA gossh.PublicKey
	// HonourSignals delivers "signal" requests to the command. Off by
	// default, like the OpenSSH versions that ignore them without a pty.
	HonourSignals bool
	// Stall accepts TCP connections and never answers, to test handshake
	// timeouts.
	Stall bool
	// Env is added to every command's environment.
	Env []string
	// AllowForwarding serves "direct-tcpip" channels, so the server can be
	// a bastion.
	AllowForwarding bool
	// IgnoreGlobalRequests leaves keepalives unanswered, like a peer that
	// vanished without closing the connection.
	IgnoreGlobalRequests bool
}

// Server is an in-process SSH server on 127.0.0.1.
type Server struct {
	// Addr is "127.0.0.1:port".
	Addr    string
	HostKey gossh.Signer

	opts Options
	ln   net.Listener
	cfg  *gossh.ServerConfig
	wg   sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	handshakes atomic.Int64
	keepalives atomic.Int64
	forwards   atomic.Int64
	sessions   atomic.Int64
	active     atomic.Int64
	maxActive  atomic.Int64
}

// Start starts a server and stops it at the end of the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	return StartAt(t, "127.0.0.1:0", opts)
}

// StartAt starts a server listening on addr (a loopback address) and stops
// it at the end of the test.
func StartAt(t testing.TB, addr string, opts Options) *Server {
	t.Helper()
	if opts.HostKey == nil {
		opts.HostKey = NewKey(t)
	}
	s := &Server{opts: opts, HostKey: opts.HostKey, conns: map[net.Conn]struct{}{}}
	s.cfg = &gossh.ServerConfig{PublicKeyCallback: s.checkKey}
	s.cfg.AddHostKey(opts.HostKey)
	for _, k := range opts.ExtraHostKeys {
		s.cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("sshtest: listen: %v", err)
	}
	s.ln = ln
	s.Addr = ln.Addr().String()
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Handshakes counts completed handshakes: the connections clients opened.
func (s *Server) Handshakes() int64 { return s.handshakes.Load() }

// Keepalives counts global requests received (keepalive@openssh.com).
func (s *Server) Keepalives() int64 { return s.keepalives.Load() }

// Forwards counts direct-tcpip channels served.
func (s *Server) Forwards() int64 { return s.forwards.Load() }

// Sessions counts sessions opened.
func (s *Server) Sessions() int64 { return s.sessions.Load() }

// MaxConcurrent is the most commands that ran at once.
func (s *Server) MaxConcurrent() int64 { return s.maxActive.Load() }

// Port returns the listening port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// KnownHosts returns the server's known_hosts line.
func (s *Server) KnownHosts() string { return KnownHostsLine(s.Addr, s.HostKey.PublicKey()) }

// DropConnections closes every client connection, as a network failure would.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// Close stops the server and waits for its connections and commands.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) checkKey(_ gossh.ConnMetadata, key gossh.PublicKey) (*gossh.Permissions, error) {
	if cert, ok := key.(*gossh.Certificate); ok && s.opts.UserCA != nil {
		if string(cert.SignatureKey.Marshal()) != string(s.opts.UserCA.Marshal()) {
			return nil, errors.New("certificate not signed by the user CA")
		}
		checker := gossh.CertChecker{}
		if err := checker.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
			return nil, err
		}
		return &gossh.Permissions{}, nil
	}
	for _, k := range s.opts.AuthorizedKeys {
		if string(k.Marshal()) == string(key.Marshal()) {
			return &gossh.Permissions{}, nil
		}
	}
	return nil, errors.New("key not authorized")
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			continue
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer s.untrack(c)
	defer c.Close()
	if s.opts.Stall {
		_, _ = io.Copy(io.Discard, c)
		return
	}
	sc, chans, reqs, err := gossh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	s.handshakes.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// keepalive@openssh.com and friends get a refusal, which is a reply.
		for req := range reqs {
			s.keepalives.Add(1)
			if req.WantReply && !s.opts.IgnoreGlobalRequests {
				_ = req.Reply(false, nil)
			}
		}
	}()
	var sessions sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() == "direct-tcpip" && s.opts.AllowForwarding {
			sessions.Add(1)
			go func() {
				defer sessions.Done()
				s.forward(nc)
			}()
			continue
		}
		if nc.ChannelType() != "session" {
			_ = nc.Reject(gossh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		s.sessions.Add(1)
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			s.session(ch, creqs)
		}()
	}
	_ = sc.Close()
	sessions.Wait()
}

func (s *Server) forward(nc gossh.NewChannel) {
	var p struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := gossh.Unmarshal(nc.ExtraData(), &p); err != nil {
		_ = nc.Reject(gossh.ConnectionFailed, "bad payload")
		return
	}
	target, err := net.DialTimeout("tcp", net.JoinHostPort(p.Host, fmt.Sprint(p.Port)), 5*time.Second)
	if err != nil {
		_ = nc.Reject(gossh.ConnectionFailed, err.Error())
		return
	}
	defer target.Close()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	s.forwards.Add(1)
	go gossh.DiscardRequests(reqs)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(target, ch)
		_ = target.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(ch, target)
	_ = ch.CloseWrite()
	_ = ch.Close()
	_ = target.Close()
	<-done
}

var signals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP,
}

func (s *Server) session(ch gossh.Channel, reqs <-chan *gossh.Request) {
	defer ch.Close()
	var (
		cmd    *exec.Cmd
		exited = make(chan struct{})
		wg     sync.WaitGroup
	)
	defer wg.Wait()
	for {
		var req *gossh.Request
		var ok bool
		select {
		case req, ok = <-reqs:
			if !ok {
				return
			}
		case <-exited:
			// Requests must be serviced until the channel is gone.
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				gossh.DiscardRequests(reqs)
			}()
			return
		}
		switch req.Type {
		case "exec":
			if cmd != nil {
				_ = req.Reply(false, nil)
				continue
			}
			var payload struct{ Command string }
			if err := gossh.Unmarshal(req.Payload, &payload); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			cmd = exec.Command("/bin/sh", "-c", payload.Command)
			cmd.Env = append(os.Environ(), s.opts.Env...)
			// Like sshd, the command leads a session of its own.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
			stdin, err := cmd.StdinPipe()
			if err == nil {
				err = cmd.Start()
			}
			if err != nil {
				_ = req.Reply(false, nil)
				return
			}
			_ = req.Reply(true, nil)
			wg.Add(2)
			go func() {
				defer wg.Done()
				// End of the client's input, or the channel closing, ends the
				// command's stdin: that is how sshd tells a command its client
				// went away.
				_, _ = io.Copy(stdin, ch)
				_ = stdin.Close()
			}()
			go func() {
				defer wg.Done()
				n := s.active.Add(1)
				for {
					m := s.maxActive.Load()
					if n <= m || s.maxActive.CompareAndSwap(m, n) {
						break
					}
				}
				err := cmd.Wait()
				s.active.Add(-1)
				status := uint32(0)
				if err != nil {
					status = 255
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
							status = 128 + uint32(ws.Signal())
						} else {
							status = uint32(ee.ExitCode())
						}
					}
				}
				_ = ch.CloseWrite()
				_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
				_ = ch.Close()
				close(exited)
			}()
		case "signal":
			var payload struct{ Signal string }
			_ = gossh.Unmarshal(req.Payload, &payload)
			sig, known := signals[payload.Signal]
			if s.opts.HonourSignals && known && cmd != nil && cmd.Process != nil {
				_ = cmd.Process.Signal(sig)
				_ = req.Reply(true, nil)
				continue
			}
			_ = req.Reply(false, nil)
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// NewKey returns a new ed25519 signer.
func NewKey(t testing.TB) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// WritePrivateKey writes key (a crypto private key: ed25519.PrivateKey,
// *ecdsa.PrivateKey, *rsa.PrivateKey) in OpenSSH format to dir/name, encrypted
// when passphrase is not empty, with its .pub beside it, and returns the
// path and the signer.
func WritePrivateKey(t testing.TB, dir, name string, key any, passphrase string) (string, gossh.Signer) {
	t.Helper()
	var (
		block *pem.Block
		err   error
	)
	if passphrase == "" {
		block, err = gossh.MarshalPrivateKey(key, "quiesce-test")
	} else {
		block, err = gossh.MarshalPrivateKeyWithPassphrase(key, "quiesce-test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", gossh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, signer
}

// UserKey writes a new unencrypted ed25519 user key to dir and returns its path
// and signer.
func UserKey(t testing.TB, dir string) (string, gossh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return WritePrivateKey(t, dir, "id_ed25519", priv, "")
}

// KnownHostsLine formats a known_hosts line for addr ("host:port").
func KnownHostsLine(addr string, key gossh.PublicKey) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "22"
	}
	if port != "22" {
		host = fmt.Sprintf("[%s]:%s", host, port)
	}
	return host + " " + string(gossh.MarshalAuthorizedKey(key))
}

// WriteKnownHosts writes lines to dir/known_hosts and returns the path.
func WriteKnownHosts(t testing.TB, dir string, lines ...string) string {
	t.Helper()
	path := filepath.Join(dir, "known_hosts")
	var b []byte
	for _, l := range lines {
		b = append(b, l...)
		if len(l) == 0 || l[len(l)-1] != '\n' {
			b = append(b, '\n')
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// SignUserCert issues a user certificate for pub, valid for principal, signed
// by ca, and writes it beside keyPath as "<key>-cert.pub".
func SignUserCert(t testing.TB, ca gossh.Signer, pub gossh.PublicKey, principal, keyPath string) {
	t.Helper()
	cert := &gossh.Certificate{
		Key:             pub,
		Serial:          1,
		CertType:        gossh.UserCert,
		KeyId:           "quiesce-test",
		ValidPrincipals: []string{principal},
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
		Permissions:     gossh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath+"-cert.pub", gossh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
}

// KnownHostsName is the name known_hosts files use for addr: "host" on port
// 22, "[host]:port" otherwise.
func KnownHostsName(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if port == "22" {
		return host
	}
	return fmt.Sprintf("[%s]:%s", host, port)
}
