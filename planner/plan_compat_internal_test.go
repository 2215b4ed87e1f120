package planner

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// oldPlan is a plan as releases before planner.Policy stored it: its policy
// is the configuration file's, with durations as Go duration strings. Plans
// live in the plans object store for the life of their job, so a new
// release must read them, and an old one must read what a new one writes.
const oldPlan = `{
  "job_id": "orders-3f2a9c0d41b7",
  "cluster": "orders",
  "policy": {"name": "nightly", "cluster": "orders", "schedule": "0 2 * * *", "keep_last": 14,
    "allow_partial": true, "flush_timeout": "10m0s", "snapshot_timeout": "45m0s", "finish_timeout": "1h30m0s",
    "job_timeout": "6h0m0s"},
  "mode": "application",
  "tag": "quiesce-orders-3f2a9c0d41b7",
  "keyspaces": ["shop"],
  "nodes": [
    {"name": "n1", "address": "10.0.0.1", "instance_id": "i-1", "az": "us-east-1a",
      "volumes": [{"id": "vol-1a", "device": "/dev/xvdf"}, {"id": "vol-1b", "device": "/dev/xvdg"}]},
    {"name": "n2", "address": "10.0.0.2", "instance_id": "i-2", "az": "us-east-1b",
      "volumes": [{"id": "vol-2a", "device": "/dev/xvdf"}]}
  ],
  "units": [{"target": "n1", "node": 0, "volumes": [0, 1]}, {"target": "vol-2a", "node": 1, "volumes": [0]}],
  "created": "2026-11-24T02:00:00Z",
  "request": {"schema": "quiesce.job-request/v1", "request_id": "nightly-orders-2026-11-24", "cluster": "orders",
    "policy": "nightly", "keyspaces": ["shop"]}
}`

func decodePlan(t *testing.T, data string) *Plan {
	t.Helper()
	var p Plan
	require.NoError(t, json.Unmarshal([]byte(data), &p))
	p.index()
	return &p
}

func TestPlanStoredByEarlierReleasesDecodes(t *testing.T) {
	t.Parallel()
	p := decodePlan(t, oldPlan)
	require.Equal(t, Policy{
		Name: "nightly", Cluster: "orders", Schedule: "0 2 * * *", Retention: Retention{KeepLast: 14}, AllowPartial: true,
		FlushTimeout: 10 * time.Minute, SnapshotTimeout: 45 * time.Minute, FinishTimeout: 90 * time.Minute,
		JobTimeout: 6 * time.Hour,
	}, p.Policy)
	require.Equal(t, 3, p.VolumeCount())

	// The stored timeouts drive the deadlines, as they did.
	now := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	require.Equal(t, now.Add(10*time.Minute), p.deadline(messages.PhaseFlushing, now))
	require.Equal(t, now.Add(45*time.Minute), p.deadline(messages.PhaseSnapshotting, now))
	require.Equal(t, now.Add(90*time.Minute), p.deadline(messages.PhaseFinishing, now))
	require.Equal(t, now.Add(6*time.Hour), newRecord(p, now).Deadline)
	require.Equal(t, "nightly", p.snapshotTask(0, now).Policy)

	// What this release writes is what the earlier one wrote, so a replica
	// not yet updated reads a new plan's policy the same way.
	var old struct {
		Policy json.RawMessage `json:"policy"`
	}
	require.NoError(t, json.Unmarshal([]byte(oldPlan), &old))
	data, err := json.Marshal(p)
	require.NoError(t, err)
	var written struct {
		Policy json.RawMessage `json:"policy"`
	}
	require.NoError(t, json.Unmarshal(data, &written))
	require.JSONEq(t, string(old.Policy), string(written.Policy))
}

// A policy that set no timeouts was stored without them; its jobs get the
// defaults, as before.
func TestStoredPolicyWithoutTimeoutsTakesDefaults(t *testing.T) {
	t.Parallel()
	var p Policy
	require.NoError(t, json.Unmarshal([]byte(`{"name": "default", "cluster": "orders"}`), &p))
	require.Equal(t, Policy{Name: "default", Cluster: "orders"}, p)
	data, err := json.Marshal(p)
	require.NoError(t, err)
	require.JSONEq(t, `{"name": "default", "cluster": "orders"}`, string(data))

	plan := decodePlan(t, `{"job_id": "orders-1", "cluster": "orders", "policy": {"name": "default", "cluster": "orders"},
		"nodes": [{"name": "n1", "volumes": [{"id": "v1"}]}], "units": [{"target": "v1", "node": 0, "volumes": [0]}]}`)
	now := time.Unix(0, 0)
	require.Equal(t, now.Add(DefaultFlushTimeout), plan.deadline(messages.PhaseFlushing, now))
	require.Equal(t, now.Add(DefaultSnapshotTimeout), plan.deadline(messages.PhaseSnapshotting, now))
	require.Equal(t, now.Add(DefaultFinishTimeout), plan.deadline(messages.PhaseFinishing, now))
	require.Equal(t, now.Add(DefaultJobTimeout), newRecord(plan, now).Deadline)

	require.Error(t, json.Unmarshal([]byte(`{"name": "x", "flush_timeout": 600}`), &p), "durations are strings")
}
