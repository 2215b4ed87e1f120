package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
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
