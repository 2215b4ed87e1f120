package ssh

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// loadSigners reads the configured identity files. A certificate beside a key
// as "<key>-cert.pub" is offered first, then the bare key.
func loadSigners(cfg Config) ([]gossh.Signer, error) {
	var signers []gossh.Signer
	for _, path := range cfg.IdentityFiles {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("identity file: %w", err)
		}
		signer, err := gossh.ParsePrivateKey(pem)
		var missing *gossh.PassphraseMissingError
		if errors.As(err, &missing) {
			pass, perr := passphrase(cfg)
			if perr != nil {
				return nil, fmt.Errorf("identity file %s is encrypted: %w", path, perr)
			}
			signer, err = gossh.ParsePrivateKeyWithPassphrase(pem, pass)
		}
		if err != nil {
			return nil, fmt.Errorf("identity file %s: %w", path, err)
		}
		certPath := path + "-cert.pub"
		if data, err := os.ReadFile(certPath); err == nil {
			pub, _, _, _, err := gossh.ParseAuthorizedKey(data)
			if err != nil {
				return nil, fmt.Errorf("certificate %s: %w", certPath, err)
			}
			cert, ok := pub.(*gossh.Certificate)
			if !ok {
				return nil, fmt.Errorf("certificate %s: not a certificate", certPath)
			}
			cs, err := gossh.NewCertSigner(cert, signer)
			if err != nil {
				return nil, fmt.Errorf("certificate %s: %w", certPath, err)
			}
			signers = append(signers, cs)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("certificate %s: %w", certPath, err)
		}
		signers = append(signers, signer)
	}
	return signers, nil
}

func passphrase(cfg Config) ([]byte, error) {
	switch {
	case cfg.PassphraseEnv != "":
		v, ok := os.LookupEnv(cfg.PassphraseEnv)
		if !ok {
			return nil, fmt.Errorf("passphrase variable %s is not set", cfg.PassphraseEnv)
		}
		return []byte(v), nil
	case cfg.PassphraseFile != "":
		b, err := os.ReadFile(cfg.PassphraseFile)
		if err != nil {
			return nil, fmt.Errorf("passphrase file: %w", err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	return nil, errors.New("no passphrase_env or passphrase_file configured")
}

// auth holds the credentials of an executor. The identity files, their
// certificates and the passphrase file are read again when they change (a
// rotated key or a renewed certificate reaches a running worker); the agent
// is dialled per handshake and closed after it, so a restarted agent is
// picked up.
type auth struct {
	signers   *watchedFiles[[]gossh.Signer]
	agentSock string
}

// credentialFiles lists every file loadSigners reads.
func credentialFiles(cfg Config) []string {
	var files []string
	for _, path := range cfg.IdentityFiles {
		files = append(files, path, path+"-cert.pub")
	}
	if cfg.PassphraseFile != "" {
		files = append(files, cfg.PassphraseFile)
	}
	return files
}

func newAuth(cfg Config) (*auth, error) {
	a := &auth{signers: newWatchedFiles(credentialFiles(cfg), func() ([]gossh.Signer, error) { return loadSigners(cfg) })}
	signers, err := a.signers.get()
	if err != nil {
		return nil, err
	}
	if cfg.Agent {
		a.agentSock = os.Getenv("SSH_AUTH_SOCK")
		if a.agentSock == "" {
			return nil, errors.New("agent: SSH_AUTH_SOCK is not set")
		}
	}
	if len(signers) == 0 && a.agentSock == "" {
		return nil, errors.New("no identity_files and no agent: nothing to authenticate with")
	}
	return a, nil
}

// errCredentials marks a failure to read the credential files, as opposed
// to one of the agent.
var errCredentials = errors.New("credentials")

// methods returns the auth methods for one handshake and a function that
// releases what they hold.
func (a *auth) methods() ([]gossh.AuthMethod, func(), error) {
	release := func() {}
	signers, err := a.signers.get()
	if err != nil {
		return nil, release, fmt.Errorf("%w: %w", errCredentials, err)
	}
	if a.agentSock != "" {
		conn, err := net.Dial("unix", a.agentSock)
		if err != nil {
			return nil, release, fmt.Errorf("agent: %w", err)
		}
		release = func() { _ = conn.Close() }
		agentSigners, err := agent.NewClient(conn).Signers()
		if err != nil {
			release()
			return nil, func() {}, fmt.Errorf("agent: %w", err)
		}
		signers = append(slices.Clone(signers), agentSigners...)
	}
	return []gossh.AuthMethod{gossh.PublicKeys(signers...)}, release, nil
}

// reread reads the credential files again whatever their metadata says,
// and reports whether they changed.
func (a *auth) reread() bool {
	_, changed, _ := a.signers.reread()
	return changed
}
