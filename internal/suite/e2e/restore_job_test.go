//go:build cassandra

package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/cli"
	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/testkit/cassandra"
	"github.com/quiesce/quiesce/internal/testkit/proc"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker/noderestore"
)

// restoreJobInPlace restores the dead cluster in place as an operator
// would: `quiesce restore run --target in-place` against the bundle's
// planner and coordinator, the restore's tasks run by `quiesce worker`
// processes that stop and start Cassandra through service scripts, as
// systemd units would. The first worker is SIGKILLed once it has begun to
// put node 1's files in place; a second worker process finishes the
// restore. The job verifies host IDs, tokens, the schema version and a CQL
// count itself; the test then reads every row at consistency ALL.
func restoreJobInPlace(t *testing.T, b *bundle, c *cassandra.Cluster, bk messages.Backup, d drillData) {
	dir := t.TempDir()
	// The service scripts are per node; the cluster's cassandra_service
	// finds a node's by its name (QUIESCE_NODE) under links.
	links := filepath.Join(dir, "nodes")
	require.NoError(t, os.MkdirAll(links, 0o755))
	for i, n := range c.Nodes() {
		n.WriteServiceScripts(t)
		require.NoError(t, os.Symlink(n.Dir(), filepath.Join(links, nodeName(i))))
	}
	script := func(name string) []string {
		return []string{"sh", "-c", `exec "$1/$QUIESCE_NODE/bin/` + name + `"`, "sh", links}
	}
	cfg := *b.cfg
	cfg.Clusters = append([]config.Cluster(nil), b.cfg.Clusters...)
	require.Equal(t, clusterLocal, cfg.Clusters[0].Name)
	cfg.Clusters[0].CassandraService = &config.CassandraService{
		Start: script("cassandra-start"), Stop: script("cassandra-stop"), IsRunning: script("cassandra-running")}
	require.NoError(t, cfg.Validate())
	data, err := yaml.Marshal(&cfg)
	require.NoError(t, err)
	cfgPath := filepath.Join(dir, "quiesce.yaml")
	require.NoError(t, os.WriteFile(cfgPath, data, 0o600))

	bin := proc.Build(t, dir, proc.QuiescePkg)
	var kinds []string
	for _, k := range messages.RestoreKinds {
		kinds = append(kinds, string(k))
	}
	worker := func(name string) *proc.Process {
		return proc.Start(t, proc.Spec{Name: name, Log: filepath.Join(dir, name+".log"), Argv: []string{bin, "worker",
			"--config", cfgPath, "--nats", b.env.URL, "--name", name, "--metrics-addr", "",
			"--kinds", strings.Join(kinds, ","), "--log-format", "json"}})
	}
	first := worker("restorer-1")

	req := messages.RestoreRequest{RequestID: "drill-inplace-job", Cluster: clusterLocal}
	id := req.RestoreID()
	began := time.Now()
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := cli.Main([]string{"restore", "run", "--config", cfgPath, "--nats", b.env.URL,
			"--cluster", clusterLocal, "--backup", bk.JobID, "--target", "in-place", "--stop-running", "--yes",
			"--request-id", req.RequestID, "--reason", "e2e drill", "--timeout", "15m"}, &out, &errOut)
		done <- result{code, out.String(), errOut.String()}
	}()

	// SIGKILL the worker once node 1's displaced files begin to be kept
	// aside: it is preparing the nodes.
	aside := filepath.Join(c.Node(0).DataDir(), "*", "*", "snapshots", noderestore.AsideName(id))
	var killedIn messages.RestorePhase
	killed := false
	for !killed {
		select {
		case r := <-done:
			t.Fatalf("the restore ended (exit %d) before its worker could be killed:\n%s%s\n%s", r.code, r.out, r.err, first.Tail(4096))
		case <-time.After(2 * time.Millisecond):
		}
		if m, _ := filepath.Glob(aside); len(m) > 0 {
			first.Kill()
			killed = true
		}
	}
	rec, err := planner.LoadRestore(t.Context(), b.env.H, id)
	require.NoError(t, err)
	killedIn = rec.Phase
	require.Equal(t, messages.RestorePreparing, killedIn, "the first worker was killed while the nodes were being prepared")
	t.Logf("worker restorer-1 SIGKILLed %s after the request, restore %s %s", time.Since(began).Round(100*time.Millisecond), id, killedIn)
	worker("restorer-2")

	var r result
	select {
	case r = <-done:
	case <-time.After(16 * time.Minute):
		t.Fatal("quiesce restore run did not end")
	}
	t.Logf("quiesce restore run (exit %d after %s):\n%s%s", r.code, time.Since(began).Round(100*time.Millisecond), r.out, r.err)
	require.Equal(t, cli.ExitOK, r.code)

	var out, errOut bytes.Buffer
	require.Equal(t, cli.ExitOK, cli.Main([]string{"restore", "status", "--nats", b.env.URL, id}, &out, &errOut), errOut.String())
	t.Logf("quiesce restore status %s:\n%s", id, out.String())
	rec, err = planner.LoadRestore(t.Context(), b.env.H, id)
	require.NoError(t, err)
	require.Equal(t, messages.RestoreSucceeded, rec.Phase, rec.Error)

	var hosts []string
	for _, n := range c.Nodes() {
		hosts = append(hosts, n.Addr())
	}
	requireSetA(t, c, hosts, d)
	// The displaced files are kept: the commit log of B, the SSTable
	// flushed after the barrier, the table made after it.
	n := c.Node(0)
	kept, err := filepath.Glob(filepath.Join(n.CommitLogDir(), "."+noderestore.AsideName(id), "CommitLog-*.log"))
	require.NoError(t, err)
	require.NotEmpty(t, kept)
	late, err := filepath.Glob(filepath.Join(n.DataDir(), "shop", "late-*", "snapshots", noderestore.AsideName(id), "*-Data.db"))
	require.NoError(t, err)
	require.NotEmpty(t, late, "shop.late's SSTable, flushed after the barrier, kept aside")
	// The backup's hold ends with the restore.
	require.NoError(t, testenv.Eventually(time.Minute, func() bool {
		holds, err := planner.Holds(t.Context(), b.env.H.Holds, clusterLocal)
		_, held := holds[bk.JobID]
		return err == nil && !held
	}), "the backup's restore hold released")
}
