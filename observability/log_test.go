package observability

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewLoggerJSONByDefault(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "debug", "")
	require.NoError(t, err)
	log.Debug().Str("job_id", "c1-abc").Msg("planned")

	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	require.Equal(t, "debug", line["level"])
	require.Equal(t, "c1-abc", line["job_id"])
	require.Equal(t, "planned", line["message"])
	require.Contains(t, line, "time")
}

func TestNewLoggerLevelAndFormat(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "WARN", "json")
	require.NoError(t, err)
	log.Info().Msg("hidden")
	log.Warn().Msg("shown")
	require.NotContains(t, buf.String(), "hidden")
	require.Contains(t, buf.String(), "shown")

	buf.Reset()
	log, err = NewLogger(&buf, "info", "console")
	require.NoError(t, err)
	log.Info().Str("cluster", "c1").Msg("hello")
	require.Contains(t, buf.String(), "cluster=c1")
	require.False(t, json.Valid(buf.Bytes()))

	_, err = NewLogger(&buf, "loud", "")
	require.ErrorContains(t, err, `log level "loud"`)
	_, err = NewLogger(&buf, "info", "xml")
	require.ErrorContains(t, err, `log format "xml"`)
}

// Not parallel: it sets the environment.
func TestNewLoggerLevelFromEnv(t *testing.T) {
	t.Setenv(LogLevelEnv, "error")
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "", "json")
	require.NoError(t, err)
	log.Warn().Msg("hidden")
	require.Empty(t, buf.String())

	// A flag wins over the environment.
	log, err = NewLogger(&buf, "warn", "json")
	require.NoError(t, err)
	log.Warn().Msg("shown")
	require.Contains(t, buf.String(), "shown")
}

func TestRedact(t *testing.T) {
	t.Parallel()
	seed := "SUAM" + strings.Repeat("A", 54)
	jwt := "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJBQkNERUZHSCJ9.c2lnbmF0dXJlX2hlcmU"
	for _, tc := range []struct {
		desc, in, want string
	}{
		{"url password", "dial nats://svc:s3cr3t@nats-0:4222 failed", "dial nats://svc:[REDACTED]@nats-0:4222 failed"},
		{"url without password", "dial nats://nats-0:4222 failed", "dial nats://nats-0:4222 failed"},
		{"key=value", "password=hunter2 user=bob", "password=[REDACTED] user=bob"},
		{"quoted", `aws_secret_access_key: "abc def"`, "aws_secret_access_key: [REDACTED]"},
		{"token header", "X-Auth-Token=abc123, next", "X-Auth-Token=[REDACTED], next"},
		{"pem", "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\ndone", "key:\n[REDACTED]\ndone"},
		{"truncated pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow", "[REDACTED]"},
		{"nkey seed", "seed " + seed + " loaded", "seed [REDACTED] loaded"},
		{"jwt", "jwt " + jwt, "jwt [REDACTED]"},
		{"aws pair", "AKIAABCDEFGHIJKLMNOP:" + strings.Repeat("x", 40), "AKIAABCDEFGHIJKLMNOP:[REDACTED]"},
		{"plain", "nodetool exited 2 on node-1", "nodetool exited 2 on node-1"},
		{"public key untouched", "host key ssh-ed25519 SHA256:abcd mismatch", "host key ssh-ed25519 SHA256:abcd mismatch"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Redact(tc.in))
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	s := Secret("hunter2")
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "info", "json")
	require.NoError(t, err)
	log.Info().Interface("password", s).Stringer("token", s).Msg("connect")
	out := buf.String() + fmt.Sprintf("%v %s %+v %#v", s, s, s, s)
	b, err := json.Marshal(struct{ P Secret }{s})
	require.NoError(t, err)
	out += string(b)
	require.NotContains(t, out, "hunter2")
	require.Equal(t, "hunter2", s.Reveal())
}

// Secrets inside error strings of libraries are masked in the log line
// itself, and the line stays valid JSON (or readable console output).
func TestLoggerRedactsSecretsInLines(t *testing.T) {
	t.Parallel()
	seed := "SUAM" + strings.Repeat("B", 54)
	inputs := map[string]string{
		"url":       "dial nats://svc:s3cr3t@nats-0:4222: connection refused",
		"kv":        "auth failed: password=s3cr3t, retry",
		"quoted":    `config: token="s3cr3t" rejected`,
		"pem":       "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\ns3cr3t\n-----END OPENSSH PRIVATE KEY-----\nend",
		"cut pem":   "-----BEGIN RSA PRIVATE KEY-----\ns3cr3t",
		"seed":      "bad seed " + seed,
		"secret kv": `secret: 's3cr3t'`,
	}
	for _, format := range []string{"json", "console"} {
		var buf bytes.Buffer
		log, err := NewLogger(&buf, "info", format)
		require.NoError(t, err)
		for name, in := range inputs {
			buf.Reset()
			log.Error().Err(errors.New(in)).Str("detail", in).Msg(in)
			out := buf.String()
			require.NotContains(t, out, "s3cr3t", "%s %s: %s", format, name, out)
			require.NotContains(t, out, seed, "%s %s", format, name)
			require.Contains(t, out, redacted, "%s %s", format, name)
			if format == "json" {
				var v map[string]any
				require.NoError(t, json.Unmarshal(buf.Bytes(), &v), "%s: %s", name, out)
				require.Equal(t, "error", v["level"])
			}
		}
	}
}

func BenchmarkLoggerLine(b *testing.B) {
	log, err := NewLogger(io.Discard, "info", "json")
	require.NoError(b, err)
	for b.Loop() {
		log.Info().Str("job_id", "c1-0123456789ab").Str("task_id", "c1-0123456789ab.flush.node-17").
			Str("cluster", "c1").Int("attempt", 1).Msg("task succeeded")
	}
}
