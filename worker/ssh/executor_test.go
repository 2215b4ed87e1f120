package ssh_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

func TestRunPassesWordsVerbatim(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{})
	nasty := []string{"a b", "it's", `"$HOME"`, "`id`", "$(id)", "; rm -rf /", "|&<>", "*", "~", "", "line\nbreak", `back\slash`}
	argv := append([]string{"printf", `[%s]\n`}, nasty...)
	out, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: argv})
	require.NoError(t, err)
	want := ""
	for _, w := range nasty {
		want += "[" + w + "]\n"
	}
	require.Equal(t, want, string(out.Stdout))
	require.Equal(t, 0, out.ExitCode)
}

func TestRunSetsEnvironment(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{})
	out, err := e.Run(testCtx(t), b.node, nodetool.Command{
		Argv: []string{"sh", "-c", `printf '%s|%s' "$JAVA_HOME" "$QUIESCE_X"`},
		Env:  map[string]string{"JAVA_HOME": "/opt/java 17", "QUIESCE_X": "$(id)'"},
	})
	require.NoError(t, err)
	require.Equal(t, "/opt/java 17|$(id)'", string(out.Stdout))

	_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}, Env: map[string]string{"A;B": "x"}})
	require.Error(t, err)
	require.True(t, errclass.IsPermanent(err))
}

func TestRunExitErrorKeepsStderr(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	var codes []string
	var mu sync.Mutex
	e := b.executor(t, ssh.Options{OnError: func(code string) {
		mu.Lock()
		defer mu.Unlock()
		codes = append(codes, code)
	}})
	out, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"sh", "-c", "echo out; echo 'error: no such keyspace' >&2; exit 3"}})
	var ee *nodetool.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 3, ee.ExitCode)
	require.Equal(t, 3, out.ExitCode)
	require.Equal(t, "out\n", string(out.Stdout))
	require.Equal(t, "error: no such keyspace\n", errclass.Stderr(err))
	require.Equal(t, "exit", errclass.Code(err))
	require.Contains(t, err.Error(), "no such keyspace")
	mu.Lock()
	require.Equal(t, []string{"exit"}, codes)
	mu.Unlock()
}

func TestRunBoundsOutput(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{MaxOutput: 1000})
	out, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"sh", "-c", "head -c 100000 /dev/zero; head -c 5000 /dev/zero >&2"}})
	require.NoError(t, err)
	require.Len(t, out.Stdout, 1000)
	require.Len(t, out.Stderr, 1000)
}

func TestConnectionIsReused(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{})
	for range 5 {
		_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, b.srv.Handshakes())
	require.EqualValues(t, 5, b.srv.Sessions())
}

func TestBrokenConnectionIsRedialled(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)
	b.srv.DropConnections()
	out, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"echo", "again"}})
	require.NoError(t, err)
	require.Equal(t, "again\n", string(out.Stdout))
	require.EqualValues(t, 2, b.srv.Handshakes())
}

func TestSessionsAreBoundedPerHost(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	b.cfg.MaxSessionsPerHost = 3
	e := b.executor(t, ssh.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for range 12 {
		wg.Go(func() {
			_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"sleep", "0.1"}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.LessOrEqual(t, b.srv.MaxConcurrent(), int64(3))
	require.EqualValues(t, 1, b.srv.Handshakes())
}

func TestSessionsAreBoundedOverall(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{MaxSessions: 2})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"sleep", "0.05"}})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	require.LessOrEqual(t, b.srv.MaxConcurrent(), int64(2))
}

// cancelled runs a command carrying marker, cancels it once it runs on the
// server, and checks that Run returns and nothing carrying marker is left.
func cancelled(t *testing.T, e *ssh.Executor, node messages.Node, marker string, stop func(context.CancelFunc)) error {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		// The inner sleep is a grandchild of the wrapper: only a process
		// group kill reaches it.
		_, err := e.Run(ctx, node, nodetool.Command{Argv: []string{"sh", "-c", "sleep 300; echo " + marker, marker}})
		errc <- err
	}()
	require.Eventually(t, func() bool { return running(t, marker) }, 10*time.Second, 20*time.Millisecond)
	stop(cancel)
	var err error
	select {
	case err = <-errc:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
	require.Eventually(t, func() bool { return !running(t, marker) }, 10*time.Second, 20*time.Millisecond,
		"a process carrying %s outlived the cancelled command", marker)
	return err
}

