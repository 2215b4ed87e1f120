package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// flushResults reads the flush results of a job from the events stream (a
// worker's, or an agent's on its node's subject), the last of each node's
// attempts, a success before a failure.
func flushResults(ctx context.Context, js jetstream.JetStream, job string) ([]messages.TaskResult, error) {
	subject := messages.SubjectTaskEvent(job, messages.KindFlush)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject, messages.AgentSubject(subject, "*")}})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	byNode := map[string]messages.TaskResult{}
	for n := info.NumPending; n > 0; n-- {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return nil, fmt.Errorf("read the flush results: %w", err)
		}
		var r messages.TaskResult
		if json.Unmarshal(m.Data(), &r) != nil || r.Target == "" {
			continue
		}
		if prev, ok := byNode[r.Target]; ok && prev.Outcome == messages.OutcomeSucceeded && r.Outcome != messages.OutcomeSucceeded {
			continue
		}
		byNode[r.Target] = r
	}
	out := make([]messages.TaskResult, 0, len(byNode))
	for _, r := range byNode {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

// printFlushes shows when each node's nodetool started, relative to the
// job's fire time (or to the first start), and how long it took.
func printFlushes(w io.Writer, j messages.Job, results []messages.TaskResult) error {
	if len(results) == 0 {
		fmt.Fprintln(w, "no flush results (none yet, or older than the events stream keeps)")
		return nil
	}
	base, from := j.FireAt, "fire time"
	if base.IsZero() {
		from = "first start"
		for _, r := range results {
			if f := r.Flush; f != nil && !f.Started.IsZero() && (base.IsZero() || f.Started.Before(base)) {
				base = f.Started
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tATTEMPT\tOUTCOME\tSTARTED (after the %s)\tTOOK\tERROR\n", from)
	for _, r := range results {
		started, took := "-", "-"
		if f := r.Flush; f != nil && !f.Started.IsZero() {
			started = f.Started.Sub(base).Round(time.Millisecond).String()
			if !f.Returned.IsZero() {
				took = f.Returned.Sub(f.Started).Round(time.Millisecond).String()
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Target, r.Attempt, r.Outcome, started, took, orDash(messages.Bound(r.Error, 160)))
	}
	return tw.Flush()
}
