package sshtest

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// SSHDPath is where Debian's openssh-server installs sshd.
const SSHDPath = "/usr/sbin/sshd"

// SSHDOptions configure a real sshd.
type SSHDOptions struct {
	// Addr is the address to listen on; default a free 127.0.0.1 port.
	Addr string
	// HostKey is the ed25519 host key; default a new one.
	HostKey ed25519.PrivateKey
	// AuthorizedKeys may log in as User.
	AuthorizedKeys []gossh.PublicKey
	// MaxSessions per connection and MaxStartups (concurrent unauthenticated
	// connections); default 100 each.
	MaxSessions int
	MaxStartups int
	// Extra lines appended to sshd_config.
	Extra []string
}

// SSHD is an OpenSSH server started for a test.
type SSHD struct {
	Addr    string
	HostKey gossh.Signer
	// User is the account tests log in as: the one running the tests.
	User string
	Dir  string

	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	once    sync.Once
}

// StartSSHD starts /usr/sbin/sshd in the foreground on a loopback port with
// its own host key, config and authorized keys, and stops it at the end of
// the test. It skips the test when sshd is not installed.
func StartSSHD(t testing.TB, opts SSHDOptions) *SSHD {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		const msg = "sshd not found: apt-get install openssh-server"
		// Same switch as internal/testkit/testenv.Missing, read here so that
		// testenv may use this package without an import cycle.
		if os.Getenv("QUIESCE_REQUIRE_INTEGRATION") != "" {
			t.Fatalf("%s (required: QUIESCE_REQUIRE_INTEGRATION is set)", msg)
		}
		t.Skip(msg)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: current user: %v", err)
	}
	if u.Uid == "0" {
		// sshd insists on its privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshtest: /run/sshd: %v", err)
		}
	}
	if opts.HostKey == nil {
		_, opts.HostKey, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
	}
	if opts.MaxSessions == 0 {
		opts.MaxSessions = 100
	}
	if opts.MaxStartups == 0 {
		opts.MaxStartups = 100
	}
	dir := t.TempDir()
	hostKeyPath, hostSigner := WritePrivateKey(t, dir, "ssh_host_ed25519_key", opts.HostKey, "")
	var ak []byte
	for _, k := range opts.AuthorizedKeys {
		ak = append(ak, gossh.MarshalAuthorizedKey(k)...)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ak, 0o600); err != nil {
		t.Fatal(err)
	}

	var lastErr error
	for range 3 {
		addr := opts.Addr
		if addr == "" {
			addr = freeAddr(t)
		}
		s := &SSHD{Addr: addr, HostKey: hostSigner, User: u.Username, Dir: dir}
		lastErr = s.start(t, opts, hostKeyPath)
		if lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
		if opts.Addr != "" {
			break
		}
	}
	t.Fatalf("sshtest: sshd did not start: %v", lastErr)
	return nil
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *SSHD) start(t testing.TB, opts SSHDOptions, hostKeyPath string) error {
	cfg := []string{
		"ListenAddress " + s.Addr,
		"HostKey " + hostKeyPath,
		"PidFile " + filepath.Join(s.Dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(s.Dir, "authorized_keys"),
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password",
		"AllowTcpForwarding yes",
		fmt.Sprintf("MaxSessions %d", opts.MaxSessions),
		fmt.Sprintf("MaxStartups %d:30:%d", opts.MaxStartups, opts.MaxStartups*2),
		"MaxAuthTries 10",
		"PrintMotd no",
		"LogLevel VERBOSE",
	}
	cfg = append(cfg, opts.Extra...)
	cfgPath := filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(strings.Join(cfg, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(SSHDPath, "-t", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("sshtest: sshd -t rejected its config: %v\n%s", err, out)
	}
	// A file, not a pipe: sshd's per-connection children inherit it, and
	// Wait would otherwise wait for the last of them to close a pipe.
	logf, err := os.OpenFile(filepath.Join(s.Dir, "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.logPath = logf.Name()
	s.cmd = exec.Command(SSHDPath, "-D", "-e", "-f", cfgPath)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("sshd exited: %s", s.Log())
		default:
		}
		if banner(s.Addr) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("sshd not answering on %s: %s", s.Addr, s.Log())
}

// banner reports whether an SSH server answers on addr.
func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

// Stop terminates sshd (the listener; sessions in progress keep their own
// processes, as with a real sshd restart) and waits for it.
func (s *SSHD) Stop() {
	s.once.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// StopWithSessions stops sshd and ends every connection it accepted, as a
// host that is rebuilt or rebooted does: a client must dial again.
func (s *SSHD) StopWithSessions() {
	var children []int
	if s.cmd != nil && s.cmd.Process != nil {
		children = childrenOf(s.cmd.Process.Pid)
	}
	s.Stop()
	for _, pid := range children {
		// The processes were started by this sshd for this test.
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// Log returns what sshd logged so far (its last 64 KiB).
func (s *SSHD) Log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	return string(b)
}

// KnownHosts returns the server's known_hosts line.
func (s *SSHD) KnownHosts() string { return KnownHostsLine(s.Addr, s.HostKey.PublicKey()) }
