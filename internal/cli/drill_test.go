package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
)

// The drill's refusals; the drill itself runs on real Cassandra in
// internal/suite/e2e (make test-cassandra).
func TestDrillRefusesWhatItCannotDoAndRecordsAFailure(t *testing.T) {
	env, path := cliEnv(t)
	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "drill-src")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)

	code, _, errOut = run("drill", "--config", path, "--nats", env.URL, "demo")
	require.Equal(t, ExitRejected, code)
	require.Contains(t, errOut, `cluster "demo" has no drill section`)

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var cfg config.Config
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	write := func() {
		data, err := yaml.Marshal(&cfg)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, data, 0o600))
	}

	// Into itself: the configuration is refused.
	cfg.Clusters[0].Drill = &config.Drill{Target: "demo"}
	write()
	code, _, errOut = run("drill", "--config", path, "--nats", env.URL, "demo")
	require.Equal(t, ExitRejected, code)
	require.Contains(t, errOut, `drill.target "demo": a drill never restores into the cluster itself`)

	// A scratch cluster whose node is a node of the source: the drill
	// fails before it touches anything, and says so in its record.
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	scratch := config.Cluster{Name: "scratch", Executor: "local", Snapshotter: "fs", FS: config.FS{Store: filepath.Join(dir, "store")},
		CassandraService: &config.CassandraService{Start: []string{"touch", started}, Stop: []string{"true"}, IsRunning: []string{"false"}}}
	for _, n := range cfg.Clusters[0].Nodes {
		data := filepath.Join(dir, n.Name, "data")
		require.NoError(t, os.MkdirAll(data, 0o755))
		scratch.Nodes = append(scratch.Nodes, config.Node{Name: n.Name, Address: n.Address,
			Volumes: []config.Volume{{ID: "scratch-" + n.Name, Path: data}}, Directories: &config.Directories{Data: []string{data}}})
	}
	cfg.Clusters = append(cfg.Clusters, scratch)
	cfg.Clusters[0].Drill = &config.Drill{Target: "scratch"}
	write()
	code, out, errOut = run("drill", "--config", path, "--nats", env.URL, "demo")
	require.Equal(t, ExitFailed, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "failed")
	require.NoFileExists(t, started, "no Cassandra was started")

	lister, err := env.H.Catalog.ListKeysFiltered(t.Context(), messages.DrillKey("demo", "*"))
	require.NoError(t, err)
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	require.Len(t, keys, 1)
	e, err := env.H.Catalog.Get(t.Context(), keys[0])
	require.NoError(t, err)
	rec, err := messages.DecodeDrill(e.Value())
	require.NoError(t, err)
	require.Equal(t, messages.DrillFailed, rec.Outcome)
	require.NotEmpty(t, rec.Error)
	require.Equal(t, "scratch", rec.Target)
	t.Logf("recorded: %s", rec.Error)

	// The backup listing never shows the drill's record.
	code, out, _ = run("backups", "--nats", env.URL, "demo")
	require.Equal(t, ExitOK, code)
	require.NotContains(t, out, "drill-")
}
