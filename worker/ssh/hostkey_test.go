package ssh_test

import (
	"crypto/rand"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

func TestUnknownHostKeyIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir)}
	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	var hk *ssh.HostKeyError
	require.ErrorAs(t, err, &hk)
	require.False(t, hk.Changed)
	require.Equal(t, "ssh-ed25519", hk.KeyType)
	require.Equal(t, gossh.FingerprintSHA256(b.srv.HostKey.PublicKey()), hk.Fingerprint)
	require.Contains(t, err.Error(), hk.Fingerprint)
	require.Contains(t, err.Error(), sshtest.KnownHostsName(b.srv.Addr))
	require.Equal(t, ssh.CodeHostKey, errclass.Code(err))
	require.True(t, errclass.IsPermanent(err))
}

func TestMissingKnownHostsFileTrustsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	b.cfg.KnownHosts = []string{filepath.Join(b.dir, "absent")}
	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	var hk *ssh.HostKeyError
	require.ErrorAs(t, err, &hk)
}

func TestChangedHostKeyIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	other := sshtest.NewKey(t)
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir, sshtest.KnownHostsLine(b.srv.Addr, other.PublicKey()))}
	e := b.executor(t, ssh.Options{})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	var hk *ssh.HostKeyError
	require.ErrorAs(t, err, &hk)
	require.True(t, hk.Changed)
	require.Contains(t, err.Error(), "changed")
	require.Contains(t, err.Error(), gossh.FingerprintSHA256(b.srv.HostKey.PublicKey()))
	require.Contains(t, hk.Source, "known_hosts:1")
	require.True(t, errclass.IsPermanent(err))
}

func TestHostKeyAlgorithmFollowsKnownHosts(t *testing.T) {
	t.Parallel()
	// The server offers ed25519 and RSA host keys; known_hosts holds only
	// the RSA one, so the client must ask for RSA.
	rsaKey, err := gossh.NewSignerFromKey(newRSA(t))
	require.NoError(t, err)
	b := setup(t, sshtest.Options{ExtraHostKeys: []gossh.Signer{rsaKey}})
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir, sshtest.KnownHostsLine(b.srv.Addr, rsaKey.PublicKey()))}
	e := b.executor(t, ssh.Options{})
	_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)
}

func testTOFU(t *testing.T, store ssh.KeyStore) {
	b := setup(t, sshtest.Options{})
	b.cfg.KnownHosts = []string{filepath.Join(b.dir, "absent")}
	b.cfg.TrustOnFirstUse = true
	e := b.executor(t, ssh.Options{KeyStore: store})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err, "first key is pinned")
	pinned, err := store.Get(testCtx(t), sshtest.KnownHostsName(b.srv.Addr))
	require.NoError(t, err)
	pk, _, _, _, err := gossh.ParseAuthorizedKey(pinned)
	require.NoError(t, err)
	require.Equal(t, b.srv.HostKey.PublicKey().Marshal(), pk.Marshal())

	// A second executor (another worker) accepts the pinned key.
	e2 := b.executor(t, ssh.Options{KeyStore: store})
	_, err = e2.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)

	// The same address with another key (a rebuilt or impersonated host).
	b.srv.Close()
	ln, err := net.Listen("tcp", b.srv.Addr)
	if err != nil {
		t.Skipf("port %s taken again before the impostor could bind it: %v", b.srv.Addr, err)
	}
	require.NoError(t, ln.Close())
	impostor := sshtest.StartAt(t, b.srv.Addr, sshtest.Options{AuthorizedKeys: []gossh.PublicKey{b.user.PublicKey()}})
	e3 := b.executor(t, ssh.Options{KeyStore: store})
	_, err = e3.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	var hk *ssh.HostKeyError
	require.ErrorAs(t, err, &hk)
	require.True(t, hk.Changed)
	require.Equal(t, gossh.FingerprintSHA256(impostor.HostKey.PublicKey()), hk.Fingerprint)
	require.True(t, errclass.IsPermanent(err))
}

func TestTrustOnFirstUseFileStore(t *testing.T) {
	t.Parallel()
	testTOFU(t, &ssh.FileKeyStore{Path: filepath.Join(t.TempDir(), "pins", "hostkeys")})
}

func TestTrustOnFirstUseKVStore(t *testing.T) {
	t.Parallel()
	testTOFU(t, kvStore(t))
}

