//go:build cassandra

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

// TestDemo is `make demo-cassandra`: the story of `make demo`, told on three
// real Cassandra 5.0.6 nodes. Three backups run one after another while a
// writer writes at QUORUM; each shows its phases, the flush spread and the
// barrier (every nodetool snapshot a JVM of its own), its snapshots and
// what its catalog record holds; retention keeps the last two.
func TestDemo(t *testing.T) {
	out := os.Stdout
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	began := time.Now()
	say("quiesce demo on Apache Cassandra 5.0.6")
	say("  starting 3 nodes on 127.0.0.1-3 (one rack each), keyspaces shop and audit at RF 3, a writer at QUORUM ...")
	rc := startCluster(t)
	say("  cluster %q up in %s", rc.c.Name(), time.Since(began).Round(100*time.Millisecond))
	b := startBundle(t, rc, false, 2)
	say("  quiesce: planner, coordinator and 2 workers on an embedded JetStream; local executor (agent mode),")
	say("  the fs snapshotter standing in for EBS, each node's data directory its volume; keep the last 2 backups")
	say("")

	var jobs []string
	for i := 1; i <= 3; i++ {
		say("backup %d/3", i)
		req := messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: fmt.Sprintf("demo-%d-%d", time.Now().UnixNano(), i),
			Cluster: clusterLocal, RequestedBy: "demo", Reason: fmt.Sprintf("demo backup %d of 3", i)}
		job := b.env.Submit(t, req)
		jobs = append(jobs, job)
		var last messages.Phase
		j := b.env.WaitFor(t, job, jobTimeout, func(j messages.Job) bool {
			if j.Phase != last {
				last = j.Phase
				say("  [%7s] %-12s flushed %d/%d  snapshots %d/%d  cleared %d/%d", time.Since(j.CreatedAt).Round(10*time.Millisecond),
					j.Phase, j.Progress.Flushed, j.Progress.Nodes, j.Progress.Snapshotted, j.Progress.SnapshotTasks,
					j.Progress.Cleared, j.Progress.ClearTasks)
			}
			return j.Phase.Terminal()
		})
		require.Equal(t, messages.PhaseSucceeded, j.Phase, b.status(t, job))
		say("  job %s %s in %s", j.ID, strings.ToUpper(string(j.Phase)), j.UpdatedAt.Sub(j.CreatedAt).Round(time.Millisecond))
		for _, ph := range []messages.Phase{messages.PhaseFlushing, messages.PhaseSnapshotting, messages.PhaseFinishing} {
			say("    %-13s %8s", ph, phaseDuration(j, ph).Round(time.Millisecond))
		}
		say("    flush spread  %8s across 3 nodes (each nodetool snapshot a JVM start, then sync -f of its data directory)",
			j.FlushLast.Sub(j.FlushFirst).Round(time.Millisecond))
		say("    barrier       released %s after the last flush", j.BarrierAt.Sub(j.FlushLast).Round(time.Millisecond))
		backups, err := planner.Backups(t.Context(), b.env.H.Catalog, clusterLocal)
		require.NoError(t, err)
		for _, bk := range backups {
			if bk.JobID != job {
				continue
			}
			bk, err = planner.LoadBackup(t.Context(), b.env.H, bk)
			require.NoError(t, err)
			say("    %d snapshots (tag %s):", len(bk.Snapshots), bk.Tag)
			for _, s := range bk.Snapshots {
				say("      %s  %-3s %-12s %s", s.SnapshotID, s.Node, s.VolumeID, s.State)
			}
			tp := bk.Topology
			tables, files, bytes := 0, 0, int64(0)
			for _, n := range tp.Nodes {
				tables += len(n.Tables)
				for _, tb := range n.Tables {
					files += tb.Files
					bytes += tb.Bytes
				}
			}
			say("    catalog: cluster %q, Cassandra %s, %s, %d tokens a node, schema version %s",
				tp.ClusterName, tp.CassandraVersion, tp.Partitioner[strings.LastIndexByte(tp.Partitioner, '.')+1:], tp.NumTokens, tp.SchemaVersion)
			for _, n := range tp.Nodes {
				say("             %s: host %s, %s/%s, %s, data %s", n.Node, n.HostID, n.Datacenter, n.Rack, n.Address, strings.Join(n.Dirs.Data, ","))
			}
			say("             %d table snapshots, %d files, %d bytes; schema: %d lines of CQL", tables, files, bytes, strings.Count(tp.Schema, "\n"))
			require.Empty(t, bk.Warnings)
		}
		if len(j.Retired) > 0 {
			say("    retention retired %s", strings.Join(j.Retired, ", "))
		}
		say("")
	}

	backups, err := planner.Backups(t.Context(), b.env.H.Catalog, clusterLocal)
	require.NoError(t, err)
	require.Len(t, backups, 2)
	say("catalog of cluster %s (keep last 2):", clusterLocal)
	for _, bk := range backups {
		say("  %s  %s  %d nodes  %d snapshots  %s", bk.JobID, bk.FinishedAt.Format(time.RFC3339), bk.NodeCount, bk.SnapshotCount, bk.Tag)
	}
	snaps, err := b.store.Find(t.Context(), map[string]string{messages.TagJob: jobs[0]})
	require.NoError(t, err)
	require.Empty(t, snaps)
	say("retention retired %s; its snapshots are deleted from the store", jobs[0])
	left := 0
	for _, n := range rc.c.Nodes() {
		for _, job := range jobs {
			left += len(tagDirs(t, n.DataDir(), "quiesce-"+job))
		}
	}
	say("the writer wrote %d rows while the backups ran", rc.writer.written.Load())
	say("Cassandra snapshot tags left on the nodes: %d", left)
	require.Zero(t, left)
	say("demo finished in %s: every backup succeeded", time.Since(began).Round(time.Second))
}

// phaseDuration is how long the job spent in a phase.
func phaseDuration(j messages.Job, ph messages.Phase) time.Duration {
	start, ok := j.PhaseTimes[ph]
	if !ok {
		return 0
	}
	end := j.UpdatedAt
	for _, t := range j.PhaseTimes {
		if t.After(start) && t.Before(end) {
			end = t
		}
	}
	return end.Sub(start)
}
