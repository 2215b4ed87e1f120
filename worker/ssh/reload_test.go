package ssh_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// secretMount lays out files as a mounted Kubernetes secret does: each name
// is a symlink into "..data", itself a symlink to a timestamped directory
// that an update replaces by swapping "..data" atomically.
type secretMount struct {
	t       testing.TB
	dir     string
	version int
}

func newSecretMount(t testing.TB, files map[string]string) *secretMount {
	t.Helper()
	m := &secretMount{t: t, dir: t.TempDir()}
	m.update(files)
	for name := range files {
		require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(m.dir, name)))
	}
	return m
}

func (m *secretMount) path(name string) string { return filepath.Join(m.dir, name) }

// update writes a new version of the files and swaps "..data" to it, as
// the kubelet does.
func (m *secretMount) update(files map[string]string) {
	m.t.Helper()
	m.version++
	version := "..v" + string(rune('0'+m.version))
	require.NoError(m.t, os.Mkdir(filepath.Join(m.dir, version), 0o755))
	for name, content := range files {
		require.NoError(m.t, os.WriteFile(filepath.Join(m.dir, version, name), []byte(content), 0o600))
	}
	tmp := filepath.Join(m.dir, "..data_tmp")
	require.NoError(m.t, os.Symlink(version, tmp))
	require.NoError(m.t, os.Rename(tmp, filepath.Join(m.dir, "..data")))
}

// rewriteInPlace replaces a file's content without replacing the file, and
// gives it back its modification time, as an editor that keeps times would.
func rewriteInPlace(t testing.TB, path, content string) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	_, err = f.WriteString(content)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Chtimes(path, fi.ModTime(), fi.ModTime()))
}

// knownHostsWith is a known_hosts file whose third line holds key for addr,
// after a comment and another host's line.
func knownHostsWith(t testing.TB, addr string, key gossh.PublicKey) string {
	t.Helper()
	return "# cluster orders\n" +
		sshtest.KnownHostsLine("10.9.9.9:22", sshtest.NewKey(t).PublicKey()) +
		sshtest.KnownHostsLine(addr, key)
}

func runTrue(t testing.TB, e *ssh.Executor, b *bundle) error {
	t.Helper()
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	return err
}

// A node whose key changed is refused with the line that trusts its old key;
// once known_hosts is corrected, the same executor accepts it, without a
// restart, however the file was corrected.
func TestCorrectedKnownHostsIsReadAgain(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"rewritten", "rewritten keeping its times", "secret mount updated"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			b := setup(t, sshtest.Options{})
			old := sshtest.NewKey(t)
			var path string
			var fix func(content string)
			switch how {
			case "rewritten":
				path = filepath.Join(b.dir, "known_hosts")
				require.NoError(t, os.WriteFile(path, []byte(knownHostsWith(t, b.srv.Addr, old.PublicKey())), 0o600))
				fix = func(c string) { require.NoError(t, os.WriteFile(path, []byte(c), 0o600)) }
			case "rewritten keeping its times":
				path = filepath.Join(b.dir, "known_hosts")
				require.NoError(t, os.WriteFile(path, []byte(knownHostsWith(t, b.srv.Addr, old.PublicKey())), 0o600))
				fix = func(c string) { rewriteInPlace(t, path, c) }
			case "secret mount updated":
				m := newSecretMount(t, map[string]string{"known_hosts": knownHostsWith(t, b.srv.Addr, old.PublicKey())})
				path = m.path("known_hosts")
				fix = func(c string) { m.update(map[string]string{"known_hosts": c}) }
			}
			b.cfg.KnownHosts = []string{path}
			e := b.executor(t, ssh.Options{})

			err := runTrue(t, e, b)
			var hk *ssh.HostKeyError
			require.ErrorAs(t, err, &hk)
			require.True(t, hk.Changed)
			require.Equal(t, path+":3", hk.Source)
			require.Equal(t, gossh.FingerprintSHA256(old.PublicKey()), hk.TrustedFingerprint)
			require.Contains(t, err.Error(), gossh.FingerprintSHA256(old.PublicKey()))
			require.Contains(t, err.Error(), "no restart needed")

			// A wrong correction: line 3 now trusts yet another key, and
			// the refusal quotes it as it is now.
			other := sshtest.NewKey(t)
			fix(knownHostsWith(t, b.srv.Addr, other.PublicKey()))
			err = runTrue(t, e, b)
			require.ErrorAs(t, err, &hk)
			require.Equal(t, gossh.FingerprintSHA256(other.PublicKey()), hk.TrustedFingerprint, err.Error())
			require.NotContains(t, err.Error(), gossh.FingerprintSHA256(old.PublicKey()))

			fix(knownHostsWith(t, b.srv.Addr, b.srv.HostKey.PublicKey()))
			require.NoError(t, runTrue(t, e, b), "the same executor accepts the corrected key")
		})
	}
}

