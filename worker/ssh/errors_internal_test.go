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
	"testing"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/worker/errclass"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	expired, cancel := context.WithTimeout(t.Context(), 0)
	defer cancel()
	stopped, stop := context.WithCancel(t.Context())
	stop()
	dialErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tc := range []struct {
		desc      string
		ctx       context.Context
		op        string
		err       error
		code      string
		permanent bool
	}{
		{desc: "refused", op: "dial", err: dialErr(syscall.ECONNREFUSED), code: CodeConnect},
		{desc: "no route", op: "dial", err: dialErr(syscall.EHOSTUNREACH), code: CodeConnect},
		{desc: "network down", op: "dial", err: dialErr(syscall.ENETUNREACH), code: CodeConnect},
		{desc: "dns", op: "dial", err: &net.DNSError{Err: "no such host", Name: "x"}, code: CodeConnect},
		{desc: "dial timeout", ctx: expired, op: "dial", err: errors.New("i/o timeout"), code: CodeTimeout},
		{desc: "deadline", op: "handshake", err: fmt.Errorf("read: %w", os.ErrDeadlineExceeded), code: CodeTimeout},
		{desc: "reset in handshake", op: "handshake", err: fmt.Errorf("ssh: handshake failed: %w", syscall.ECONNRESET), code: CodeHandshake},
		{desc: "eof in handshake", op: "handshake", err: fmt.Errorf("ssh: handshake failed: %w", io.EOF), code: CodeHandshake},
		{desc: "no common algorithm", op: "handshake", err: errors.New("ssh: handshake failed: ssh: no common algorithm for host key"), code: CodeHandshake},
		{desc: "auth", op: "handshake", err: errors.New("ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain"), code: CodeAuth, permanent: true},
		{desc: "unknown host key", op: "handshake", err: fmt.Errorf("ssh: handshake failed: %w", &HostKeyError{Host: "h"}), code: CodeHostKey, permanent: true},
		{desc: "changed host key after deadline", ctx: expired, op: "handshake", err: &HostKeyError{Host: "h", Changed: true}, code: CodeHostKey, permanent: true},
		{desc: "session eof", op: "run", err: io.EOF, code: CodeSession},
		{desc: "exit missing", op: "run", err: &gossh.ExitMissingError{}, code: CodeSession},
		{desc: "cancelled", ctx: stopped, op: "run", err: context.Canceled, code: CodeCancelled},
		{desc: "command timeout", ctx: expired, op: "run", err: errors.New("stopped"), code: CodeTimeout},
		{desc: "missing key file", op: "config", err: &os.PathError{Op: "open", Path: "/k", Err: os.ErrNotExist}, code: CodeConfig, permanent: true},
	} {
		ctx := tc.ctx
		if ctx == nil {
			ctx = t.Context()
		}
		err := classify(ctx, tc.op, "10.0.0.1:22", tc.err)
		require.Equal(t, tc.code, errclass.Code(err), tc.desc)
		require.Equal(t, tc.permanent, errclass.IsPermanent(err), tc.desc)
		require.ErrorIs(t, err, tc.err, tc.desc)
		require.Contains(t, err.Error(), "10.0.0.1:22", tc.desc)
	}
	require.NoError(t, classify(t.Context(), "run", "h", nil))
}

// FuzzRemoteCommand checks that whatever words a command has, the string
// sent to the remote shell is the fixed wrapper followed by every word
// single-quoted: no input reaches the shell unquoted.
func FuzzRemoteCommand(f *testing.F) {
	f.Add("nodetool", "snapshot", "-t x", "'; reboot; '")
	f.Add("$(id)", "`id`", "a\nb", "\\'")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		words := []string{a, b, c, d}
		s := remoteCommand(words)
		prefix := "exec sh -c " + quoteWord(wrapper) + " quiesce-run "
		rest, ok := strings.CutPrefix(s, prefix)
		if !ok {
			t.Fatalf("wrapper not at the front of %q", s)
		}
		got, err := unquote(rest)
		if err != nil {
			t.Fatalf("%q: %v", rest, err)
		}
		if len(got) != len(words) {
			t.Fatalf("shell reads %q, want %q", got, words)
		}
		for i := range words {
			if got[i] != words[i] {
				t.Fatalf("word %d: shell reads %q, want %q", i, got[i], words[i])
			}
		}
	})
}

// quoteWord is the reference quoting: single quotes, each ' as '\”.
func quoteWord(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// unquote reads space-separated words built only of '…' and \' pieces;
// any other character outside quotes is an unquoted metacharacter.
func unquote(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' && in:
			words = append(words, cur.String())
			cur.Reset()
			in = false
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			in = true
		case c == '\\' && i+1 < len(s) && s[i+1] == '\'':
			cur.WriteByte('\'')
			i++
			in = true
		default:
			return nil, fmt.Errorf("unquoted %q at offset %d", c, i)
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
