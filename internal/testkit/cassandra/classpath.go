package cassandra

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Version is the Cassandra version the harness runs (cassandra-all in conf/pom.xml).
const Version = "5.0.6"

//go:embed conf/pom.xml
var pomXML []byte

// ResolveOptions configure ResolveClasspath.
type ResolveOptions struct {
	// Maven is the mvn executable, run only when the cache misses; default
	// mvn from PATH.
	Maven string
	// CacheDir is where resolved classpaths are kept, one subdirectory per
	// pom hash; default <user cache dir>/quiesce/cassandra-<Version>, the
	// user cache dir being $XDG_CACHE_HOME or ~/.cache.
	CacheDir string
	// Pom replaces the embedded conf/pom.xml (for tests of the cache).
	Pom []byte
	// Logf, when set, is told what happens (a cache hit, a Maven run).
	Logf func(format string, args ...any)
}

// Classpath is cassandra-all's classpath.
type Classpath struct {
	// Jars are the jar files, cassandra-all's own among them.
	Jars []string
	// File is the cached cp.txt the jars were read from.
	File string
	// Cached reports whether the classpath came from the cache, Maven not run.
	Cached bool
	// Took is how long resolving took, cache look-up included.
	Took time.Duration
}

// String is the classpath in java's -cp form.
func (c Classpath) String() string { return strings.Join(c.Jars, string(os.PathListSeparator)) }

// Jar returns the first jar whose file name starts with prefix, or "".
func (c Classpath) Jar(prefix string) string {
	for _, j := range c.Jars {
		if strings.HasPrefix(filepath.Base(j), prefix) {
			return j
		}
	}
	return ""
}

// DefaultCacheDir is where ResolveClasspath keeps classpaths by default.
func DefaultCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "quiesce", "cassandra-"+Version), nil
}

// ResolveClasspath returns cassandra-all's classpath. It reads the cache
// entry of the pom's hash, and runs `mvn dependency:build-classpath` only
// when there is none or one of its jars has gone (a cleaned ~/.m2). Test
// binaries resolving at once take turns through a lock file, so Maven runs
// once. Without Maven and without a usable cache entry it returns
// ErrMavenMissing.
func ResolveClasspath(ctx context.Context, opts ResolveOptions) (Classpath, error) {
	began := time.Now()
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	pom := opts.Pom
	if pom == nil {
		pom = pomXML
	}
	root := opts.CacheDir
	if root == "" {
		var err error
		if root, err = DefaultCacheDir(); err != nil {
			return Classpath{}, fmt.Errorf("classpath cache: %w", err)
		}
	}
	sum := sha256.Sum256(pom)
	dir := filepath.Join(root, hex.EncodeToString(sum[:8]))
	cpFile := filepath.Join(dir, "cp.txt")

	if jars, err := readClasspath(cpFile); err == nil {
		logf("cassandra: classpath of %d jars from %s", len(jars), cpFile)
		return Classpath{Jars: jars, File: cpFile, Cached: true, Took: time.Since(began)}, nil
	}

	unlock, err := lockFile(ctx, filepath.Join(dir, "lock"), func() {
		logf("cassandra: waiting for another process resolving the classpath in %s", dir)
	})
	if err != nil {
		return Classpath{}, fmt.Errorf("classpath cache: %w", err)
	}
	defer unlock()
	// Whoever held the lock may have resolved it meanwhile.
	if jars, err := readClasspath(cpFile); err == nil {
		logf("cassandra: classpath of %d jars from %s", len(jars), cpFile)
		return Classpath{Jars: jars, File: cpFile, Cached: true, Took: time.Since(began)}, nil
	}

	mvn := opts.Maven
	if mvn == "" {
		mvn = "mvn"
	}
	mvnPath, err := exec.LookPath(mvn)
	if err != nil {
		return Classpath{}, fmt.Errorf("%w: %v", ErrMavenMissing, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pom.xml"), pom, 0o644); err != nil {
		return Classpath{}, fmt.Errorf("classpath cache: %w", err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf("cp.txt.%d.tmp", os.Getpid()))
	defer os.Remove(tmp)
	logf("cassandra: resolving cassandra-all %s with %s (no cached classpath for this pom yet; it goes to %s)", Version, mvnPath, dir)
	cmd := exec.CommandContext(ctx, mvnPath, "-B", "-q", "-Dstyle.color=never",
		"-f", filepath.Join(dir, "pom.xml"),
		"dependency:build-classpath", "-Dmdep.outputFile="+tmp)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Classpath{}, fmt.Errorf("mvn dependency:build-classpath in %s: %v\n%s", dir, err, lastLines(string(out), 30))
	}
	jars, err := readClasspath(tmp)
	if err != nil {
		return Classpath{}, fmt.Errorf("mvn dependency:build-classpath in %s: %w", dir, err)
	}
	if err := os.Rename(tmp, cpFile); err != nil {
		return Classpath{}, fmt.Errorf("classpath cache: %w", err)
	}
	took := time.Since(began)
	logf("cassandra: resolved %d jars in %s", len(jars), took.Round(time.Millisecond))
	return Classpath{Jars: jars, File: cpFile, Took: took}, nil
}

// readClasspath reads a cp.txt and checks that it names cassandra-all and
// that every jar it names still exists.
func readClasspath(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var jars []string
	for j := range strings.SplitSeq(strings.TrimSpace(string(b)), string(os.PathListSeparator)) {
		if j == "" {
			continue
		}
		if _, err := os.Stat(j); err != nil {
			return nil, fmt.Errorf("%s names a missing jar: %w", path, err)
		}
		jars = append(jars, j)
	}
	cp := Classpath{Jars: jars}
	if cp.Jar("cassandra-all-") == "" {
		return nil, errors.New(path + " has no cassandra-all jar")
	}
	return jars, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
