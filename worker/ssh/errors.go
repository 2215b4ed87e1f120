package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/worker/errclass"
)

// Error codes, stable strings for metric labels (errclass.Coder).
const (
	CodeConnect   = "connect"   // TCP connect failed: refused, unreachable, reset
	CodeHandshake = "handshake" // the SSH handshake failed for a reason other than auth or host key
	CodeAuth      = "auth"      // the server refused every credential
	CodeHostKey   = "hostkey"   // the host key is unknown or changed
	CodeTimeout   = "timeout"   // connect, handshake or command deadline passed
	CodeCancelled = "cancelled" // the caller cancelled
	CodeSession   = "session"   // the connection broke while a command ran
	CodeExit      = "exit"      // the command ran and exited non-zero
	CodeConfig    = "config"    // the executor's own settings are wrong (missing key file, bad bastion)
)

// Codes lists every error code the executor reports: a worker's metrics
// start each at zero.
var Codes = []string{CodeConnect, CodeHandshake, CodeAuth, CodeHostKey, CodeTimeout, CodeCancelled, CodeSession, CodeExit, CodeConfig}

// Error is a failure to run a command on a host, classified by Code.
type Error struct {
	// Op is what was being done: "dial", "handshake", "session", "run".
	Op   string
	Host string
	// Class is one of the Code* constants.
	Class string
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("ssh %s %s: %v", e.Op, e.Host, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Code returns the failure class, for metric labels.
func (e *Error) Code() string { return e.Class }

// Transient reports whether the same command may succeed when retried.
func (e *Error) Transient() bool {
	switch e.Class {
	case CodeConnect, CodeHandshake, CodeTimeout, CodeSession:
		return true
	}
	return false
}

// HostKeyError refuses a host key that is not trusted.
type HostKeyError struct {
	Host string
	// KeyType is the offered key's algorithm, e.g. "ssh-ed25519".
	KeyType string
	// Fingerprint is the offered key's SHA256 fingerprint, "SHA256:…".
	Fingerprint string
	// Changed is true when a different key is known (or pinned) for Host;
	// false when no key is known at all.
	Changed bool
	// Source names where the trusted key came from (a known_hosts file and
	// line, or the pin store), as it was when the key was refused: the files
	// are read again before a refusal.
	Source string
	// TrustedKeyType and TrustedFingerprint are the key Source holds, when
	// Changed.
	TrustedKeyType     string
	TrustedFingerprint string
	// Files are the known_hosts files that were searched.
	Files []string
	// Reason says why a host certificate was refused.
	Reason string
}

func (e *HostKeyError) Error() string {
	if e.Changed {
		trusted := "the key"
		if e.TrustedFingerprint != "" {
			trusted = fmt.Sprintf("the %s key %s", e.TrustedKeyType, e.TrustedFingerprint)
		}
		return fmt.Sprintf("host key for %s changed: offered %s key %s does not match %s trusted in %s "+
			"(possible man-in-the-middle: check the node's key on the node itself, then correct known_hosts; "+
			"running workers read it again, no restart needed)",
			e.Host, e.KeyType, e.Fingerprint, trusted, e.Source)
	}
	if e.Reason != "" {
		return fmt.Sprintf("host certificate for %s is not trusted: %s key %s: %s", e.Host, e.KeyType, e.Fingerprint, e.Reason)
	}
	where := "no known_hosts file exists"
	if len(e.Files) > 0 {
		where = "it is in none of " + strings.Join(e.Files, ", ")
	}
	return fmt.Sprintf("host key for %s is not trusted: %s key %s; %s (add it after checking it on the node; running workers read known_hosts again, no restart needed; or enable trust_on_first_use)",
		e.Host, e.KeyType, e.Fingerprint, where)
}

// Code returns "hostkey".
func (e *HostKeyError) Code() string { return CodeHostKey }

// classify wraps err from op on host into an *Error with its class, and marks
// permanent failures with errclass.Permanent. ctx is the caller's context: a
// failure after it ended is a timeout or a cancellation, whatever the
// network said.
func classify(ctx context.Context, op, host string, err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	class := classOf(ctx, op, err)
	e := &Error{Op: op, Host: host, Class: class, Err: err}
	if e.Transient() {
		return e
	}
	if class == CodeCancelled {
		// Not permanent: the task was stopped, not judged; the runtime
		// decides from context.Cause what to do with it.
		return e
	}
	return errclass.Permanent(e)
}

func classOf(ctx context.Context, op string, err error) string {
	var hk *HostKeyError
	if errors.As(err, &hk) {
		return CodeHostKey
	}
	if ctx != nil && ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return CodeTimeout
		}
		return CodeCancelled
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return CodeTimeout
	case errors.Is(err, context.Canceled):
		return CodeCancelled
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return CodeTimeout
	}
	msg := err.Error()
	if strings.Contains(msg, "unable to authenticate") || strings.Contains(msg, "no supported methods remain") {
		return CodeAuth
	}
	var pe *os.PathError
	if op == "config" || (errors.As(err, &pe) && !errors.Is(err, syscall.ECONNREFUSED)) {
		return CodeConfig
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ECONNABORTED):
		return CodeConnect
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		if op == "dial" {
			return CodeConnect
		}
		if op == "handshake" {
			return CodeHandshake
		}
		return CodeSession
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return CodeConnect
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return CodeConnect
	}
	var em *gossh.ExitMissingError
	if errors.As(err, &em) {
		return CodeSession
	}
	switch op {
	case "dial":
		return CodeConnect
	case "handshake":
		return CodeHandshake
	}
	return CodeSession
}
