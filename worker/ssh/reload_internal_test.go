package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newPublicKey(t *testing.T) gossh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	k, err := gossh.NewPublicKey(pub)
	require.NoError(t, err)
	return k
}

// A change that a file's metadata does not show (a file system with coarse
// times, an edit racing the check) is still seen before a key is refused:
// the files are read again, and the refusal, if any, quotes them as they
// are now.
func TestRefusalRereadsKnownHosts(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "known_hosts")
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	host := knownhosts.Normalize(addr.String())
	old, offered, other := newPublicKey(t), newPublicKey(t), newPublicKey(t)
	line := func(k gossh.PublicKey) string { return knownhosts.Line([]string{host}, k) + "\n" }
	require.NoError(t, os.WriteFile(path, []byte(line(old)), 0o600))
	h, err := newHostKeys([]string{path}, false, nil)
	require.NoError(t, err)
	check := func() error { return h.callback(t.Context())(addr.String(), addr, offered) }

	var hk *HostKeyError
	require.ErrorAs(t, check(), &hk)
	require.Equal(t, gossh.FingerprintSHA256(old), hk.TrustedFingerprint)

	// Rewrite the file, then make its metadata look as it did when read.
	invisible := func(content string) {
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		h.trust.mu.Lock()
		h.trust.stamps = h.trust.stampAll()
		h.trust.mu.Unlock()
	}
	invisible(line(other))
	require.ErrorAs(t, check(), &hk)
	require.Equal(t, gossh.FingerprintSHA256(other), hk.TrustedFingerprint, "the refusal quotes the line as it is now")

	invisible(line(offered))
	require.NoError(t, check(), "read again before refusing: the corrected line trusts the key")
}

// BenchmarkTrustFilesUnchanged is what every handshake now pays to notice a
// changed known_hosts: a stat per file. Compare it with BenchmarkRun's
// connect-only, the handshake it precedes, in the same run.
func BenchmarkTrustFilesUnchanged(b *testing.B) {
	dir := b.TempDir()
	var files []string
	for _, name := range []string{"known_hosts", "known_hosts.fleet"} {
		p := filepath.Join(dir, name)
		var lines []byte
		for i := range 1000 {
			pub, _, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			k, err := gossh.NewPublicKey(pub)
			if err != nil {
				b.Fatal(err)
			}
			lines = append(lines, knownhosts.Line([]string{net.JoinHostPort("10.0.0.1", strconv.Itoa(2000+i))}, k)+"\n"...)
		}
		if err := os.WriteFile(p, lines, 0o600); err != nil {
			b.Fatal(err)
		}
		files = append(files, p)
	}
	h, err := newHostKeys(files, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := h.current(); err != nil {
			b.Fatal(err)
		}
	}
}
