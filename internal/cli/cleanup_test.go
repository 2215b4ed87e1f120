package cli

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

// failingFleet is a stack whose node-2 refuses its flush (a changed host
// key, permanent) and whose node-3 hangs while hang is set: its flush and
// its clear time out, and are retried.
type failingFleet struct {
	env  *testenv.Env
	tool *fakes.NodeTool
	hang atomic.Bool
}

func newFailingFleet(t *testing.T, nodes int) *failingFleet {
	t.Helper()
	f := &failingFleet{env: testenv.New(t, topology.Options{AckWait: 5 * time.Second,
		MaxDeliver: map[messages.Kind]int{messages.KindClear: 1000}}), tool: fakes.NewNodeTool()}
	f.tool.Fail = func(node string) error {
		switch {
		case node == "node-2":
			return errclass.Permanent(errors.New("ssh handshake node-2: host key for node-2 changed"))
		case node == "node-3" && f.hang.Load():
			return errors.New("ssh dial node-3: i/o timeout")
		}
		return nil
	}
	f.tool.ClearFail = func(node string) error {
		if node == "node-3" && f.hang.Load() {
			return errors.New("ssh dial node-3: i/o timeout")
		}
		return nil
	}
	cl := planner.Cluster{Name: "c1", DefaultPolicy: "nightly"}
	for i := range nodes {
		cl.Nodes = append(cl.Nodes, messages.Node{Name: fmt.Sprintf("node-%d", i+1), Address: "127.0.0.1",
			Volumes: []messages.Volume{{ID: fmt.Sprintf("vol-%d", i+1), Path: "/unused"}, {ID: fmt.Sprintf("vol-%d-b", i+1), Path: "/unused"}}})
	}
	inv := planner.Inventory{Clusters: []planner.Cluster{cl}, Policies: []planner.Policy{{Name: "nightly", Cluster: "c1"}}}
	stack.Start(t, f.env, stack.Config{
		Planner:     planner.PlannerConfig{Inventory: inv},
		Coordinator: planner.CoordinatorConfig{SweepInterval: 100 * time.Millisecond},
		Worker: worker.Config{Heartbeat: 200 * time.Millisecond, AwaitPoll: 20 * time.Millisecond,
			BackoffBase: 200 * time.Millisecond, BackoffMax: 400 * time.Millisecond},
		Drivers: fakes.Drivers{Tool: f.tool, Snap: fakes.NewSnapshotter()},
	})
	return f
}

// lastProgress is the last progress line a command printed before its
// clean-up summary.
func lastProgress(out string) string {
	var last string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "[") {
			last = l
		}
	}
	return last
}

// submit follows a failed job until its clean-up has ended: its last line
// counts every node's clear, not the clears queued when the phase turned.
// While a node's clear is retried, status shows the retry and when the
// next attempt comes, and that the clean-up is running.
func TestSubmitFollowsCleanupToItsEnd(t *testing.T) {
	t.Parallel()
	f := newFailingFleet(t, 4)
	f.hang.Store(true)
	job := messages.JobIDFor("c1", "cleanup-end")

	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := run("submit", "--nats", f.env.URL, "--cluster", "c1", "--request-id", "cleanup-end")
		done <- result{code, out, errOut}
	}()
	j := f.env.WaitFor(t, job, time.Minute, func(j messages.Job) bool {
		return j.Phase == messages.PhaseFailed && len(j.Retrying) > 0 && j.Progress.Cleared == 3
	})
	require.Equal(t, 1, j.Progress.CleanupPending)

	code, out, errOut := run("status", "--nats", f.env.URL, job)
	require.Equal(t, ExitOK, code, "status answers, whatever the job's outcome: %s", errOut)
	require.Contains(t, out, "clean-up        running: 1 task pending, 1 retrying")
	require.Regexp(t, `RETRYING clear node-3: attempt \d+ of 1000 failed at \S+: ssh dial node-3: i/o timeout; next attempt `, out)
	require.Contains(t, out, "snapshot tasks  none: barrier not reached (8 volumes)")
	require.Contains(t, out, "tags cleared    3/4")

	select {
	case r := <-done:
		t.Fatalf("submit returned while the clean-up was running: %d\n%s\n%s", r.code, r.out, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	f.hang.Store(false)
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("submit did not return once the clean-up ended")
	}
	require.Equal(t, ExitFailed, r.code, "submit's meaning is kept: the job failed\n%s\n%s", r.out, r.err)
	require.Contains(t, r.err, "node-2")
	last := lastProgress(r.out)
	require.Contains(t, last, "cleared 4/4", r.out)
	require.Contains(t, last, "snapshots none: barrier not reached", r.out)
	require.Contains(t, r.out, "clean-up ended: tags cleared 4/4")
	require.Contains(t, r.out, "retrying clear node-3", "the retries were shown as they happened:\n%s", r.out)
	require.NotContains(t, r.out, "snapshots 0/0")

	// The job and its clean-up ended: watch shows it at once and exits by
	// the outcome; status exits 0.
	code, out, _ = run("watch", "--nats", f.env.URL, job)
	require.Equal(t, ExitFailed, code, out)
	require.Contains(t, out, "clean-up ended")
	code, out, _ = run("status", "--nats", f.env.URL, job)
	require.Equal(t, ExitOK, code, out)
	require.Contains(t, out, "clean-up        ended")
	require.NotContains(t, out, "RETRYING")
}

