package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
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
	cfg.Clusters = append(cfg.Clusters, sourceAddressedScratch(t, &cfg, dir, []string{"touch", started}))
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

// A drill whose restored cluster never verifies (here nothing but a port
// answers for Cassandra) fails within its timeout, and is torn down all
// the same: Cassandra stopped, the scratch nodes emptied, the staged copies
// removed, the failure recorded.
func TestDrillThatFailsIsTornDownAndRecorded(t *testing.T) {
	env, path := cliEnv(t)
	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "drill-src")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var cfg config.Config
	require.NoError(t, yaml.Unmarshal(data, &cfg))

	dir := t.TempDir()
	flag := filepath.Join(dir, "running")
	scratch := config.Cluster{Name: "scratch", Executor: "local", Snapshotter: "fs", FS: config.FS{Store: filepath.Join(dir, "store")},
		Nodetool: []string{"false"},
		CassandraService: &config.CassandraService{Start: []string{"touch", flag}, Stop: []string{"rm", "-f", flag},
			IsRunning: []string{"test", "-e", flag}}}
	// Something answers on each scratch node's CQL port (one port, the
	// nodes differ by address), and nothing else: no nodetool, no ring.
	port := 0
	for i := range cfg.Clusters[0].Nodes {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", 21+i, port))
		require.NoError(t, err)
		port = l.Addr().(*net.TCPAddr).Port
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	scratch.CassandraService.CQLPort = port
	var datas []string
	for i, n := range cfg.Clusters[0].Nodes {
		root := filepath.Join(dir, n.Name)
		var dirs config.Directories
		for k := range n.Directories.Data {
			dirs.Data = append(dirs.Data, filepath.Join(root, fmt.Sprintf("data%d", k+1)))
		}
		dirs.CommitLog = filepath.Join(root, "commitlog")
		for _, d := range append([]string{dirs.CommitLog}, dirs.Data...) {
			require.NoError(t, os.MkdirAll(d, 0o755))
		}
		datas = append(datas, dirs.Data...)
		scratch.Nodes = append(scratch.Nodes, config.Node{Name: n.Name, Address: fmt.Sprintf("127.0.0.%d", 21+i),
			Volumes: []config.Volume{{ID: "scratch-" + n.Name, Path: dirs.Data[0]}}, Directories: &dirs})
	}
	cfg.Clusters = append(cfg.Clusters, scratch)
	cfg.Clusters[0].Drill = &config.Drill{Target: "scratch"}
	data, err = yaml.Marshal(&cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))

	code, out, errOut = run("drill", "--config", path, "--nats", env.URL, "--timeout", "30s", "demo")
	require.Equal(t, ExitFailed, code, "%s\n%s", out, errOut)
	t.Logf("quiesce drill:\n%s", out)
	require.Contains(t, out, "tear down")
	require.NoFileExists(t, flag, "Cassandra stopped")
	for _, d := range datas {
		ents, err := os.ReadDir(d)
		require.NoError(t, err)
		require.Empty(t, ents, "%s emptied", d)
		require.NoDirExists(t, filepath.Join(filepath.Dir(d), ".quiesce-restore"), "staged copies removed")
	}
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
	require.Contains(t, rec.Error, "the restored cluster is not as expected")
	require.True(t, rec.TornDown)
	var phases []string
	for _, p := range rec.Phases {
		phases = append(phases, p.Name)
	}
	require.Equal(t, []string{"choose the backup", "volumes", "stop", "prepare", "start", "verify", "tear down"}, phases)
}

// A drill with a schedule runs by itself: the planner sets the schedule at
// start, its firings reach the worker's drill runner, and each is recorded
// with the schedule as its requester. Here the drill fails before it
// touches anything (the scratch nodes have the source's addresses).
func TestScheduledDrillRunsInTheWorker(t *testing.T) {
	dir := t.TempDir()
	var path string
	env, _ := cliEnvWith(t, func(cfg *config.Config) {
		cfg.Clusters = append(cfg.Clusters, sourceAddressedScratch(t, cfg, dir, []string{"false"}))
		cfg.Clusters[0].Drill = &config.Drill{Target: "scratch", Schedule: "@every 1s"}
		data, err := yaml.Marshal(cfg)
		require.NoError(t, err)
		path = filepath.Join(dir, "quiesce.yaml")
		require.NoError(t, os.WriteFile(path, data, 0o600))
	})
	var rec messages.Drill
	require.NoError(t, testenv.Eventually(20*time.Second, func() bool {
		lister, err := env.H.Catalog.ListKeysFiltered(t.Context(), messages.DrillKey("demo", "*"))
		if err != nil {
			return false
		}
		for k := range lister.Keys() {
			if e, err := env.H.Catalog.Get(t.Context(), k); err == nil {
				rec, err = messages.DecodeDrill(e.Value())
				return err == nil
			}
		}
		return false
	}))
	require.Equal(t, messages.DrillFailed, rec.Outcome)
	require.Equal(t, "schedule", rec.RequestedBy)
	require.True(t, strings.HasPrefix(rec.RequestID, "drill-schedule-demo@"), rec.RequestID)
	require.Equal(t, messages.DrillIDFor(rec.RequestID), rec.DrillID)

	code, out, errOut := run("schedules", "--config", path, "--nats", env.URL)
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	require.Regexp(t, `demo\s+\(drill\)\s+@every 1s\s+unchanged`, out)
}

// sourceAddressedScratch is a scratch cluster "scratch" whose nodes have the
// addresses of cfg's first cluster's: a drill into it fails before it
// touches anything. start is its Cassandra start command.
func sourceAddressedScratch(t *testing.T, cfg *config.Config, dir string, start []string) config.Cluster {
	t.Helper()
	scratch := config.Cluster{Name: "scratch", Executor: "local", Snapshotter: "fs", FS: config.FS{Store: filepath.Join(dir, "store")},
		CassandraService: &config.CassandraService{Start: start, Stop: []string{"true"}, IsRunning: []string{"false"}}}
	for _, n := range cfg.Clusters[0].Nodes {
		data := filepath.Join(dir, n.Name, "data")
		require.NoError(t, os.MkdirAll(data, 0o755))
		scratch.Nodes = append(scratch.Nodes, config.Node{Name: n.Name, Address: n.Address,
			Volumes: []config.Volume{{ID: "scratch-" + n.Name, Path: data}}, Directories: &config.Directories{Data: []string{data}}})
	}
	return scratch
}
