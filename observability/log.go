package observability

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// LogLevelEnv names the environment variable that sets the log level when no
// flag does.
const LogLevelEnv = "QUIESCE_LOG_LEVEL"

// NewLogger returns the process's logger writing to w. level is a zerolog
// level ("debug", "info", "warn", "error"); empty falls back to
// $QUIESCE_LOG_LEVEL, then "info". format is "json", "console", or empty or
// "auto" for console on a terminal and JSON otherwise, so people at a shell
// read lines while collectors get one JSON object per line.
func NewLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	if level == "" {
		level = os.Getenv(LogLevelEnv)
	}
	if level == "" {
		level = "info"
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Nop(), fmt.Errorf("log level %q: want trace, debug, info, warn, error, fatal, panic or disabled", level)
	}
	switch format {
	case "", "auto":
		if isTerminal(w) {
			w = consoleWriter(w)
		}
	case "console":
		w = consoleWriter(w)
	case "json":
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: want json, console or auto", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

func consoleWriter(w io.Writer) io.Writer {
	return zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// Secret holds a value that must never be logged: it prints, marshals and
// logs as "[REDACTED]". Wrap credentials in it before they can reach a log
// call or an error string.
type Secret string

const redacted = "[REDACTED]"

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer, so %#v hides the value too.
func (Secret) GoString() string { return redacted }

// MarshalText implements encoding.TextMarshaler (JSON, YAML and zerolog's
// Interface use it).
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal returns the value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Patterns of secrets that may hide in free text such as an error from a
// library: URL passwords, key=value credentials, PEM private keys, NATS
// seeds and JWTs, and AWS secret keys. Each replacement keeps enough context
// for the line to stay useful.
var redactions = []struct {
	re   *regexp.Regexp
	repl string
}{
	// scheme://user:password@host
	{regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):[^@\s/]+@`), "${1}:" + redacted + "@"},
	// password=..., token: ..., secret_access_key=...
	{regexp.MustCompile(`(?i)\b([a-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|credentials?)[a-z0-9_.-]*)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)`), "${1}${2}" + redacted},
	// PEM private keys, whole block
	{regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`), redacted},
	// NATS nkey seeds: "S" + key type + base32
	{regexp.MustCompile(`\bS[ANOUCPX][A-Z2-7]{56}\b`), redacted},
	// JWTs (NATS user JWTs, bearer tokens)
	{regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+`), redacted},
	// AWS secret access keys: 40 base64 characters next to an access key
	// ID are the classic leak; a bare 40-char run is too ambiguous to touch.
	{regexp.MustCompile(`\b((?:AKIA|ASIA)[A-Z0-9]{16})([\s:,/]+)[A-Za-z0-9/+]{40}\b`), "${1}${2}" + redacted},
}

// Redact masks secrets that may appear in free text (error messages, command
// output, URLs) before it is logged or shown.
func Redact(s string) string {
	for _, r := range redactions {
		s = r.re.ReplaceAllString(s, r.repl)
	}
	return s
}