func TestCancelStopsRemoteCommand(t *testing.T) {
	t.Parallel()
	for _, honour := range []bool{false, true} {
		t.Run(fmt.Sprintf("signals=%v", honour), func(t *testing.T) {
			t.Parallel()
			b := setup(t, sshtest.Options{HonourSignals: honour})
			e := b.executor(t, ssh.Options{KillGrace: 3 * time.Second})
			marker := fmt.Sprintf("quiesce-cancel-%d-%v", time.Now().UnixNano(), honour)
			err := cancelled(t, e, b.node, marker, func(cancel context.CancelFunc) { cancel() })
			require.Error(t, err)
			require.Equal(t, ssh.CodeCancelled, errclass.Code(err))
			require.ErrorIs(t, err, context.Canceled)
			// The connection survives a cancelled command.
			_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
			require.NoError(t, err)
			require.EqualValues(t, 1, b.srv.Handshakes())
		})
	}
}

func TestCommandTimeoutStopsRemoteCommand(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	// Long enough for the test to see the command running on a loaded machine.
	b.cfg.CommandTimeout = 2 * time.Second
	e := b.executor(t, ssh.Options{})
	marker := fmt.Sprintf("quiesce-timeout-%d", time.Now().UnixNano())
	err := cancelled(t, e, b.node, marker, func(context.CancelFunc) {})
	require.Equal(t, ssh.CodeTimeout, errclass.Code(err))
	require.False(t, errclass.IsPermanent(err))
}

func TestDroppedConnectionStopsRemoteCommand(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e := b.executor(t, ssh.Options{})
	marker := fmt.Sprintf("quiesce-drop-%d", time.Now().UnixNano())
	err := cancelled(t, e, b.node, marker, func(context.CancelFunc) { b.srv.DropConnections() })
	require.Equal(t, ssh.CodeSession, errclass.Code(err))
	require.False(t, errclass.IsPermanent(err))
}

func TestConnectRefusedIsTransient(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	e := b.executor(t, ssh.Options{})
	_, err = e.Run(testCtx(t), messages.Node{Name: "gone", Address: addr}, nodetool.Command{Argv: []string{"true"}})
	require.Error(t, err)
	require.Equal(t, ssh.CodeConnect, errclass.Code(err))
	require.False(t, errclass.IsPermanent(err))
}

func TestHandshakeTimeoutIsTransient(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	stalled := sshtest.Start(t, sshtest.Options{Stall: true})
	e := b.executor(t, ssh.Options{HandshakeTimeout: 200 * time.Millisecond})
	_, err := e.Run(testCtx(t), messages.Node{Name: "stalled", Address: stalled.Addr}, nodetool.Command{Argv: []string{"true"}})
	require.Error(t, err)
	require.Equal(t, ssh.CodeTimeout, errclass.Code(err))
	require.False(t, errclass.IsPermanent(err))
}

func TestKeepalives(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	b.cfg.KeepaliveInterval = 20 * time.Millisecond
	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.srv.Keepalives() >= 3 }, 10*time.Second, 10*time.Millisecond)
}

func TestBastion(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	jump := sshtest.Start(t, sshtest.Options{AllowForwarding: true, AuthorizedKeys: []gossh.PublicKey{b.user.PublicKey()}})
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir, b.srv.KnownHosts(), jump.KnownHosts())}
	b.cfg.Bastion = "jump@" + jump.Addr
	e := b.executor(t, ssh.Options{})
	for range 3 {
		out, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"echo", "via bastion"}})
		require.NoError(t, err)
		require.Equal(t, "via bastion\n", string(out.Stdout))
	}
	require.EqualValues(t, 1, jump.Forwards())
	require.EqualValues(t, 1, jump.Handshakes())
	require.EqualValues(t, 1, b.srv.Handshakes())
}

