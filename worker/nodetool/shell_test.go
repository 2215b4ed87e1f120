package nodetool_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/worker/nodetool"
)

// splitQuoted reads s as a POSIX shell would, allowing only what Join may
// produce: words of single-quoted text and \' joined without space, separated
// by single spaces. Any other character outside quotes (a metacharacter, a
// glob, a variable) is an error: it would reach the shell unquoted.
func splitQuoted(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ':
			if !inWord {
				return nil, errors.New("empty word or double space")
			}
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '\\' && i+1 < len(s) && s[i+1] == '\'':
			cur.WriteByte('\'')
			i++
			inWord = true
		default:
			return nil, errors.New("unquoted " + string(c) + " at " + s[:i])
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestQuote(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"abc", "'abc'"},
		{"it's", `'it'\''s'`},
		{"$(id)", "'$(id)'"},
		{"a b", "'a b'"},
		{"'", `''\'''`},
	} {
		require.Equal(t, tc.want, nodetool.Quote(tc.in), tc.in)
	}
}

func TestWords(t *testing.T) {
	t.Parallel()
	cmd := nodetool.Command{
		Argv: []string{"/opt/cassandra/bin/nodetool", "snapshot", "-t", "tag"},
		Env:  map[string]string{"JAVA_HOME": "/opt/java", "CASSANDRA_CONF": "/etc/cassandra"},
		Sudo: true,
	}
	words, err := cmd.Words()
	require.NoError(t, err)
	require.Equal(t, []string{"sudo", "-n", "--", "env", "CASSANDRA_CONF=/etc/cassandra", "JAVA_HOME=/opt/java",
		"/opt/cassandra/bin/nodetool", "snapshot", "-t", "tag"}, words)
	s, err := cmd.ShellString()
	require.NoError(t, err)
	require.Equal(t, "'sudo' '-n' '--' 'env' 'CASSANDRA_CONF=/etc/cassandra' 'JAVA_HOME=/opt/java' '/opt/cassandra/bin/nodetool' 'snapshot' '-t' 'tag'", s)

	for name, bad := range map[string]nodetool.Command{
		"empty":          {},
		"empty program":  {Argv: []string{""}},
		"option program": {Argv: []string{"-rf"}},
		"assignment":     {Argv: []string{"A=B"}, Env: map[string]string{"X": "y"}},
		"bad env key":    {Argv: []string{"x"}, Env: map[string]string{"A B": "y"}},
		"env key option": {Argv: []string{"x"}, Env: map[string]string{"-i": "y"}},
		"env key equals": {Argv: []string{"x"}, Env: map[string]string{"A=B": "y"}},
		"nul":            {Argv: []string{"x", "a\x00b"}},
		"nul env":        {Argv: []string{"x"}, Env: map[string]string{"A": "\x00"}},
	} {
		_, err := bad.Words()
		require.Error(t, err, name)
	}
}

func FuzzShellString(f *testing.F) {
	f.Add("nodetool", "snapshot", "-t", "JAVA_HOME", "/opt/java", false)
	f.Add("/usr/bin/nodetool", "$(rm -rf /)", "`id`; echo 'x'", "K", "a'b\"c", true)
	f.Add("x", "\n", "'", "_", "", false)
	f.Fuzz(func(t *testing.T, prog, a1, a2, envKey, envVal string, sudo bool) {
		cmd := nodetool.Command{Argv: []string{prog, a1, a2}, Sudo: sudo}
		if envKey != "" {
			cmd.Env = map[string]string{envKey: envVal}
		}
		s, err := cmd.ShellString()
		if err != nil {
			return
		}
		words, err := splitQuoted(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want, err := cmd.Words()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(words, "\x00") != strings.Join(want, "\x00") || len(words) != len(want) {
			t.Fatalf("shell reads %q, want %q", words, want)
		}
		// The program is the word after env's assignments, never one of them.
		if len(cmd.Env) > 0 && words[len(words)-3] != prog {
			t.Fatalf("program %q lost in %q", prog, words)
		}
	})
}

func TestExitErrorRedactsPasswords(t *testing.T) {
	t.Parallel()
	e := &nodetool.ExitError{
		Argv:     []string{"nodetool", "-u", "admin", "-pw", "hunter2", "--password=hunter3", "snapshot"},
		ExitCode: 1,
		Out:      nodetool.Output{Stderr: []byte("error: bad credentials\n")},
	}
	msg := e.Error()
	require.NotContains(t, msg, "hunter")
	require.Contains(t, msg, "bad credentials")
	require.Equal(t, "hunter2", e.Argv[4], "the command itself is left alone")
	require.Equal(t, "exit", e.Code())
}
