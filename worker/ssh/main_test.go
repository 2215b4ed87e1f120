package ssh_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/simnode"
	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/ssh"
)

func TestMain(m *testing.M) {
	// Run as a command on a node, the test binary is the simulated node's
	// nodetool.
	if os.Getenv(simnode.RootEnv) != "" {
		os.Exit(simnode.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// bundle is one in-process server and an executor configured for it.
type bundle struct {
	srv  *sshtest.Server
	dir  string
	key  string
	user gossh.Signer
	cfg  ssh.Config
	node messages.Node
}

func setup(t testing.TB, opts sshtest.Options) *bundle {
	t.Helper()
	dir := t.TempDir()
	keyPath, user := sshtest.UserKey(t, dir)
	opts.AuthorizedKeys = append(opts.AuthorizedKeys, user.PublicKey())
	srv := sshtest.Start(t, opts)
	kh := sshtest.WriteKnownHosts(t, dir, srv.KnownHosts())
	return &bundle{
		srv: srv, dir: dir, key: keyPath, user: user,
		cfg: ssh.Config{
			User:           "quiesce",
			IdentityFiles:  []string{keyPath},
			KnownHosts:     []string{kh},
			ConnectTimeout: 5 * time.Second,
			CommandTimeout: 30 * time.Second,
		},
		node: messages.Node{Name: "node-1", Address: srv.Addr},
	}
}

func (b *bundle) executor(t testing.TB, opts ssh.Options) *ssh.Executor {
	t.Helper()
	e, err := ssh.New(b.cfg, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// running reports whether a process whose command line contains marker runs.
func running(t *testing.T, marker string) bool {
	t.Helper()
	out, err := exec.Command("pgrep", "-f", marker).Output()
	if err != nil {
		return false
	}
	return strings.TrimSpace(string(out)) != ""
}

func newRSA(t *testing.T) any {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return k
}

func newECDSA(t *testing.T) any {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func newEd25519(t *testing.T) any {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return k
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}