func TestTrustOnFirstUseKnownHostsWins(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	other := sshtest.NewKey(t)
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir, sshtest.KnownHostsLine(b.srv.Addr, other.PublicKey()))}
	b.cfg.TrustOnFirstUse = true
	store := &ssh.FileKeyStore{Path: filepath.Join(b.dir, "pins")}
	e := b.executor(t, ssh.Options{KeyStore: store})
	_, err := e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	var hk *ssh.HostKeyError
	require.ErrorAs(t, err, &hk, "a key known_hosts contradicts is never pinned")
	_, err = store.Get(testCtx(t), sshtest.KnownHostsName(b.srv.Addr))
	require.ErrorIs(t, err, ssh.ErrKeyNotFound)
}

func kvStore(t *testing.T) *ssh.KVKeyStore {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	require.True(t, ns.ReadyForConnections(10*time.Second))
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	store, err := ssh.OpenKVKeyStore(testCtx(t), js, 1)
	require.NoError(t, err)
	return store
}

func testKeyStore(t *testing.T, store ssh.KeyStore) {
	ctx := testCtx(t)
	_, err := store.Get(ctx, "[10.0.0.1]:2222")
	require.ErrorIs(t, err, ssh.ErrKeyNotFound)
	require.NoError(t, store.Put(ctx, "[10.0.0.1]:2222", []byte("ssh-ed25519 AAAAone\n")))
	require.ErrorIs(t, store.Put(ctx, "[10.0.0.1]:2222", []byte("ssh-ed25519 AAAAtwo")), ssh.ErrKeyExists)
	got, err := store.Get(ctx, "[10.0.0.1]:2222")
	require.NoError(t, err)
	require.Equal(t, "ssh-ed25519 AAAAone", string(got))
	_, err = store.Get(ctx, "10.0.0.1")
	require.ErrorIs(t, err, ssh.ErrKeyNotFound)

	// Many workers meeting a new host at once: exactly one pin wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Go(func() {
			err := store.Put(ctx, "race.example", []byte("ssh-ed25519 AAAA"+string(rune('a'+i))))
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
				return
			}
			assert.ErrorIs(t, err, ssh.ErrKeyExists)
		})
	}
	wg.Wait()
	require.Equal(t, 1, wins)
}

func TestFileKeyStore(t *testing.T) {
	t.Parallel()
	testKeyStore(t, &ssh.FileKeyStore{Path: filepath.Join(t.TempDir(), "hostkeys")})
}

func TestKVKeyStore(t *testing.T) {
	t.Parallel()
	testKeyStore(t, kvStore(t))
}

func TestHostCertificateFromKnownCA(t *testing.T) {
	t.Parallel()
	ca := sshtest.NewKey(t)
	hostKey := sshtest.NewKey(t)
	cert := &gossh.Certificate{
		Key: hostKey.PublicKey(), Serial: 7, CertType: gossh.HostCert, KeyId: "node",
		ValidPrincipals: []string{"127.0.0.1"},
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
	}
	require.NoError(t, cert.SignCert(rand.Reader, ca))
	certSigner, err := gossh.NewCertSigner(cert, hostKey)
	require.NoError(t, err)
	b := setup(t, sshtest.Options{HostKey: certSigner})
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir,
		"@cert-authority "+sshtest.KnownHostsLine(b.srv.Addr, ca.PublicKey()))}
	e := b.executor(t, ssh.Options{})
	_, err = e.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.NoError(t, err)

	// A certificate from another CA is refused.
	other := sshtest.NewKey(t)
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir,
		"@cert-authority "+sshtest.KnownHostsLine(b.srv.Addr, other.PublicKey()))}
	e2 := b.executor(t, ssh.Options{})
	_, err = e2.Run(testCtx(t), b.node, nodetool.Command{Argv: []string{"true"}})
	require.Error(t, err)
	require.Equal(t, ssh.CodeHostKey, errclass.Code(err))
}

// A connection made ready ahead of a command (Check, as a flush does before
// it records anything) counts its refusal like a command's: the host-key
// alert watches that count.
func TestCheckCountsAHostKeyRefusal(t *testing.T) {
	t.Parallel()
	b := setup(t, sshtest.Options{})
	b.cfg.KnownHosts = []string{sshtest.WriteKnownHosts(t, b.dir)}
	var mu sync.Mutex
	var codes []string
	e := b.executor(t, ssh.Options{OnError: func(code string) {
		mu.Lock()
		defer mu.Unlock()
		codes = append(codes, code)
	}})
	err := e.Check(testCtx(t), b.node)
	require.Equal(t, ssh.CodeHostKey, errclass.Code(err))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{ssh.CodeHostKey}, codes)
}
