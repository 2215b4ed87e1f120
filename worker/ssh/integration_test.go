//go:build integration

package ssh_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// sshdBundle is a real OpenSSH sshd and an executor configured for it.
type sshdBundle struct {
	sshd *sshtest.SSHD
	dir  string
	user gossh.Signer
	cfg  ssh.Config
	node messages.Node
}

func setupSSHD(t *testing.T) *sshdBundle {
	t.Helper()
	dir := t.TempDir()
	keyPath, user := sshtest.UserKey(t, dir)
	sshd := sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
	return &sshdBundle{
		sshd: sshd, dir: dir, user: user,
		cfg: ssh.Config{
			User:               sshd.User,
			IdentityFiles:      []string{keyPath},
			KnownHosts:         []string{sshtest.WriteKnownHosts(t, dir, sshd.KnownHosts())},
			ConnectTimeout:     10 * time.Second,
			CommandTimeout:     60 * time.Second,
			MaxSessionsPerHost: 64,
		},
		node: messages.Node{Name: "sshd-node", Address: sshd.Addr},
	}
}

func (b *sshdBundle) executor(t *testing.T, opts ssh.Options) *ssh.Executor {
	t.Helper()
	e, err := ssh.New(b.cfg, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

func TestSSHDFlushSnapshotClear(t *testing.T) {
	t.Parallel()
	b := setupSSHD(t)
	e := b.executor(t, ssh.Options{})
	c, sim := nodetoolClient(t, e)
	ctx := testCtx(t)

	v, err := c.Version(ctx, b.node)
	require.NoError(t, err, b.sshd.Log())
	require.Equal(t, sim.Info().Version, v)
	require.NoError(t, c.Snapshot(ctx, b.node, "quiesce-sshd-1", []string{"shop"}))
	simTags, err := sim.Tags()
	require.NoError(t, err)
	require.Equal(t, []string{"quiesce-sshd-1"}, simTags)
	require.ErrorIs(t, c.Snapshot(ctx, b.node, "quiesce-sshd-1", nil), worker.ErrSnapshotExists, "an existing tag is refused")
	tags, err := c.Tags(ctx, b.node)
	require.NoError(t, err)
	require.Equal(t, []string{"quiesce-sshd-1"}, tags)
	require.NoError(t, c.ClearSnapshot(ctx, b.node, "quiesce-sshd-1"))
	simTags, err = sim.Tags()
	require.NoError(t, err)
	require.Empty(t, simTags)

	out, err := e.Run(ctx, b.node, nodetool.Command{Argv: []string{"printf", "[%s]", "$(id) `id` 'q' ; |"}})
	require.NoError(t, err)
	require.Equal(t, "[$(id) `id` 'q' ; |]", string(out.Stdout))
	out, err = e.Run(ctx, b.node, nodetool.Command{Argv: []string{"sh", "-c", "echo failing >&2; exit 4"}})
	require.Error(t, err)
	require.Equal(t, 4, out.ExitCode)
	require.Equal(t, "failing\n", errclass.Stderr(err))
}

func TestSSHDChangedHostKeyIsRefused(t *testing.T) {
	t.Parallel()
	b := setupSSHD(t)
	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err, b.sshd.Log())

	// The host is rebuilt (or impersonated) with a new key on the same address.
	b.sshd.Stop()
	_, newKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	again := sshtest.StartSSHD(t, sshtest.SSHDOptions{Addr: b.sshd.Addr, HostKey: newKey, AuthorizedKeys: []gossh.PublicKey{b.user.PublicKey()}})

	// A connection made before the change stays what it was (sshd keeps
	// its sessions across a restart); every new connection is refused.
	fresh := b.executor(t, ssh.Options{})
	_, err = fresh.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	var hk *ssh.HostKeyError
	require.ErrorAs(t, err, &hk)
	require.True(t, hk.Changed)
	require.Equal(t, gossh.FingerprintSHA256(again.HostKey.PublicKey()), hk.Fingerprint)
	require.Contains(t, err.Error(), sshtest.KnownHostsName(b.sshd.Addr))
	require.True(t, errclass.IsPermanent(err))
	require.Equal(t, ssh.CodeHostKey, errclass.Code(err))
}

func TestSSHDCancelLeavesNoProcess(t *testing.T) {
	t.Parallel()
	b := setupSSHD(t)
	e := b.executor(t, ssh.Options{KillGrace: 5 * time.Second})
	for _, how := range []string{"cancel", "timeout"} {
		marker := fmt.Sprintf("quiesce-sshd-%s-%d", how, time.Now().UnixNano())
		ctx, cancel := context.WithCancel(testCtx(t))
		if how == "timeout" {
			ctx, cancel = context.WithTimeout(testCtx(t), 2*time.Second)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := e.Run(ctx, b.node, nodetool.Command{Argv: []string{"sh", "-c", "sleep 300; echo " + marker, marker}})
			errc <- err
		}()
		require.Eventually(t, func() bool { return running(t, marker) }, 10*time.Second, 20*time.Millisecond, b.sshd.Log())
		if how == "cancel" {
			cancel()
		}
		select {
		case err := <-errc:
			require.Error(t, err)
			want := map[string]string{"cancel": ssh.CodeCancelled, "timeout": ssh.CodeTimeout}[how]
			require.Equal(t, want, errclass.Code(err))
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return")
		}
		cancel()
		require.Eventually(t, func() bool { return !running(t, marker) }, 10*time.Second, 20*time.Millisecond,
			"%s: a process carrying the marker outlived the command", how)
	}
}

func TestSSHDCancelledSnapshotLeavesNoNodetool(t *testing.T) {
	t.Parallel()
	b := setupSSHD(t)
	cancelSnapshot(t, b.executor(t, ssh.Options{}), b.node)
}

func TestSSHDFiftyConcurrentSessions(t *testing.T) {
	t.Parallel()
	b := setupSSHD(t)
	e := b.executor(t, ssh.Options{})
	const n = 50
	meet := t.TempDir()
	// Each command checks in, then waits until all n have: only sessions
	// running at the same time can all get past the wait.
	script := `touch "$1/$2"; i=0; while [ "$(ls "$1" | wc -l)" -lt ` + fmt.Sprint(n) +
		` ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; ls "$1" | wc -l`
	var wg sync.WaitGroup
	outs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			out, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"sh", "-c", script, "meet", meet, fmt.Sprint(i)}})
			outs[i], errs[i] = strings.TrimSpace(string(out.Stdout)), err
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "session %d\n%s", i, b.sshd.Log())
		require.Equal(t, fmt.Sprint(n), outs[i], "session %d did not see all %d sessions at once", i, n)
	}
	entries, err := os.ReadDir(meet)
	require.NoError(t, err)
	require.Len(t, entries, n)
}

