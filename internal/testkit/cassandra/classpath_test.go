package cassandra

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeMaven writes an mvn that records each run in count and answers
// dependency:build-classpath with jars (made here, cassandra-all and jamm
// among them), or fails with exit status exit.
func fakeMaven(t *testing.T, exit int) (mvn, count string, jars []string) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"cassandra-all-5.0.6.jar", "jamm-0.4.0.jar", "guava-32.0.1-jre.jar"} {
		j := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(j, nil, 0o644))
		jars = append(jars, j)
	}
	count = filepath.Join(dir, "count")
	mvn = filepath.Join(dir, "mvn")
	script := fmt.Sprintf(`#!/bin/sh
echo "$*" >> %s
for a in "$@"; do case "$a" in -Dmdep.outputFile=*) out="${a#-Dmdep.outputFile=}";; esac; done
[ %d -eq 0 ] || { echo "[ERROR] Could not resolve dependencies"; exit %d; }
printf '%%s' %s > "$out"
`, shellQuote(count), exit, exit, shellQuote(strings.Join(jars, ":")))
	require.NoError(t, os.WriteFile(mvn, []byte(script), 0o755))
	return mvn, count, jars
}

// runs is how often the fake Maven ran.
func runs(t *testing.T, count string) int {
	b, err := os.ReadFile(count)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	require.NoError(t, err)
	return strings.Count(string(b), "\n")
}

func TestResolveClasspathRunsMavenOncePerPom(t *testing.T) {
	t.Parallel()
	mvn, count, jars := fakeMaven(t, 0)
	cache := t.TempDir()

	cp, err := ResolveClasspath(t.Context(), ResolveOptions{Maven: mvn, CacheDir: cache})
	require.NoError(t, err)
	require.False(t, cp.Cached)
	require.Equal(t, jars, cp.Jars)
	require.Equal(t, 1, runs(t, count))
	require.Equal(t, jars[1], cp.Jar("jamm-"))
	require.Equal(t, strings.Join(jars, ":"), cp.String())

	// A second run reads the cache, even with no Maven at all.
	again, err := ResolveClasspath(t.Context(), ResolveOptions{Maven: filepath.Join(t.TempDir(), "no-mvn"), CacheDir: cache})
	require.NoError(t, err)
	require.True(t, again.Cached)
	require.Equal(t, jars, again.Jars)
	require.Equal(t, cp.File, again.File)
	require.Equal(t, 1, runs(t, count))

	// Another pom is another key.
	other, err := ResolveClasspath(t.Context(), ResolveOptions{Maven: mvn, CacheDir: cache, Pom: []byte("<project/>")})
	require.NoError(t, err)
	require.False(t, other.Cached)
	require.NotEqual(t, cp.File, other.File)
	require.Equal(t, 2, runs(t, count))

	// A jar gone from the local repository (a cleaned ~/.m2) resolves again.
	require.NoError(t, os.Remove(jars[2]))
	_, err = ResolveClasspath(t.Context(), ResolveOptions{Maven: mvn, CacheDir: cache})
	require.Error(t, err, "the fake Maven still names the removed jar")
	require.Equal(t, 3, runs(t, count))
}

func TestResolveClasspathWithoutMavenOrCache(t *testing.T) {
	t.Parallel()
	_, err := ResolveClasspath(t.Context(), ResolveOptions{Maven: filepath.Join(t.TempDir(), "no-mvn"), CacheDir: t.TempDir()})
	require.ErrorIs(t, err, ErrMavenMissing)
}

func TestResolveClasspathQuotesMavenFailure(t *testing.T) {
	t.Parallel()
	mvn, _, _ := fakeMaven(t, 1)
	cache := t.TempDir()
	_, err := ResolveClasspath(t.Context(), ResolveOptions{Maven: mvn, CacheDir: cache})
	require.ErrorContains(t, err, "Could not resolve dependencies")
	matches, _ := filepath.Glob(filepath.Join(cache, "*", "cp.txt"))
	require.Empty(t, matches, "nothing cached from a failed run")
}
