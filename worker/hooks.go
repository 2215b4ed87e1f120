package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

// maxHookOutput bounds what a task result carries of a hook's output.
const maxHookOutput = 2048

// hook runs a policy hook: on the task's node through the cluster's
// executor, or on this worker for a job-scoped hook. Each run is stopped at
// the hook's timeout; a failed run is tried again Retries times.
func (w *Worker) hook(ctx context.Context, log zerolog.Logger, t messages.Task) (*taskOutput, error) {
	h := t.Hook
	if h == nil || len(h.Command) == 0 || !filepath.IsAbs(h.Command[0]) {
		return nil, errclass.Permanent(errors.New("hook task has no command with an absolute path"))
	}
	if (h.Scope == messages.ScopeNode) != (t.Node != nil) {
		return nil, errclass.Permanent(fmt.Errorf("hook %s: scope %s does not match the task", h.Name, h.Scope))
	}
	// A before hook of a job that already ended must not run: the job's
	// after hooks may have run already, and a pause started now would
	// never be resumed.
	if h.Point == messages.HookBefore && w.jobEnded(ctx, t.JobID) {
		return nil, errSkip
	}
	hd, ok := w.drivers.(HookDrivers)
	if !ok {
		return nil, errclass.Permanent(errors.New("this worker's drivers cannot run hooks"))
	}
	runner, err := hd.Hooks(t.Cluster)
	if err != nil {
		return nil, errclass.Permanent(err)
	}
	cmd, cleanup, err := w.hookCommand(ctx, t)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	timeout := h.Timeout()
	if timeout <= 0 {
		timeout = time.Minute
	}
	var out HookOutput
	var runErr error
	for attempt := 1; attempt <= h.Retries+1; attempt++ {
		cmd.Env["QUIESCE_HOOK_ATTEMPT"] = strconv.Itoa(attempt)
		rctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("hook %s timed out after %s", h.Name, timeout))
		out, runErr = runner.RunHook(rctx, t.Node, cmd)
		if runErr != nil && rctx.Err() != nil && ctx.Err() == nil {
			runErr = fmt.Errorf("%w: %w", context.Cause(rctx), runErr)
		}
		cancel()
		if runErr == nil || ctx.Err() != nil || attempt > h.Retries {
			break
		}
		delay := min(time.Duration(1<<min(attempt-1, 5))*time.Second, 30*time.Second)
		log.Warn().Err(runErr).Str("hook", h.Name).Int("hook_attempt", attempt).Int64("retry_in_ms", delay.Milliseconds()).
			Msg("hook failed; trying again")
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	res := &taskOutput{Output: tail(out.Stdout, out.Stderr, maxHookOutput), ExitCode: out.ExitCode}
	if runErr != nil {
		if ctx.Err() != nil {
			return res, context.Cause(ctx)
		}
		return res, errclass.Permanent(fmt.Errorf("hook %s: %w", h.Name, runErr))
	}
	log.Info().Str("hook", h.Name).Str("hook_point", string(h.Point)).Msg("hook ran")
	return res, nil
}

// hookCommand builds the command of a hook task: its argv as configured, the
// job's facts as environment variables and, for a complete hook, the job's
// snapshots as JSON: a file and standard input on a worker, the node's own
// snapshots in QUIESCE_SNAPSHOTS on a node.
func (w *Worker) hookCommand(ctx context.Context, t messages.Task) (HookCommand, func(), error) {
	h := t.Hook
	env := map[string]string{
		"QUIESCE_JOB_ID": t.JobID, "QUIESCE_CLUSTER": t.Cluster, "QUIESCE_POLICY": t.Policy, "QUIESCE_TAG": t.Tag,
		"QUIESCE_HOOK": h.Name, "QUIESCE_HOOK_POINT": string(h.Point), "QUIESCE_TASK_ID": t.ID,
	}
	switch h.Point {
	case messages.HookBefore:
		env["QUIESCE_PHASE"] = string(messages.PhasePlanned)
	case messages.HookAfter:
		env["QUIESCE_PHASE"] = "snapshots_initiated"
	case messages.HookComplete:
		env["QUIESCE_PHASE"] = string(t.Outcome)
		env["QUIESCE_OUTCOME"] = string(t.Outcome)
	}
	if t.Node != nil {
		env["QUIESCE_NODE"] = t.Node.Name
		if t.Node.Address != "" {
			env["QUIESCE_NODE_ADDRESS"] = t.Node.Address
		}
	}
	cmd := HookCommand{Argv: h.Command, Env: env}
	nop := func() {}
	if h.Point != messages.HookComplete {
		return cmd, nop, nil
	}
	refs, err := w.loadListing(ctx, t.Listing)
	if err != nil {
		return cmd, nop, err
	}
	if t.Node != nil {
		var mine []messages.SnapshotRef
		for _, r := range refs {
			if r.Node == t.Node.Name {
				mine = append(mine, r)
			}
		}
		data, _ := json.Marshal(snapshotsOrEmpty(mine))
		env["QUIESCE_SNAPSHOTS"] = string(data)
		return cmd, nop, nil
	}
	data, _ := json.Marshal(snapshotsOrEmpty(refs))
	f, err := os.CreateTemp("", "quiesce-snapshots-*.json")
	if err != nil {
		return cmd, nop, fmt.Errorf("hook %s: snapshots file: %w", h.Name, err)
	}
	remove := func() { _ = os.Remove(f.Name()) }
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		remove()
		return cmd, nop, fmt.Errorf("hook %s: snapshots file: %w", h.Name, err)
	}
	_ = f.Close()
	env["QUIESCE_SNAPSHOTS_FILE"] = f.Name()
	cmd.Stdin = data
	return cmd, remove, nil
}

func snapshotsOrEmpty(refs []messages.SnapshotRef) []messages.SnapshotRef {
	if refs == nil {
		return []messages.SnapshotRef{}
	}
	return refs
}

// loadListing reads a job's snapshot listing; a job that ended before its
// snapshots completed has none.
func (w *Worker) loadListing(ctx context.Context, name string) ([]messages.SnapshotRef, error) {
	if name == "" || w.js == nil {
		return nil, nil
	}
	store, err := w.js.ObjectStore(ctx, messages.BucketPlans)
	if err != nil {
		return nil, fmt.Errorf("snapshot listing: %w", err)
	}
	data, err := store.GetBytes(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("snapshot listing %s: %w", name, err)
	}
	l, err := messages.DecodeListing(data)
	if err != nil {
		return nil, errclass.Permanent(fmt.Errorf("snapshot listing %s: %w", name, err))
	}
	return l.Snapshots, nil
}

// tail keeps the last n bytes of stdout followed by stderr.
func tail(stdout, stderr []byte, n int) string {
	s := string(stdout)
	if len(stderr) > 0 {
		if s != "" && s[len(s)-1] != '\n' {
			s += "\n"
		}
		s += string(stderr)
	}
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