// A known_hosts file that did not exist when the executor was built trusts
// once it appears; one that becomes unreadable fails with its name.
func TestKnownHostsAppearsAndBreaks(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	path := filepath.Join(b.dir, "later_known_hosts")
	b.cfg.KnownHosts = []string{path}
	e := b.executor(t, ssh.Options{})
	var hk *ssh.HostKeyError
	require.ErrorAs(t, runTrue(t, e, b), &hk)
	require.False(t, hk.Changed)

	require.NoError(t, os.WriteFile(path, []byte(b.srv.KnownHosts()), 0o600))
	require.NoError(t, runTrue(t, e, b))

	// A fresh connection is needed to check the key again.
	b.srv.DropConnections()
	require.NoError(t, os.WriteFile(path, []byte("@revoked\n"), 0o600))
	err := runTrue(t, e, b)
	require.Error(t, err)
	require.Equal(t, ssh.CodeConfig, errclass.Code(err), err.Error())
	require.Contains(t, err.Error(), path)
	require.True(t, errclass.IsPermanent(err))

	require.NoError(t, os.WriteFile(path, []byte(b.srv.KnownHosts()), 0o600))
	require.NoError(t, runTrue(t, e, b), "a repaired file is read again")
}

// A rotated identity file, and a certificate that appears beside a key,
// reach a running executor.
func TestRotatedIdentityIsReadAgain(t *testing.T) {
	t.Parallel()
	staleKey, _ := sshtest.UserKey(t, t.TempDir())
	freshKey, freshSigner := sshtest.UserKey(t, t.TempDir())
	certKey, certSigner := sshtest.UserKey(t, t.TempDir())
	ca := sshtest.NewKey(t)
	srv := sshtest.Start(t, sshtest.Options{AuthorizedKeys: []gossh.PublicKey{freshSigner.PublicKey()}, UserCA: ca.PublicKey()})
	node := messages.Node{Name: "node-1", Address: srv.Addr}
	knownHosts := sshtest.WriteKnownHosts(t, t.TempDir(), srv.KnownHosts())
	read := func(p string) string {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		return string(data)
	}
	executor := func(identity string) *ssh.Executor {
		e, err := ssh.New(ssh.Config{User: "quiesce", IdentityFiles: []string{identity}, KnownHosts: []string{knownHosts}}, ssh.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, e.Close()) })
		return e
	}
	run := func(e *ssh.Executor) error {
		_, err := e.Run(testCtx(t), node, nodetool.Command{Argv: []string{"true"}})
		return err
	}

	m := newSecretMount(t, map[string]string{"id_ed25519": read(staleKey)})
	e := executor(m.path("id_ed25519"))
	err := run(e)
	require.Equal(t, ssh.CodeAuth, errclass.Code(err), "%v", err)
	m.update(map[string]string{"id_ed25519": read(freshKey)})
	require.NoError(t, run(e), "the rotated key is used without a restart")

	// A key the server does not know gets in once a certificate signed by
	// the CA it trusts is written beside it.
	e = executor(certKey)
	require.Equal(t, ssh.CodeAuth, errclass.Code(run(e)))
	sshtest.SignUserCert(t, ca, certSigner.PublicKey(), "quiesce", certKey)
	require.NoError(t, run(e), "the new certificate is used without a restart")

	// An identity file replaced by something unreadable fails with its name.
	srv.DropConnections()
	require.NoError(t, os.WriteFile(certKey, []byte("not a key\n"), 0o600))
	err = run(e)
	require.Equal(t, ssh.CodeConfig, errclass.Code(err), "%v", err)
	require.Contains(t, err.Error(), certKey)
}
