package observability

import (
	"bytes"
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
	// Redaction sees zerolog's JSON, before a console writer formats it.
	return zerolog.New(RedactingWriter(w)).Level(lvl).With().Timestamp().Logger(), nil
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

// redaction is one pattern of a secret and what replaces it.
type redaction struct {
	re   *regexp.Regexp
	repl string
	// hints are substrings one of which a match must contain (compared in
	// lower case when fold is set); a line without any skips the regexp,
	// which keeps the common line cheap.
	hints []string
	fold  bool
	// check, when set, is a cheaper test that must pass before the regexp
	// runs.
	check func([]byte) bool
}

// apply redacts b, reusing lower (b in lower case, computed once) for the
// case-insensitive hints.
func (r redaction) apply(b []byte, lower func() []byte) []byte {
	if r.check != nil && !r.check(b) {
		return b
	}
	if len(r.hints) > 0 {
		hay := b
		if r.fold {
			hay = lower()
		}
		found := false
		for _, h := range r.hints {
			if bytes.Contains(hay, []byte(h)) {
				found = true
				break
			}
		}
		if !found {
			return b
		}
	}
	return r.re.ReplaceAll(b, []byte(r.repl))
}

// redactAll applies rs to b.
func redactAll(rs []redaction, b []byte) []byte {
	var low []byte
	lower := func() []byte {
		if low == nil {
			low = bytes.ToLower(b)
		}
		return low
	}
	for _, r := range rs {
		before := len(b)
		b = r.apply(b, lower)
		if len(b) != before {
			low = nil
		}
	}
	return b
}

// redactions builds the patterns of secrets that may hide in free text such
// as an error from a library: URL passwords, key=value credentials, PEM
// private keys, NATS seeds and JWTs, and AWS secret keys. Each replacement
// keeps enough context for the line to stay useful. In JSON mode no pattern
// crosses an unescaped double quote, so a redacted JSON log line stays valid
// JSON.
func redactions(jsonMode bool) []redaction {
	value := `\\"[^"\\]*\\"|"[^"]*"|'[^']*'|[^\s,;&"\\]+`
	pem := `-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`
	if jsonMode {
		// Inside a JSON string a quote is escaped; a bare one ends it.
		value = `\\"[^"\\]*\\"|'[^'"]*'|[^\s,;&"\\]+`
		// The block ends at its END line or, cut short, at the end of the
		// JSON string; either way the string's closing quote stays.
		pem = `-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:(?:[^"\\]|\\.)*?-----END [A-Z0-9 ]*PRIVATE KEY-----|(?:[^"\\]|\\.)*)`
	}
	return []redaction{
		// scheme://user:password@host
		{re: regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@"]*):[^@\s/"]+@`), repl: "${1}:" + redacted + "@",
			hints: []string{"://"}},
		// password=..., token: ..., secret_access_key=...
		{re: regexp.MustCompile(`(?i)\b([a-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|credentials?)[a-z0-9_.-]*)(\s*[=:]\s*)(` + value + `)`), repl: "${1}${2}" + redacted,
			hints: []string{"passw", "passphrase", "secret", "token", "key", "credential"}, fold: true},
		// PEM private keys, whole block
		{re: regexp.MustCompile(pem), repl: redacted, hints: []string{"PRIVATE KEY-----"}},
		// NATS nkey seeds: "S" + key type + base32
		{re: regexp.MustCompile(`\bS[ANOUCPX][A-Z2-7]{56}\b`), repl: redacted, check: hasBase32Run},
		// JWTs (NATS user JWTs, bearer tokens)
		{re: regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+`), repl: redacted, hints: []string{"eyJ"}},
		// AWS secret access keys: 40 base64 characters next to an access key
		// ID are the classic leak; a bare 40-char run is too ambiguous to touch.
		{re: regexp.MustCompile(`\b((?:AKIA|ASIA)[A-Z0-9]{16})([\s:,/]+)[A-Za-z0-9/+]{40}\b`), repl: "${1}${2}" + redacted,
			hints: []string{"AKIA", "ASIA"}},
	}
}

// hasBase32Run reports whether b holds 58 consecutive base32 characters, the
// length of an nkey seed: a scan far cheaper than the seed's regexp.
func hasBase32Run(b []byte) bool {
	n := 0
	for _, c := range b {
		if (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7') {
			n++
			if n >= 58 {
				return true
			}
		} else {
			n = 0
		}
	}
	return false
}

var (
	textRedactions = redactions(false)
	jsonRedactions = redactions(true)
)

// Redact masks secrets that may appear in free text (error messages, command
// output, URLs) before it is logged or shown.
func Redact(s string) string {
	return string(redactAll(textRedactions, []byte(s)))
}

// RedactingWriter returns a writer that masks secrets in every JSON log line
// before passing it on: the safety net under Secret and Redact for a secret
// that reaches a log through an error string of some library. zerolog writes
// one event per Write, and the result is still one valid JSON object.
func RedactingWriter(w io.Writer) io.Writer { return redactingWriter{w} }

type redactingWriter struct{ w io.Writer }

func (r redactingWriter) Write(p []byte) (int, error) {
	out := redactAll(jsonRedactions, p)
	if _, err := r.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
