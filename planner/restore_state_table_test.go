package planner

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// testBackup is a catalogued backup of n nodes, one fs volume each holding
// the node's one data directory.
func testBackup(n int) messages.Backup {
	b := messages.Backup{Schema: messages.BackupSchema, JobID: "c1-0123456789ab", Cluster: "c1", Mode: messages.ModeApplication,
		Tag: "quiesce-c1-0123456789ab", Topology: &messages.Topology{ClusterName: "Test Cluster", SchemaVersion: "sv-1"}}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		dir := fmt.Sprintf("/var/lib/c%d/data", i)
		b.Nodes = append(b.Nodes, messages.Node{Name: name, Address: fmt.Sprintf("127.0.0.%d", i), AZ: "us-east-1a",
			InstanceID: fmt.Sprintf("i-%017d", i),
			Volumes:    []messages.Volume{{ID: fmt.Sprintf("vol-%d", i), Path: dir}}})
		b.Snapshots = append(b.Snapshots, messages.SnapshotRef{SnapshotID: fmt.Sprintf("snap-%017d", i), VolumeID: fmt.Sprintf("vol-%d", i), Node: name, State: "completed"})
		b.Topology.Nodes = append(b.Topology.Nodes, messages.NodeFacts{Node: name, HostID: fmt.Sprintf("host-%d", i),
			Datacenter: "dc1", Rack: "rack1", Tokens: []string{fmt.Sprint(i * 100), fmt.Sprint(i*100 + 50)},
			Dirs: messages.NodeDirs{Data: []string{dir}, CommitLog: fmt.Sprintf("/var/lib/c%d/commitlog", i)}})
		b.Topology.Volumes = append(b.Topology.Volumes, messages.VolumeFacts{VolumeID: fmt.Sprintf("vol-%d", i), AZ: "us-east-1a", SizeGiB: 100, Type: "gp3", IOPS: 3000, Throughput: 125})
	}
	b.NodeCount, b.SnapshotCount = n, n
	return b
}

func testTargets(b messages.Backup, snapshotter string, newNodes int) RestoreTargets {
	t := RestoreTargets{Source: Cluster{Name: "c1", Nodes: b.Nodes, Snapshotter: snapshotter}}
	if newNodes > 0 {
		c := &Cluster{Name: "c2", Snapshotter: snapshotter}
		for i := 1; i <= newNodes; i++ {
			c.Nodes = append(c.Nodes, messages.Node{Name: fmt.Sprintf("m%d", i), Address: fmt.Sprintf("127.0.1.%d", i),
				InstanceID: fmt.Sprintf("i-%017d", 100+i), AZ: "us-east-1b",
				Dirs: &messages.NodeDirs{Data: []string{fmt.Sprintf("/srv/m%d/data", i)}}})
		}
		t.Target = c
	}
	return t
}

func restoreReq(target messages.RestoreTarget) messages.RestoreRequest {
	r := messages.RestoreRequest{Schema: messages.RestoreRequestSchema, RequestID: "rr1", Cluster: "c1", Backup: "latest", Target: target}
	if target == messages.TargetNewCluster {
		r.TargetCluster = "c2"
	}
	return r
}

// restoreMachine drives one restore record the way the engine does.
type restoreMachine struct {
	t   *testing.T
	p   *RestorePlan
	r   *restoreRecord
	now time.Time
	ts  []restoreTransition
}

func newRestoreMachine(t *testing.T, req messages.RestoreRequest, nodes int) *restoreMachine {
	t.Helper()
	b := testBackup(nodes)
	news := 0
	if req.Target == messages.TargetNewCluster {
		news = nodes
	}
	start := time.Unix(1_000, 0)
	p, err := BuildRestorePlan(req, b, testTargets(b, SnapshotterFS, news), start)
	require.NoError(t, err)
	return &restoreMachine{t: t, p: p, r: newRestoreRecord(p, start), now: start}
}

// roundTrip stores and reloads the record, as every step in the engine does.
func (m *restoreMachine) roundTrip() {
	data, err := json.Marshal(m.r)
	require.NoError(m.t, err)
	var r restoreRecord
	require.NoError(m.t, json.Unmarshal(data, &r))
	m.r = &r
}

// drain carries out the outbox: every effect succeeds.
func (m *restoreMachine) drain() []restoreEffect {
	var did []restoreEffect
	for len(m.r.Outbox) > 0 {
		done := map[restoreEffect]bool{}
		for _, fx := range m.r.Outbox {
			done[fx] = true
			did = append(did, fx)
		}
		m.r.Outbox = nil
		m.ts = append(m.ts, m.r.complete(m.p, done, m.now)...)
		m.ts = append(m.ts, m.r.advance(m.p, m.now)...)
		m.roundTrip()
	}
	return did
}

