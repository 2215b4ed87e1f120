package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// hookRuns reads the last result of every hook task of a job.
func hookRuns(ctx context.Context, jobs jetstream.KeyValue, jobID string) ([]messages.HookRun, error) {
	lister, err := jobs.ListKeysFiltered(ctx, jobID+".hook.*")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var runs []messages.HookRun
	for k := range lister.Keys() {
		entry, err := jobs.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var r messages.HookRun
		if err := json.Unmarshal(entry.Value(), &r); err != nil {
			return nil, fmt.Errorf("hook run %s: %w", k, err)
		}
		runs = append(runs, r)
	}
	order := map[messages.HookPoint]int{messages.HookBefore: 0, messages.HookAfter: 1, messages.HookComplete: 2}
	sort.Slice(runs, func(i, j int) bool {
		a, b := runs[i], runs[j]
		if order[a.Point] != order[b.Point] {
			return order[a.Point] < order[b.Point]
		}
		if a.Hook != b.Hook {
			return a.Hook < b.Hook
		}
		return a.Node < b.Node
	})
	return runs, nil
}

// printHooks shows each hook run: where, how it ended and the last lines of
// what it printed.
func printHooks(w io.Writer, runs []messages.HookRun) {
	if len(runs) == 0 {
		return
	}
	fmt.Fprintln(w, "hooks:")
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	for _, r := range runs {
		where := r.Node
		if where == "" {
			where = "(job)"
		}
		verdict := "ok"
		if r.Outcome != messages.OutcomeSucceeded {
			verdict = fmt.Sprintf("FAILED (exit %d): %s", r.ExitCode, r.Error)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\tattempt %d\t%s\n", r.Point, r.Hook, where, r.Attempt, verdict)
	}
	_ = tw.Flush()
	for _, r := range runs {
		out := strings.TrimSpace(r.Output)
		if out == "" {
			continue
		}
		lines := strings.Split(out, "\n")
		if len(lines) > 5 {
			lines = lines[len(lines)-5:]
		}
		where := r.Node
		if where == "" {
			where = "job"
		}
		fmt.Fprintf(w, "  %s %s on %s printed:\n", r.Point, r.Hook, where)
		for _, l := range lines {
			fmt.Fprintf(w, "    | %s\n", l)
		}
	}
}
