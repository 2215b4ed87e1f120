// Package ssh runs node commands over SSH (golang.org/x/crypto/ssh): the
// node executor behind flush and clear tasks.
//
// Trust: host keys are verified against known_hosts files (default
// ~/.ssh/known_hosts, including @cert-authority and @revoked lines). An
// unknown or changed key is refused with a *HostKeyError naming the host, key
// type and SHA256 fingerprint. With Config.TrustOnFirstUse the first key seen
// is pinned in a KeyStore (a file, or the JetStream KV bucket KVBucket shared by
// the fleet) and a later change is refused; a key that known_hosts
// contradicts is never pinned. The known_hosts files are read again when
// they change (size, times, inode: an edit in place, a replaced file, a
// Kubernetes secret mount whose symlink is swapped), and always before a key
// is refused, so a corrected file reaches a running worker and a refusal
// quotes the line that refused it as the file is now.
//
// Credentials: private key files (ed25519, ECDSA, RSA; passphrase from an
// environment variable or a file), an OpenSSH certificate beside a key as
// "<key>-cert.pub", and the ssh-agent at $SSH_AUTH_SOCK. Key, certificate
// and passphrase files are read again when they change, and once more before
// a refusal by the server is reported. A bastion
// ("user@host:port") is dialled first and the node reached through it.
//
// Commands: an argv, never a shell string. Every word is single-quoted for
// the remote shell, environment variables go through "env K=V" with
// validated names, and sudo runs as "sudo -n --". The words are handed to a
// small sh wrapper that runs the command in a process group of its own and
// kills that group when the session's stdin ends, so a cancelled or timed-out
// task, or a dropped connection, leaves no nodetool (or JVM) running on the
// node, whether or not the server honours signal requests.
//
// What a node needs: a POSIX sh, setsid (util-linux; without it only the
// command's own process is stopped), and for sudo a NOPASSWD rule.
//
// Connections: one per host, shared by concurrent tasks and redialled when
// broken; keepalive@openssh.com requests detect a vanished peer. Sessions are
// bounded per host (Config.MaxSessionsPerHost, keep it at or under the server's
// MaxSessions, 10 by default in OpenSSH) and overall (Options.MaxSessions).
//
// Errors carry a Code (errclass.Coder) for metric labels: connect,
// handshake, timeout and session are transient; auth, hostkey and config are
// permanent; exit is a command that ran and failed (*nodetool.ExitError);
// cancelled is a task stopped by its caller.
package ssh
