package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/quiesce/quiesce/worker/errclass"
)

// hostKeys decides whether a host key is trusted: known_hosts files first,
// then, in trust-on-first-use mode only, the pin store. The files are read
// again when they change, and always before a key is refused, so a corrected
// known_hosts reaches a running worker and a refusal quotes the files as
// they are.
type hostKeys struct {
	trust *watchedFiles[*knownHostsSet]
	tofu  bool
	store KeyStore
}

// knownHostsSet is what the configured known_hosts files held when read.
type knownHostsSet struct {
	// files are those of the configured files that exist.
	files []string
	// check is the knownhosts callback over files; nil when none exists.
	check gossh.HostKeyCallback
}

func newHostKeys(files []string, tofu bool, store KeyStore) (*hostKeys, error) {
	if len(files) == 0 {
		home, err := os.UserHomeDir()
		if err == nil {
			files = []string{filepath.Join(home, ".ssh", "known_hosts")}
		}
	}
	if tofu && store == nil {
		return nil, errors.New("trust_on_first_use needs a host key store")
	}
	files = slices.Clone(files)
	h := &hostKeys{tofu: tofu, store: store}
	h.trust = newWatchedFiles(files, func() (*knownHostsSet, error) { return readKnownHosts(files) })
	if _, err := h.trust.get(); err != nil {
		return nil, err
	}
	return h, nil
}

// readKnownHosts reads the configured files that exist. A missing file
// trusts nothing, and may appear later.
func readKnownHosts(files []string) (*knownHostsSet, error) {
	set := &knownHostsSet{}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("known_hosts %s: %w", f, err)
		}
		set.files = append(set.files, f)
	}
	if len(set.files) > 0 {
		cb, err := knownhosts.New(set.files...)
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		set.check = cb
	}
	return set, nil
}

// current returns the known_hosts files as they are now, or an error naming
// the file that cannot be read.
func (h *hostKeys) current() (*knownHostsSet, error) {
	set, err := h.trust.get()
	if err != nil {
		return nil, errclass.Permanent(&Error{Op: "config", Class: CodeConfig, Err: err})
	}
	return set, nil
}

// callback returns the HostKeyCallback for one dial; ctx bounds the pin
// store calls.
func (h *hostKeys) callback(ctx context.Context) gossh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key gossh.PublicKey) error {
		set, err := h.current()
		if err != nil {
			return err
		}
		verr := h.verify(ctx, set, hostname, remote, key)
		var hk *HostKeyError
		if !errors.As(verr, &hk) {
			return verr
		}
		// Before refusing, the files are read again whatever their
		// metadata says: an edit can keep a file's size and times, and the
		// refusal must quote the files as they are now.
		fresh, changed, err := h.trust.reread()
		if err != nil {
			return errclass.Permanent(&Error{Op: "config", Class: CodeConfig, Err: err})
		}
		if !changed {
			return verr
		}
		return h.verify(ctx, fresh, hostname, remote, key)
	}
}

// verify checks key against set, then the pin store.
func (h *hostKeys) verify(ctx context.Context, set *knownHostsSet, hostname string, remote net.Addr, key gossh.PublicKey) error {
	// The name as known_hosts writes it, so an error says what to add.
	name := knownhosts.Normalize(hostname)
	refuse := func(changed bool, source string, trusted gossh.PublicKey) *HostKeyError {
		hk := &HostKeyError{
			Host: name, KeyType: key.Type(), Fingerprint: gossh.FingerprintSHA256(key),
			Changed: changed, Source: source, Files: set.files,
		}
		if trusted != nil {
			hk.TrustedKeyType, hk.TrustedFingerprint = trusted.Type(), gossh.FingerprintSHA256(trusted)
		}
		return hk
	}
	if set.check != nil {
		err := set.check(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			var re *knownhosts.RevokedError
			if errors.As(err, &re) {
				return refuse(true, fmt.Sprintf("%s:%d (revoked)", re.Revoked.Filename, re.Revoked.Line), re.Revoked.Key)
			}
			if _, isCert := key.(*gossh.Certificate); isCert {
				// No known authority signed it, or it is expired or
				// names other principals.
				hk := refuse(false, "", nil)
				hk.Reason = err.Error()
				return hk
			}
			return err
		}
		if len(ke.Want) > 0 {
			return refuse(true, fmt.Sprintf("%s:%d", ke.Want[0].Filename, ke.Want[0].Line), ke.Want[0].Key)
		}
	}
	if !h.tofu {
		return refuse(false, "", nil)
	}
	return h.pin(ctx, name, key, func(changed bool, source string, trusted gossh.PublicKey) error {
		return refuse(changed, source, trusted)
	})
}

func (h *hostKeys) pin(ctx context.Context, host string, key gossh.PublicKey, refuse func(bool, string, gossh.PublicKey) error) error {
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
			return refuse(true, "the trust-on-first-use pin store", pk)
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
	set, err := h.current()
	if err == nil && set.check != nil {
		// A key no file can hold makes the callback list every known key.
		err := set.check(hostname, &net.TCPAddr{IP: net.IPv4zero}, probeKey{})
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			for _, k := range ke.Want {
				if isAuthority(set.check, hostname, k.Key) {
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
func isAuthority(check gossh.HostKeyCallback, hostname string, key gossh.PublicKey) bool {
	probe := &gossh.Certificate{Key: key, CertType: gossh.HostCert, SignatureKey: key}
	err := check(hostname, &net.TCPAddr{IP: net.IPv4zero}, probe)
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
