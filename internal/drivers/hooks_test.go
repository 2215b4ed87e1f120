package drivers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/drivers"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
)

// hookBundle is a worker running hook tasks through the registry of a
// cluster with the local executor: real commands, real processes.
type hookBundle struct {
	env     *testenv.Env
	out     string
	results chan messages.TaskResult
}

const hookJob = "c1-00000000000a"

func setupHooks(t *testing.T) *hookBundle {
	t.Helper()
	env := testenv.New(t, topology.Options{AckWait: 5 * time.Second})
	cfg := &config.Config{Clusters: []config.Cluster{{Name: "c1", Executor: "local", Snapshotter: "fs",
		FS: config.FS{Store: t.TempDir()}, Nodes: []config.Node{{Name: "n1", Volumes: []config.Volume{{ID: "v1", Path: "/unused"}}}}}}}
	reg := drivers.New(cfg, drivers.Env{Ctx: t.Context(), Log: zerolog.Nop()})
	t.Cleanup(func() { _ = reg.Close() })
	w := worker.New(env.JS, env.H.Jobs, reg, worker.Config{Logger: zerolog.Nop(), Kinds: []messages.Kind{messages.KindHook},
		Heartbeat: 200 * time.Millisecond})
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { _ = w.StopAndCancel(context.Background()) })
	b := &hookBundle{env: env, out: t.TempDir(), results: make(chan messages.TaskResult, 16)}
	sub, err := env.NC.Subscribe(messages.SubjectTaskEvent(hookJob, messages.KindHook), func(m *nats.Msg) {
		var r messages.TaskResult
		if json.Unmarshal(m.Data, &r) == nil {
			b.results <- r
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return b
}

// run publishes a hook task and waits for its result.
func (b *hookBundle) run(t *testing.T, h messages.Hook, node *messages.Node, mutate func(*messages.Task)) messages.TaskResult {
	t.Helper()
	task := messages.Task{Schema: messages.TaskSchema, ID: messages.TaskID(hookJob, messages.KindHook, h.Name), Kind: messages.KindHook,
		JobID: hookJob, Cluster: "c1", Policy: "nightly", Target: h.Name, Tag: "quiesce-" + hookJob, Hook: &h, Node: node,
		Deadline: time.Now().Add(time.Minute)}
	if mutate != nil {
		mutate(&task)
	}
	data, err := json.Marshal(task)
	require.NoError(t, err)
	_, err = b.env.JS.Publish(t.Context(), messages.SubjectTask(messages.KindHook, "c1"), data)
	require.NoError(t, err)
	select {
	case r := <-b.results:
		return r
	case <-time.After(45 * time.Second):
		t.Fatal("no hook result")
		return messages.TaskResult{}
	}
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestHookGetsFactsInItsEnvironment(t *testing.T) {
	t.Parallel()
	b := setupHooks(t)
	out := filepath.Join(b.out, "env")
	h := messages.Hook{Name: "pause", Point: messages.HookBefore, Scope: messages.ScopeNode, TimeoutMS: 10_000,
		OnError: messages.OnErrorFail, Command: sh(`env | grep '^QUIESCE_' | sort > "$0"; echo paused`)}
	h.Command = append(h.Command, out)
	r := b.run(t, h, &messages.Node{Name: "n1", Address: "127.0.0.1"}, nil)
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
	require.Equal(t, "paused\n", r.Output)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	for _, want := range []string{"QUIESCE_JOB_ID=" + hookJob, "QUIESCE_CLUSTER=c1", "QUIESCE_POLICY=nightly", "QUIESCE_NODE=n1",
		"QUIESCE_TAG=quiesce-" + hookJob, "QUIESCE_HOOK=pause", "QUIESCE_HOOK_POINT=before", "QUIESCE_PHASE=planned"} {
		require.Contains(t, string(data), want+"\n")
	}
}

// A complete hook on a worker reads the job's snapshots on its standard
// input and in a file; the file is removed afterwards.
func TestCompleteHookReadsTheSnapshots(t *testing.T) {
	t.Parallel()
	b := setupHooks(t)
	refs := []messages.SnapshotRef{{SnapshotID: "snap-1", VolumeID: "v1", Node: "n1", State: "completed"}}
	data, err := json.Marshal(refs)
	require.NoError(t, err)
	_, err = b.env.H.Plans.PutBytes(t.Context(), messages.SnapshotListing(hookJob), data)
	require.NoError(t, err)
	h := messages.Hook{Name: "report", Point: messages.HookComplete, Scope: messages.ScopeJob, TimeoutMS: 10_000,
		OnError: messages.OnErrorContinue,
		Command: append(sh(`cat > "$0/stdin.json"; cp "$QUIESCE_SNAPSHOTS_FILE" "$0/file.json"; echo "$QUIESCE_SNAPSHOTS_FILE" > "$0/path"; echo "$QUIESCE_OUTCOME" > "$0/outcome"`), b.out)}
	r := b.run(t, h, nil, func(task *messages.Task) {
		task.Outcome, task.Listing = messages.PhaseSucceeded, messages.SnapshotListing(hookJob)
	})
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
	for _, f := range []string{"stdin.json", "file.json"} {
		got, err := os.ReadFile(filepath.Join(b.out, f))
		require.NoError(t, err)
		var back []messages.SnapshotRef
		require.NoError(t, json.Unmarshal(got, &back), f)
		require.Equal(t, refs, back, f)
	}
	outcome, err := os.ReadFile(filepath.Join(b.out, "outcome"))
	require.NoError(t, err)
	require.Equal(t, "succeeded\n", string(outcome))
	path, err := os.ReadFile(filepath.Join(b.out, "path"))
	require.NoError(t, err)
	_, err = os.Stat(strings.TrimSpace(string(path)))
	require.ErrorIs(t, err, os.ErrNotExist, "the snapshots file is removed after the hook")
}

// A failed run is tried again Retries times.
func TestHookRetries(t *testing.T) {
	t.Parallel()
	b := setupHooks(t)
	count := filepath.Join(b.out, "count")
	h := messages.Hook{Name: "flaky", Point: messages.HookAfter, Scope: messages.ScopeJob, TimeoutMS: 10_000, Retries: 2,
		OnError: messages.OnErrorFail,
		Command: append(sh(`echo x >> "$0"; [ "$(wc -l < "$0")" -ge 3 ] || { echo "not yet" >&2; exit 7; }`), count)}
	r := b.run(t, h, nil, nil)
	require.Equal(t, messages.OutcomeSucceeded, r.Outcome, r.Error)
	data, err := os.ReadFile(count)
	require.NoError(t, err)
	require.Equal(t, 3, strings.Count(string(data), "x"), "two failed runs, then a good one")

	h2 := messages.Hook{Name: "broken", Point: messages.HookAfter, Scope: messages.ScopeJob, TimeoutMS: 10_000, Retries: 1,
		OnError: messages.OnErrorFail, Command: sh(`echo "resume failed: no such table" >&2; exit 4`)}
	r = b.run(t, h2, nil, nil)
	require.Equal(t, messages.OutcomeFailed, r.Outcome)
	require.Equal(t, messages.ClassPermanent, r.ErrorClass)
	require.Equal(t, 4, r.ExitCode)
	require.Contains(t, r.Output, "resume failed: no such table")
}

// A hook's timeout stops the command and everything it started.
func TestHookTimeoutStopsTheCommand(t *testing.T) {
	t.Parallel()
	b := setupHooks(t)
	// A sleep of its own length, so pgrep finds this test's child only.
	marker := fmt.Sprintf("300.%06d", time.Now().UnixNano()%1_000_000)
	h := messages.Hook{Name: "stuck", Point: messages.HookBefore, Scope: messages.ScopeJob, TimeoutMS: 500,
		OnError: messages.OnErrorFail, Command: append(sh(`sleep "$0"; echo done`), marker)}
	start := time.Now()
	r := b.run(t, h, nil, nil)
	require.Equal(t, messages.OutcomeFailed, r.Outcome)
	require.Contains(t, r.Error, "timed out after 500ms")
	require.Less(t, time.Since(start), 40*time.Second)
	require.Eventually(t, func() bool {
		return exec.Command("pgrep", "-f", "sleep "+marker).Run() != nil
	}, 10*time.Second, 100*time.Millisecond, "the hook's processes are gone")
}