// BenchmarkSSHDRun is BenchmarkRun against the real OpenSSH sshd.
func BenchmarkSSHDRun(b *testing.B) {
	dir := b.TempDir()
	keyPath, user := sshtest.UserKey(b, dir)
	sshd := sshtest.StartSSHD(b, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
	cfg := ssh.Config{
		User: sshd.User, IdentityFiles: []string{keyPath},
		KnownHosts: []string{sshtest.WriteKnownHosts(b, dir, sshd.KnownHosts())},
	}
	node := messages.Node{Name: "sshd-node", Address: sshd.Addr}
	cmd := nodetool.Command{Argv: []string{"true"}}
	ctx := testCtx(b)
	b.Run("reused", func(b *testing.B) {
		e, err := ssh.New(cfg, ssh.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		if _, err := e.Run(ctx, node, cmd); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := e.Run(ctx, node, cmd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh", func(b *testing.B) {
		for b.Loop() {
			e, err := ssh.New(cfg, ssh.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.Run(ctx, node, cmd); err != nil {
				b.Fatal(err)
			}
			if err := e.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestSSHDBastion(t *testing.T) {
	t.Parallel()
	b := setupSSHD(t)
	jump := sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{b.user.PublicKey()}})
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir, b.sshd.KnownHosts(), jump.KnownHosts())}
	b.cfg.Bastion = jump.User + "@" + jump.Addr
	e := b.executor(t, ssh.Options{})
	for range 3 {
		out, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"echo", "through the bastion"}})
		require.NoError(t, err, jump.Log())
		require.Equal(t, "through the bastion\n", string(out.Stdout))
	}
	require.Contains(t, jump.Log(), "Accepted publickey", "the executor logged in to the bastion")
}

func TestSSHDCertificateAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := sshtest.NewKey(t)
	caPub := filepath.Join(dir, "user_ca.pub")
	require.NoError(t, os.WriteFile(caPub, gossh.MarshalAuthorizedKey(ca.PublicKey()), 0o644))
	// No authorized key at all: only a certificate from the CA gets in.
	sshd := sshtest.StartSSHD(t, sshtest.SSHDOptions{Extra: []string{"TrustedUserCAKeys " + caPub}})
	for name, gen := range map[string]func(*testing.T) any{"ed25519": newEd25519, "rsa": newRSA, "ecdsa": newECDSA} {
		keyPath, signer := sshtest.WritePrivateKey(t, dir, "id_"+name, gen(t), "")
		sshtest.SignUserCert(t, ca, signer.PublicKey(), sshd.User, keyPath)
		e, err := ssh.New(ssh.Config{
			User: sshd.User, IdentityFiles: []string{keyPath},
			KnownHosts: []string{sshtest.WriteKnownHosts(t, dir, sshd.KnownHosts())},
		}, ssh.Options{})
		require.NoError(t, err)
		_, err = e.Run(testCtx(t), messages.Node{Name: "n", Address: sshd.Addr}, nodetool.Command{Argv: []string{"true"}})
		require.NoError(t, err, "%s certificate\n%s", name, sshd.Log())
		require.NoError(t, e.Close())
	}
}

