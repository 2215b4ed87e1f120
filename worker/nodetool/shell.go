package nodetool

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// envKeyPattern is what a variable name set through "env K=V" may look like:
// anything else could be read by env as an option or a command.
var envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// Words returns the command as the words a remote shell must see:
// ["sudo" "-n" "--"] ["env" "K=V" ...] argv. Env keys are validated and sorted
// so the same command always yields the same words.
func (c Command) Words() ([]string, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return nil, errors.New("nodetool: empty command")
	}
	prog := c.Argv[0]
	// env and sudo would read such a program name as an assignment or an option.
	if strings.HasPrefix(prog, "-") || strings.Contains(prog, "=") {
		return nil, fmt.Errorf("nodetool: program name %q must not start with '-' or contain '='", prog)
	}
	for _, w := range c.Argv {
		if strings.IndexByte(w, 0) >= 0 {
			return nil, errors.New("nodetool: argument contains a NUL byte")
		}
	}
	var words []string
	if c.Sudo {
		words = append(words, "sudo", "-n", "--")
	}
	if len(c.Env) > 0 {
		keys := make([]string, 0, len(c.Env))
		for k, v := range c.Env {
			if !envKeyPattern.MatchString(k) {
				return nil, fmt.Errorf("nodetool: environment variable name %q is invalid", k)
			}
			if strings.IndexByte(v, 0) >= 0 {
				return nil, fmt.Errorf("nodetool: environment variable %s contains a NUL byte", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		words = append(words, "env")
		for _, k := range keys {
			words = append(words, k+"="+c.Env[k])
		}
	}
	return append(words, c.Argv...), nil
}

// ShellString returns the command as one string for a POSIX shell, every word
// quoted by Quote.
func (c Command) ShellString() (string, error) {
	words, err := c.Words()
	if err != nil {
		return "", err
	}
	return Join(words), nil
}

// Quote returns s as one single-quoted POSIX shell word. Inside single quotes
// nothing is special except the quote itself, which is written as '\”.
// The empty string becomes ”.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes every word and joins them with spaces.
func Join(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Quote(w))
	}
	return b.String()
}