func TestBastionHostKeyIsVerified(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	jump := sshtest.Start(t, sshtest.Options{AllowForwarding: true, AuthorizedKeys: []gossh.PublicKey{b.user.PublicKey()}})
	b.cfg.Bastion = "jump@" + jump.Addr
	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	var hk *ssh.HostKeyError
	require.ErrorAs(t, err, &hk)
	require.Equal(t, sshtest.KnownHostsName(jump.Addr), hk.Host)
}

func TestUserDefaultsToLocalUser(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	b.cfg.User = ""
	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	e, err := ssh.New(b.cfg, ssh.Options{})
	require.NoError(t, err)
	_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)
	require.NoError(t, e.Close())
	require.NoError(t, e.Close())
	_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.Error(t, err)
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	for name, mod := range map[string]func(*ssh.Config){
		"missing key":    func(c *ssh.Config) { c.IdentityFiles = []string{b.dir + "/nope"} },
		"no credentials": func(c *ssh.Config) { c.IdentityFiles = nil },
		"tofu no store":  func(c *ssh.Config) { c.TrustOnFirstUse = true },
		"bad bastion":    func(c *ssh.Config) { c.Bastion = "@" },
		"garbage key":    func(c *ssh.Config) { c.IdentityFiles = []string{writeFile(t, b.dir, "garbage", "nope")} },
		"unreadable hosts": func(c *ssh.Config) {
			c.KnownHosts = []string{writeFile(t, b.dir, "kh-bad", "not a known hosts line at all\n")}
		},
	} {
		cfg := b.cfg
		mod(&cfg)
		_, err := ssh.New(cfg, ssh.Options{})
		require.Error(t, err, name)
		require.True(t, errclass.IsPermanent(err), name)
		require.Equal(t, ssh.CodeConfig, errclass.Code(err), name)
	}
}

var _ = errors.New

func TestUnansweredKeepalivesCloseTheConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{IgnoreGlobalRequests: true})
	// The connection is closed four intervals after it opened: time for a
	// command even on a loaded machine.
	b.cfg.KeepaliveInterval = 250 * time.Millisecond
	e := b.executor(t, ssh.Options{})
	// The first command opens the connection. Should it outlast the
	// unanswered keepalives all the same, it fails with the connection:
	// what matters is what follows.
	_, _ = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.Positive(t, b.srv.Handshakes())
	// The connection is given up on; the next command dials afresh.
	require.Eventually(t, func() bool {
		_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
		return err == nil && b.srv.Handshakes() >= 2
	}, 30*time.Second, 50*time.Millisecond)
}

func TestSudo(t *testing.T) {
	t.Parallel()
	// A stand-in sudo that insists on -n (never prompt) and -- (no option
	// parsing of the command) before running the command.
	bin := t.TempDir()
	writeFile(t, bin, "sudo", "#!/bin/sh\n[ \"$1\" = -n ] && [ \"$2\" = -- ] || { echo 'sudo: a password is required' >&2; exit 1; }\nshift 2\necho via-sudo >&2\nexec \"$@\"\n")
	require.NoError(t, os.Chmod(filepath.Join(bin, "sudo"), 0o755))
	b := setup(t, sshtest.Options{Env: []string{"PATH=" + bin + ":" + os.Getenv("PATH")}})
	e := b.executor(t, ssh.Options{})
	out, err := e.Run(testCtx(t), b.node, nodetool.Command{
		Argv: []string{"sh", "-c", `echo "$X"`}, Env: map[string]string{"X": "kept"}, Sudo: true,
	})
	require.NoError(t, err)
	require.Equal(t, "kept\n", string(out.Stdout))
	require.Equal(t, "via-sudo\n", string(out.Stderr))
}
