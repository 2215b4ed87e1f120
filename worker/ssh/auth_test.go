package ssh_test

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

func TestAuthKeyTypes(t *testing.T) {
	t.Parallel()
	for name, gen := range map[string]func(*testing.T) any{
		"ed25519": newEd25519, "ecdsa": newECDSA, "rsa": newRSA,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, sshtest.Options{})
			dir := t.TempDir()
			path, signer := sshtest.WritePrivateKey(t, dir, "id_"+name, gen(t), "")
			srv := sshtest.Start(t, sshtest.Options{AuthorizedKeys: []gossh.PublicKey{signer.PublicKey()}})
			b.cfg.IdentityFiles = []string{path}
			b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, dir, srv.KnownHosts())}
			b.node.Address = srv.Addr
			e := b.executor(t, ssh.Options{})
			out, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"echo", name}})
			require.NoError(t, err)
			require.Equal(t, name+"\n", string(out.Stdout))
		})
	}
}

func TestAuthEncryptedKey(t *testing.T) {
	b := setup(t, sshtest.Options{})
	path, signer := sshtest.WritePrivateKey(t, b.dir, "id_enc", newEd25519(t), "s3cret pass")
	srv := sshtest.Start(t, sshtest.Options{AuthorizedKeys: []gossh.PublicKey{signer.PublicKey()}})
	b.cfg.IdentityFiles = []string{path}
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir, srv.KnownHosts())}
	b.node.Address = srv.Addr

	t.Run("from env", func(t *testing.T) {
		t.Setenv("QUIESCE_TEST_PASSPHRASE", "s3cret pass")
		cfg := b.cfg
		cfg.PassphraseEnv = "QUIESCE_TEST_PASSPHRASE"
		e, err := ssh.New(cfg, ssh.Options{})
		require.NoError(t, err)
		defer e.Close()
		_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
		require.NoError(t, err)
	})
	t.Run("from file", func(t *testing.T) {
		cfg := b.cfg
		cfg.PassphraseFile = writeFile(t, b.dir, "pass", "s3cret pass\n")
		e, err := ssh.New(cfg, ssh.Options{})
		require.NoError(t, err)
		defer e.Close()
		_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
		require.NoError(t, err)
	})
	t.Run("missing", func(t *testing.T) {
		_, err := ssh.New(b.cfg, ssh.Options{})
		require.ErrorContains(t, err, "encrypted")
		require.NotContains(t, err.Error(), "s3cret")
	})
	t.Run("wrong", func(t *testing.T) {
		cfg := b.cfg
		cfg.PassphraseFile = writeFile(t, b.dir, "wrong", "nope")
		_, err := ssh.New(cfg, ssh.Options{})
		require.Error(t, err)
		require.Equal(t, ssh.CodeConfig, errclass.Code(err))
	})
}

func TestAuthCertificate(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	ca := sshtest.NewKey(t)
	path, signer := sshtest.WritePrivateKey(t, b.dir, "id_cert", newEd25519(t), "")
	// The server knows only the CA, not the key.
	srv := sshtest.Start(t, sshtest.Options{UserCA: ca.PublicKey()})
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir, srv.KnownHosts())}
	b.cfg.IdentityFiles = []string{path}
	b.node.Address = srv.Addr

	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.Equal(t, ssh.CodeAuth, errclass.Code(err), "without its certificate the key is refused")

	sshtest.SignUserCert(t, ca, signer.PublicKey(), b.cfg.User, path)
	e2 := b.executor(t, ssh.Options{})
	_, err = e2.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)
}

func TestAuthAgent(t *testing.T) {
	b := setup(t, sshtest.Options{})
	keyring := agent.NewKeyring()
	priv := newECDSA(t)
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: priv}))
	signer, err := gossh.NewSignerFromKey(priv)
	require.NoError(t, err)
	srv := sshtest.Start(t, sshtest.Options{AuthorizedKeys: []gossh.PublicKey{signer.PublicKey()}})

	sock := filepath.Join(b.dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = agent.ServeAgent(keyring, c)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	t.Setenv("SSH_AUTH_SOCK", sock)

	cfg := ssh.Config{
		User: "quiesce", Agent: true,
		KnownHosts: []string{sshtest.WriteKnownHosts(t, b.dir, srv.KnownHosts())},
	}
	e, err := ssh.New(cfg, ssh.Options{})
	require.NoError(t, err)
	defer e.Close()
	b.node.Address = srv.Addr
	_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)
}

func TestAuthRefusedIsPermanent(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	other := sshtest.Start(t, sshtest.Options{AuthorizedKeys: []gossh.PublicKey{sshtest.NewKey(t).PublicKey()}})
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir, other.KnownHosts())}
	b.node.Address = other.Addr
	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.Error(t, err)
	require.Equal(t, ssh.CodeAuth, errclass.Code(err))
	require.True(t, errclass.IsPermanent(err))
}