func (m *restoreMachine) result(kind messages.Kind, target string, ok bool, rep *messages.RestoreReport) bool {
	m.now = m.now.Add(time.Second)
	ev := &messages.TaskResult{Schema: messages.TaskResultSchema, TaskID: m.p.RestoreID + "." + string(kind) + "." + target,
		JobID: m.p.RestoreID, Kind: kind, Target: target, Outcome: messages.OutcomeSucceeded, Restore: rep}
	if !ok {
		ev.Outcome, ev.Error = messages.OutcomeFailed, "boom on "+target
	}
	changed := m.r.apply(m.p, ev, m.now)
	if changed {
		m.ts = append(m.ts, m.r.advance(m.p, m.now)...)
	}
	m.roundTrip()
	return changed
}

func (m *restoreMachine) allVolumes() {
	for _, v := range m.p.Volumes {
		m.result(messages.KindRestoreVolume, v.Volume.SnapshotID, true, &messages.RestoreReport{Path: v.Volume.Path})
	}
}

func (m *restoreMachine) allNodes(kind messages.Kind) {
	for _, n := range m.p.Nodes {
		m.result(kind, n.Node.Name, true, nil)
	}
}

func (m *restoreMachine) phases() []messages.RestorePhase {
	var out []messages.RestorePhase
	for _, t := range m.ts {
		out = append(out, t.to)
	}
	return out
}

func TestRestoreStateTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc       string
		target     messages.RestoreTarget
		script     func(m *restoreMachine)
		wantPhase  messages.RestorePhase
		wantReason RestoreReason
		wantPath   []messages.RestorePhase
	}{
		{
			desc: "volumes: every volume made, done", target: messages.TargetVolumes,
			script:    func(m *restoreMachine) { m.allVolumes() },
			wantPhase: messages.RestoreSucceeded,
			wantPath:  []messages.RestorePhase{messages.RestoreVolumes, messages.RestoreSucceeded},
		},
		{
			desc: "in place: every phase in order", target: messages.TargetInPlace,
			script: func(m *restoreMachine) {
				m.allVolumes()
				m.drain()
				m.allNodes(messages.KindRestoreStop)
				m.drain()
				m.allNodes(messages.KindRestorePrepare)
				m.drain()
				m.allNodes(messages.KindRestoreStart)
				m.drain()
				m.result(messages.KindRestoreVerify, "c1", true, nil)
			},
			wantPhase: messages.RestoreSucceeded,
			wantPath: []messages.RestorePhase{messages.RestoreVolumes, messages.RestoreStopping, messages.RestorePreparing,
				messages.RestoreStarting, messages.RestoreVerifying, messages.RestoreSucceeded},
		},
		{
			desc: "a volume failed: no node is touched", target: messages.TargetInPlace,
			script: func(m *restoreMachine) {
				m.result(messages.KindRestoreVolume, m.p.Volumes[0].Volume.SnapshotID, false, nil)
				m.allVolumes()
			},
			wantPhase: messages.RestoreFailed, wantReason: RestoreReasonVolume,
			wantPath: []messages.RestorePhase{messages.RestoreVolumes, messages.RestoreFailed},
		},
		{
			desc: "a node runs and may not be stopped: nothing prepared", target: messages.TargetInPlace,
			script: func(m *restoreMachine) {
				m.allVolumes()
				m.drain()
				m.result(messages.KindRestoreStop, "n1", true, nil)
				m.result(messages.KindRestoreStop, "n2", false, &messages.RestoreReport{Step: messages.StepRunning})
				m.result(messages.KindRestoreStop, "n3", true, nil)
			},
			wantPhase: messages.RestoreFailed, wantReason: RestoreReasonNodeRunning,
			wantPath: []messages.RestorePhase{messages.RestoreVolumes, messages.RestoreStopping, messages.RestoreFailed},
		},
		{
			desc: "prepare fails on one node: none is started", target: messages.TargetNewCluster,
			script: func(m *restoreMachine) {
				m.allVolumes()
				m.drain()
				m.allNodes(messages.KindRestoreStop)
				m.drain()
				m.result(messages.KindRestorePrepare, "m1", true, nil)
				m.result(messages.KindRestorePrepare, "m2", false, nil)
				m.result(messages.KindRestorePrepare, "m3", true, nil)
			},
			wantPhase: messages.RestoreFailed, wantReason: RestoreReasonPrepare,
			wantPath: []messages.RestorePhase{messages.RestoreVolumes, messages.RestoreStopping, messages.RestorePreparing, messages.RestoreFailed},
		},
		{
			desc: "verification fails", target: messages.TargetInPlace,
			script: func(m *restoreMachine) {
				m.allVolumes()
				m.drain()
				m.allNodes(messages.KindRestoreStop)
				m.drain()
				m.allNodes(messages.KindRestorePrepare)
				m.drain()
				m.allNodes(messages.KindRestoreStart)
				m.drain()
				m.result(messages.KindRestoreVerify, "c1", false, nil)
			},
			wantPhase: messages.RestoreFailed, wantReason: RestoreReasonVerify,
		},
		{
			desc: "phase deadline while stopping", target: messages.TargetInPlace,
			script: func(m *restoreMachine) {
				m.allVolumes()
				m.drain()
				m.result(messages.KindRestoreStop, "n1", true, nil)
				m.now = m.now.Add(DefaultRestoreStopTimeout + time.Second)
				tr, ok := m.r.expire(m.p, m.now)
				require.True(m.t, ok)
				require.Contains(m.t, tr.err, "waiting on n2, n3")
				m.ts = append(m.ts, tr)
			},
			wantPhase: messages.RestoreFailed, wantReason: RestoreReasonPhaseDeadline,
		},
		{
			desc: "cancelled while preparing", target: messages.TargetInPlace,
			script: func(m *restoreMachine) {
				m.allVolumes()
				m.drain()
				m.allNodes(messages.KindRestoreStop)
				m.drain()
				tr, ok := m.r.cancel(m.p, m.now, "ops", "wrong backup")
				require.True(m.t, ok)
				m.ts = append(m.ts, tr)
				// A late result changes progress but never the end.
				m.allNodes(messages.KindRestorePrepare)
			},
			wantPhase: messages.RestoreCancelled, wantReason: RestoreReasonCancelled,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			req := restoreReq(tc.target)
			m := newRestoreMachine(t, req, 3)
			did := m.drain()
			require.Equal(t, []restoreEffect{{Kind: rfxHold}, {Kind: rfxVolumes}}, did)
			tc.script(m)
			did = m.drain()
			require.Equal(t, tc.wantPhase, m.r.Phase, "error: %s", m.r.Error)
			require.Equal(t, string(tc.wantReason), m.r.EndReason)
			if tc.wantPath != nil {
				require.Equal(t, tc.wantPath, m.phases())
			}
			if m.r.Phase.Terminal() {
				// The hold is released once the restore ended, whatever
				// the end.
				require.True(t, m.r.Released, "hold released")
				require.Empty(t, m.r.Outbox)
			}
			_ = did
		})
	}
}