// With a clean-up that outlasts --cleanup-wait, submit says plainly that it
// goes on, what it waits for, and how to follow it.
func TestSubmitSaysTheCleanupGoesOn(t *testing.T) {
	t.Parallel()
	f := newFailingFleet(t, 3)
	f.hang.Store(true)
	job := messages.JobIDFor("c1", "cleanup-goes-on")
	code, out, errOut := run("submit", "--nats", f.env.URL, "--cluster", "c1", "--request-id", "cleanup-goes-on",
		"--cleanup-wait", "2s")
	require.Equal(t, ExitFailed, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "clean-up goes on: 1 task pending")
	require.Regexp(t, `retrying clear node-3: attempt \d+ of 1000 failed at .*; next attempt`, out)
	require.Contains(t, out, "follow it with: quiesce watch "+job)

	// watch follows it to its end.
	f.hang.Store(false)
	code, out, _ = run("watch", "--nats", f.env.URL, job)
	require.Equal(t, ExitFailed, code, out)
	require.Contains(t, out, "clean-up ended: tags cleared 3/3")
}

// Exit codes of the commands that show a job: submit and watch exit by the
// job's outcome; status, jobs and backups exit 0 whenever they answered.
func TestExitCodesOfJobQueries(t *testing.T) {
	env, _ := cliEnv(t)
	ok := messages.JobIDFor("demo", "exit-ok")
	code, out, errOut := run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "exit-ok")
	require.Equal(t, ExitOK, code, "%s\n%s", out, errOut)
	bad := messages.JobIDFor("demo", "exit-failed")
	code, out, errOut = run("submit", "--nats", env.URL, "--cluster", "demo", "--request-id", "exit-failed", "--keyspace", "nosuchks")
	require.Equal(t, ExitFailed, code, "%s\n%s", out, errOut)

	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"watch", ok}, ExitOK},
		{[]string{"watch", bad}, ExitFailed},
		{[]string{"status", ok}, ExitOK},
		{[]string{"status", bad}, ExitOK},
		{[]string{"status", "--json", bad}, ExitOK},
		{[]string{"status", "demo-000000000000"}, ExitRejected},
		{[]string{"watch", "not a job"}, ExitRejected},
		{[]string{"jobs"}, ExitOK},
		{[]string{"backups", "demo"}, ExitOK},
	} {
		code, out, errOut := run(append(tc.args, "--nats", env.URL)...)
		require.Equal(t, tc.want, code, "%v\n%s\n%s", tc.args, out, errOut)
	}
	code, _, errOut = run("status", "--nats", "nats://127.0.0.1:1", ok)
	require.Equal(t, ExitError, code, errOut)
}
