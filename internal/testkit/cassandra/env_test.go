package cassandra

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// recordTB records what a prerequisite check does to a test.
type recordTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordTB) Helper()                        {}
func (r *recordTB) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recordTB) Skip(a ...any)                  { r.skip = fmt.Sprint(a...) }

func TestMissingToolSkipsOrFails(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		err      error
		require  string
		wantSkip string
		wantFail string
	}{
		{desc: "no java", err: fmt.Errorf("%w: exec: not found", ErrJavaMissing), wantSkip: "apt-get install openjdk-17-jdk-headless"},
		{desc: "no mvn", err: ErrMavenMissing, wantSkip: "apt-get install maven"},
		{desc: "no java, required", err: ErrJavaMissing, require: "1", wantFail: "openjdk-17-jdk-headless (required: QUIESCE_REQUIRE_INTEGRATION is set)"},
		{desc: "no mvn, required", err: ErrMavenMissing, require: "1", wantFail: "maven (required: QUIESCE_REQUIRE_INTEGRATION is set)"},
		{desc: "another error", err: errors.New("disk full"), wantFail: "disk full"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Setenv(RequireIntegrationEnv, tc.require)
			r := &recordTB{TB: t}
			skipOrFail(r, tc.err)
			if tc.wantFail != "" {
				require.Contains(t, r.fatal, tc.wantFail)
				return
			}
			require.Empty(t, r.fatal)
			require.Contains(t, r.skip, tc.wantSkip)
		})
	}
}

func TestFindJavaRefusesWhatIsNotJava17(t *testing.T) {
	home := t.TempDir()
	t.Setenv("JAVA_HOME", home)
	_, err := FindJava(t.Context())
	require.ErrorIs(t, err, ErrJavaMissing)

	require.NoError(t, os.MkdirAll(filepath.Join(home, "bin"), 0o755))
	fake := "#!/bin/sh\necho 'openjdk version \"21.0.2\" 2024-01-16' >&2\n"
	require.NoError(t, os.WriteFile(filepath.Join(home, "bin", "java"), []byte(fake), 0o755))
	_, err = FindJava(t.Context())
	require.ErrorIs(t, err, ErrJavaMissing)
	require.ErrorContains(t, err, "Java 21")

	fake = "#!/bin/sh\necho 'openjdk version \"17.0.15\" 2025-04-15' >&2\n"
	require.NoError(t, os.WriteFile(filepath.Join(home, "bin", "java"), []byte(fake), 0o755))
	java, err := FindJava(t.Context())
	require.NoError(t, err)
	require.Equal(t, filepath.Join(home, "bin", "java"), java)
}

func TestLogExcerptKeepsErrorsAndDropsFrames(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "system.log")
	earlier := "ERROR [main] 2025-12-02 04:00:00,000 an earlier run's error\n"
	run := `INFO  [main] 2025-12-02 04:10:00,000 Configuration location: file:/n/conf/cassandra.yaml
ERROR [main] 2025-12-02 04:10:01,000 CassandraDaemon.java:900 - Exception encountered during startup: Invalid yaml
org.apache.cassandra.exceptions.ConfigurationException: Invalid yaml: file:/n/conf/cassandra.yaml
 Error: Cannot create property=num_tokens for JavaBean=org.apache.cassandra.config.Config
	at org.apache.cassandra.config.YamlConfigurationLoader.loadConfig(YamlConfigurationLoader.java:141)
	... 7 common frames omitted
Caused by: java.lang.NumberFormatException: For input string: "many"
	at java.base/java.lang.Integer.parseInt(Integer.java:668)
`
	require.NoError(t, os.WriteFile(path, []byte(earlier+run), 0o644))
	got := logExcerpt(path, int64(len(earlier)), 3)
	require.Equal(t, `errors:
ERROR [main] 2025-12-02 04:10:01,000 CassandraDaemon.java:900 - Exception encountered during startup: Invalid yaml
last lines:
org.apache.cassandra.exceptions.ConfigurationException: Invalid yaml: file:/n/conf/cassandra.yaml
 Error: Cannot create property=num_tokens for JavaBean=org.apache.cassandra.config.Config
Caused by: java.lang.NumberFormatException: For input string: "many"`, got)

	require.Equal(t, "(empty)", logExcerpt(path, int64(len(earlier+run)), 3))
	require.Contains(t, logExcerpt(filepath.Join(t.TempDir(), "none"), 0, 3), "no such file")
}