// Results delivered twice, or for targets the plan does not have, change
// nothing: the coordinator may apply an event more than once.
func TestRestoreApplyIsIdempotent(t *testing.T) {
	t.Parallel()
	m := newRestoreMachine(t, restoreReq(messages.TargetInPlace), 3)
	m.drain()
	s := m.p.Volumes[0].Volume.SnapshotID
	require.True(t, m.result(messages.KindRestoreVolume, s, true, &messages.RestoreReport{Path: "/x"}))
	require.False(t, m.result(messages.KindRestoreVolume, s, true, nil))
	require.False(t, m.result(messages.KindRestoreVolume, s, false, nil), "a failure after the success is ignored")
	require.False(t, m.result(messages.KindRestoreVolume, "snap-nope", true, nil))
	require.False(t, m.result(messages.KindRestoreStop, "stranger", true, nil))
	require.Equal(t, 1, m.r.Progress.VolumesDone)
}

// No node task of a later phase is published before every node settled
// the phase before: the barriers of a restore.
func TestRestoreBarriers(t *testing.T) {
	t.Parallel()
	m := newRestoreMachine(t, restoreReq(messages.TargetInPlace), 3)
	m.drain()
	m.allVolumes()
	require.Equal(t, []restoreEffect{{Kind: rfxStop}}, m.drain())
	m.result(messages.KindRestoreStop, "n1", true, nil)
	m.result(messages.KindRestoreStop, "n2", true, nil)
	require.Empty(t, m.drain(), "no prepare with a node not yet stopped")
	require.Equal(t, messages.RestoreStopping, m.r.Phase)
	m.result(messages.KindRestoreStop, "n3", true, nil)
	require.Equal(t, []restoreEffect{{Kind: rfxPrepare}}, m.drain())
	m.result(messages.KindRestorePrepare, "n1", true, nil)
	m.result(messages.KindRestorePrepare, "n3", true, nil)
	require.Empty(t, m.drain(), "no start with a node not yet prepared")
	m.result(messages.KindRestorePrepare, "n2", true, nil)
	require.Equal(t, []restoreEffect{{Kind: rfxStart}}, m.drain())
}

// A dry run is recorded with its plan and does nothing.
func TestRestoreDryRun(t *testing.T) {
	t.Parallel()
	req := restoreReq(messages.TargetInPlace)
	req.DryRun = true
	m := newRestoreMachine(t, req, 3)
	require.Equal(t, messages.RestoreSucceeded, m.r.Phase)
	require.Empty(t, m.r.Outbox)
	require.Equal(t, 3, m.r.Progress.Volumes)
}