// The node is rebuilt with a new host key: a running executor refuses it,
// quoting the known_hosts line that trusts the old key; the operator checks
// the node and corrects known_hosts, and the same executor accepts the new
// key without a restart, whether the file is edited in place (keeping its
// times) or is a Kubernetes secret mount whose symlink is swapped.
func TestSSHDCorrectedKnownHostsReachesRunningExecutor(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"edited in place", "secret mount updated"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			b := setupSSHD(t)
			before := knownHostsWith(t, b.sshd.Addr, b.sshd.HostKey.PublicKey())
			var path string
			var correct func(content string)
			if how == "edited in place" {
				path = filepath.Join(b.dir, "known_hosts")
				require.NoError(t, os.WriteFile(path, []byte(before), 0o600))
				correct = func(c string) { rewriteInPlace(t, path, c) }
			} else {
				m := newSecretMount(t, map[string]string{"known_hosts": before})
				path = m.path("known_hosts")
				correct = func(c string) { m.update(map[string]string{"known_hosts": c}) }
			}
			b.cfg.KnownHosts = []string{path}
			e := b.executor(t, ssh.Options{})
			_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
			require.NoError(t, err, b.sshd.Log())

			oldKey := b.sshd.HostKey.PublicKey()
			b.sshd.StopWithSessions()
			_, newKey, err := ed25519.GenerateKey(rand.Reader)
			require.NoError(t, err)
			rebuilt := sshtest.StartSSHD(t, sshtest.SSHDOptions{Addr: b.sshd.Addr, HostKey: newKey, AuthorizedKeys: []gossh.PublicKey{b.user.PublicKey()}})

			_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
			var hk *ssh.HostKeyError
			require.ErrorAs(t, err, &hk, "%v", err)
			require.True(t, hk.Changed)
			require.Equal(t, gossh.FingerprintSHA256(rebuilt.HostKey.PublicKey()), hk.Fingerprint)
			require.Equal(t, gossh.FingerprintSHA256(oldKey), hk.TrustedFingerprint)
			require.Equal(t, path+":3", hk.Source)
			require.Equal(t, ssh.CodeHostKey, errclass.Code(err))

			correct(knownHostsWith(t, b.sshd.Addr, rebuilt.HostKey.PublicKey()))
			out, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"echo", "accepted"}})
			require.NoError(t, err, "the same executor accepts the corrected key\n%s", rebuilt.Log())
			require.Equal(t, "accepted\n", string(out.Stdout))
		})
	}
}

// A user key rotated through a secret mount reaches a running executor.
func TestSSHDRotatedIdentityReachesRunningExecutor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	staleKey, _ := sshtest.UserKey(t, t.TempDir())
	freshKey, fresh := sshtest.UserKey(t, t.TempDir())
	sshd := sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{fresh.PublicKey()}})
	read := func(p string) string {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		return string(data)
	}
	m := newSecretMount(t, map[string]string{"id_ed25519": read(staleKey)})
	e, err := ssh.New(ssh.Config{
		User: sshd.User, IdentityFiles: []string{m.path("id_ed25519")},
		KnownHosts: []string{sshtest.WriteKnownHosts(t, dir, sshd.KnownHosts())},
	}, ssh.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	node := messages.Node{Name: "n", Address: sshd.Addr}

	_, err = e.Run(testCtx(t), node, nodetool.Command{Argv: []string{"true"}})
	require.Equal(t, ssh.CodeAuth, errclass.Code(err), "%v", err)
	m.update(map[string]string{"id_ed25519": read(freshKey)})
	_, err = e.Run(testCtx(t), node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err, "the rotated key is used without a restart\n%s", sshd.Log())
}
