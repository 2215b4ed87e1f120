package ssh

import "time"

// Config is how an executor reaches one cluster's nodes. Zero values take the
// defaults named in comments.
type Config struct {
	// User logs in on the nodes (and on the bastion unless it names its
	// own); default the local user name, as ssh(1).
	User string
	// Port of the nodes' SSH servers, unless a node's address names one;
	// default DefaultPort.
	Port int
	// IdentityFiles are private keys (ed25519, ECDSA or RSA). A certificate
	// beside a key as "<key>-cert.pub" is used with it.
	IdentityFiles []string
	// PassphraseEnv names an environment variable, or PassphraseFile a file,
	// holding the passphrase of encrypted identity files.
	PassphraseEnv  string
	PassphraseFile string
	// Agent adds the keys of the ssh-agent at $SSH_AUTH_SOCK.
	Agent bool
	// KnownHosts files hold the trusted host keys; default
	// ~/.ssh/known_hosts.
	KnownHosts []string
	// TrustOnFirstUse pins the first key a host shows in Options.KeyStore
	// and refuses a later change.
	TrustOnFirstUse bool
	// Bastion is a jump host, "[user@]host[:port]".
	Bastion string
	// ConnectTimeout bounds dialling a node (and, unless
	// Options.HandshakeTimeout says otherwise, the handshake); default
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// CommandTimeout bounds one command; default DefaultCommandTimeout.
	CommandTimeout time.Duration
	// KeepaliveInterval is how often an idle connection is probed; default
	// DefaultKeepaliveInterval.
	KeepaliveInterval time.Duration
	// MaxSessionsPerHost bounds concurrent sessions on one node; default
	// DefaultMaxSessionsPerHost.
	MaxSessionsPerHost int
}

// orDefault is d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
