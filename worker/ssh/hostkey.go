package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeys decides whether a host key is trusted: known_hosts files first,
// then, in trust-on-first-use mode only, the pin store.
type hostKeys struct {
	files []string
	// check is the knownhosts callback over files; nil when none exists.
	check gossh.HostKeyCallback
	tofu  bool
	store KeyStore
}

func newHostKeys(files []string, tofu bool, store KeyStore) (*hostKeys, error) {
	if len(files) == 0 {
		home, err := os.UserHomeDir()
		if err == nil {
			files = []string{filepath.Join(home, ".ssh", "known_hosts")}
		}
	}
	h := &hostKeys{tofu: tofu, store: store}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// A missing file trusts nothing; any host is then unknown.
				continue
			}
			return nil, fmt.Errorf("known_hosts %s: %w", f, err)
		}
		h.files = append(h.files, f)
	}
	if len(h.files) > 0 {
		cb, err := knownhosts.New(h.files...)
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		h.check = cb
	}
	if tofu && store == nil {
		return nil, errors.New("trust_on_first_use needs a host key store")
	}
	return h, nil
}

// callback returns the HostKeyCallback for one dial; ctx bounds the pin
// store calls.
func (h *hostKeys) callback(ctx context.Context) gossh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key gossh.PublicKey) error {
		// The name as known_hosts writes it, so an error says what to add.
		name := knownhosts.Normalize(hostname)
		refuse := func(changed bool, source string) error {
			return &HostKeyError{
				Host: name, KeyType: key.Type(), Fingerprint: gossh.FingerprintSHA256(key),
				Changed: changed, Source: source, Files: h.files,
			}
		}
		if h.check != nil {
			err := h.check(hostname, remote, key)
			if err == nil {
				return nil
			}
			var ke *knownhosts.KeyError
			if !errors.As(err, &ke) {
				var re *knownhosts.RevokedError
				if errors.As(err, &re) {
					return refuse(true, fmt.Sprintf("%s:%d (revoked)", re.Revoked.Filename, re.Revoked.Line))
				}
				if _, isCert := key.(*gossh.Certificate); isCert {
					// No known authority signed it, or it is expired or
					// names other principals.
					hk := refuse(false, "").(*HostKeyError)
					hk.Reason = err.Error()
					return hk
				}
				return err
			}
			if len(ke.Want) > 0 {
				return refuse(true, fmt.Sprintf("%s:%d", ke.Want[0].Filename, ke.Want[0].Line))
			}
		}
		if !h.tofu {
			return refuse(false, "")
		}
		return h.pin(ctx, name, key, refuse)
	}
}

func (h *hostKeys) pin(ctx context.Context, host string, key gossh.PublicKey, refuse func(bool, string) error) error {
	// Two tries: a Put that loses a race to another worker reads the winner.
	for range 2 {
		pinned, err := h.store.Get(ctx, host)
		switch {
		case err == nil:
			pk, _, _, _, perr := gossh.ParseAuthorizedKey(pinned)
			if perr != nil {
				return fmt.Errorf("pinned host key for %s is unreadable: %w", host, perr)
			}
			if bytes.Equal(pk.Marshal(), key.Marshal()) {
				return nil
			}
			return refuse(true, "the trust-on-first-use pin store")
		case errors.Is(err, ErrKeyNotFound):
			err = h.store.Put(ctx, host, gossh.MarshalAuthorizedKey(key))
			if err == nil {
				return nil
			}
			if !errors.Is(err, ErrKeyExists) {
				return fmt.Errorf("pin host key for %s: %w", host, err)
			}
		default:
			return fmt.Errorf("read pinned host key for %s: %w", host, err)
		}
	}
	return fmt.Errorf("pin host key for %s: store keeps changing", host)
}

// algorithms returns the host key algorithms to ask hostname for, so a server
// with several host keys offers the one known_hosts holds. Nil means the
// library's default order.
func (h *hostKeys) algorithms(ctx context.Context, hostname string) []string {
	var types []string
	if h.check != nil {
		// A key no file can hold makes the callback list every known key.
		err := h.check(hostname, &net.TCPAddr{IP: net.IPv4zero}, probeKey{})
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			for _, k := range ke.Want {
				if h.isAuthority(hostname, k.Key) {
					// The host proves itself with a certificate; the
					// library's default order offers certificates first.
					return nil
				}
				types = append(types, k.Key.Type())
			}
		}
	}
	if len(types) == 0 && h.tofu {
		if pinned, err := h.store.Get(ctx, knownhosts.Normalize(hostname)); err == nil {
			if pk, _, _, _, err := gossh.ParseAuthorizedKey(pinned); err == nil {
				types = append(types, pk.Type())
			}
		}
	}
	var algos []string
	seen := map[string]bool{}
	for _, t := range types {
		for _, a := range algorithmsFor(t) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// isAuthority reports whether key is a @cert-authority for hostname. The
// knownhosts package lists such keys among the known ones without saying so;
// a certificate signed by the key reaches the signature check only when the
// key is an authority for the host.
func (h *hostKeys) isAuthority(hostname string, key gossh.PublicKey) bool {
	probe := &gossh.Certificate{Key: key, CertType: gossh.HostCert, SignatureKey: key}
	err := h.check(hostname, &net.TCPAddr{IP: net.IPv4zero}, probe)
	return err != nil && !strings.Contains(err.Error(), "no authorities for hostname")
}

func algorithmsFor(keyType string) []string {
	switch keyType {
	case gossh.KeyAlgoRSA:
		return []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256, gossh.KeyAlgoRSA}
	case gossh.CertAlgoRSAv01:
		return []string{gossh.CertAlgoRSASHA512v01, gossh.CertAlgoRSASHA256v01, gossh.CertAlgoRSAv01}
	}
	return []string{keyType}
}

// probeKey is a public key of a type no known_hosts line holds.
type probeKey struct{}

func (probeKey) Type() string                          { return "quiesce-probe" }
func (probeKey) Marshal() []byte                       { return []byte("quiesce-probe") }
func (probeKey) Verify([]byte, *gossh.Signature) error { return errors.New("probe key") }
