package cassandra

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RequireIntegrationEnv turns a missing Java or Maven into a failure instead
// of a skip. It is the switch of internal/testenv (RequireIntegrationEnv),
// read here directly so that this kit depends on no other test kit.
const RequireIntegrationEnv = "QUIESCE_REQUIRE_INTEGRATION"

// What to install, in the words a Debian machine understands.
const (
	installJava  = "apt-get install openjdk-17-jdk-headless"
	installMaven = "apt-get install maven"
)

// ErrJavaMissing and ErrMavenMissing say which tool could not be found (or,
// for Java, not in a version Cassandra 5.0.6 runs on with these flags).
var (
	ErrJavaMissing  = errors.New("java 17 not found")
	ErrMavenMissing = errors.New("mvn not found")
)

// missing skips t with msg, or fails it when RequireIntegrationEnv is set:
// the convention of internal/testenv.Missing.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(RequireIntegrationEnv) != "" {
		t.Fatalf("%s (required: %s is set)", msg, RequireIntegrationEnv)
	}
	t.Skip(msg)
}

// skipOrFail turns the error of a prerequisite into a skip (or a failure
// under RequireIntegrationEnv) when it is a missing tool, and into a failure
// otherwise.
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	switch {
	case errors.Is(err, ErrJavaMissing):
		missing(t, fmt.Sprintf("cassandra: %v: %s", err, installJava))
	case errors.Is(err, ErrMavenMissing):
		missing(t, fmt.Sprintf("cassandra: %v (needed once, to resolve cassandra-all's classpath): %s", err, installMaven))
	default:
		t.Fatalf("cassandra: %v", err)
	}
}

// Prerequisites finds Java 17 and cassandra-all's classpath, for a test that
// runs nodetool or Cassandra's tools without a cluster of its own. It skips
// t when Java, or Maven with no cached classpath, is missing (naming the
// Debian package to install), and fails it instead when
// QUIESCE_REQUIRE_INTEGRATION is set.
func Prerequisites(t testing.TB, opts ResolveOptions) (java string, cp Classpath) {
	t.Helper()
	java, err := FindJava(t.Context())
	if err != nil {
		skipOrFail(t, err)
		return "", Classpath{}
	}
	cp, err = ResolveClasspath(t.Context(), opts)
	if err != nil {
		skipOrFail(t, err)
		return "", Classpath{}
	}
	if cp.Jar("jamm-") == "" {
		t.Fatalf("cassandra: no jamm jar in %s (the server's -javaagent)", cp.File)
	}
	return java, cp
}

var javaVersionRE = regexp.MustCompile(`version "(\d+)(?:\.(\d+))?[^"]*"`)

// FindJava returns the java executable to run Cassandra with:
// $JAVA_HOME/bin/java when JAVA_HOME is set, else java from PATH. It must be
// Java 17: the JVM flags here are those of Cassandra's jvm17 options, and 5.0
// refuses newer Javas.
func FindJava(ctx context.Context) (string, error) {
	java := "java"
	if home := os.Getenv("JAVA_HOME"); home != "" {
		java = filepath.Join(home, "bin", "java")
	}
	path, err := exec.LookPath(java)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrJavaMissing, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s -version: %v: %s", ErrJavaMissing, path, err, bytes.TrimSpace(out))
	}
	m := javaVersionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%w: %s -version says %q", ErrJavaMissing, path, firstLine(out))
	}
	major, _ := strconv.Atoi(string(m[1]))
	if major == 1 && len(m[2]) > 0 { // 1.8 and older
		major, _ = strconv.Atoi(string(m[2]))
	}
	if major != 17 {
		return "", fmt.Errorf("%w: %s is Java %d", ErrJavaMissing, path, major)
	}
	return path, nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(line)
}

// memAvailable returns MemAvailable of /proc/meminfo in bytes, or 0 when it
// cannot be read.
func memAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// rss returns the resident set size of process pid in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// logExcerpt summarises the file at path from byte offset on (the part a
// run of the JVM wrote) for an error message: its ERROR lines, then its last
// n lines, Java stack frames left out of both (the exception messages and
// their "Caused by:" chain are what says why).
func logExcerpt(path string, offset int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if offset > int64(len(b)) {
		offset = 0 // rotated or truncated
	}
	var lines, errs []string
	for line := range strings.SplitSeq(string(b[offset:]), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "at ") || (strings.HasPrefix(trimmed, "... ") && strings.HasSuffix(trimmed, "omitted")) {
			continue
		}
		lines = append(lines, line)
		if strings.HasPrefix(line, "ERROR") {
			errs = append(errs, line)
		}
	}
	if len(lines) == 0 {
		return "(empty)"
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, "\n")
	if len(errs) > 0 {
		if len(errs) > 5 {
			errs = errs[:5]
		}
		out = "errors:\n" + strings.Join(errs, "\n") + "\nlast lines:\n" + out
	}
	return out
}

// fileSize is the size of the file at path, 0 when there is none.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// shellQuote quotes s as one word for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-=:,+@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
