package planner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// ScheduleChange is what SyncSchedules did for one policy.
type ScheduleChange struct {
	Cluster, Policy string
	// Action is "set", "unchanged" or "removed".
	Action   string
	Schedule string
}

// SyncSchedules makes the schedules in JetStream match the policies: each
// policy with a schedule has one schedule message whose firings submit its
// JobRequest; policies without one, or no longer configured, have none.
// No process of quiesce keeps a timer: the server fires the schedules.
func SyncSchedules(ctx context.Context, js jetstream.JetStream, policies []Policy) ([]ScheduleChange, error) {
	return syncSchedules(ctx, js, policies, nil)
}

// SyncClusterSchedules is SyncSchedules for the named clusters only: the
// schedules of other clusters are left as they are. A planner syncs the
// clusters of its own configuration at start, so a replica started from an
// older file during a rolling update never removes the schedule of a
// cluster it does not know; `quiesce schedules` syncs them all.
func SyncClusterSchedules(ctx context.Context, js jetstream.JetStream, policies []Policy, clusters []string) ([]ScheduleChange, error) {
	only := map[string]bool{}
	for _, c := range clusters {
		only[c] = true
	}
	return syncSchedules(ctx, js, policies, only)
}

func syncSchedules(ctx context.Context, js jetstream.JetStream, policies []Policy, only map[string]bool) ([]ScheduleChange, error) {
	stream, err := js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		return nil, err
	}
	want := map[string]Policy{}
	for _, p := range policies {
		if only != nil && !only[p.Cluster] {
			continue
		}
		if p.Schedule != "" {
			want[messages.SubjectSchedule(p.Cluster, p.Name)] = p
		}
	}
	var changes []ScheduleChange
	subjects := make([]string, 0, len(want))
	for subj := range want {
		subjects = append(subjects, subj)
	}
	sort.Strings(subjects)
	for _, subj := range subjects {
		p := want[subj]
		expr, err := messages.ScheduleExpr(p.Schedule)
		if err != nil {
			return changes, fmt.Errorf("policy %s/%s: %w", p.Cluster, p.Name, err)
		}
		req := messages.JobRequest{
			Schema: messages.JobRequestSchema, RequestID: "schedule-" + p.Cluster + "-" + p.Name,
			Cluster: p.Cluster, Policy: p.Name, RequestedBy: "schedule",
			Reason: fmt.Sprintf("policy %s schedule %q", p.Name, p.Schedule),
		}
		body, err := json.Marshal(req)
		if err != nil {
			return changes, err
		}
		change := ScheduleChange{Cluster: p.Cluster, Policy: p.Name, Schedule: expr, Action: "unchanged"}
		// Re-publishing an unchanged schedule would restart its timer.
		if last, err := stream.GetLastMsgForSubject(ctx, subj); err == nil &&
			last.Header.Get("Nats-Schedule") == expr && bytes.Equal(last.Data, body) {
			changes = append(changes, change)
			continue
		}
		msg := nats.NewMsg(subj)
		msg.Data = body
		msg.Header.Set("Nats-Schedule", expr)
		msg.Header.Set("Nats-Schedule-Target", messages.SubjectSubmit)
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			return changes, fmt.Errorf("policy %s/%s schedule %q: %w", p.Cluster, p.Name, expr, err)
		}
		change.Action = "set"
		changes = append(changes, change)
	}
	// Remove the schedules of policies that no longer have one.
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(messages.SubjectSchedulesAll))
	if err != nil {
		return changes, err
	}
	var stale []string
	for subj := range info.State.Subjects {
		if _, ok := want[subj]; ok {
			continue
		}
		if cluster, _ := scheduleSubjectParts(subj); only != nil && !only[cluster] {
			continue
		}
		stale = append(stale, subj)
	}
	sort.Strings(stale)
	for _, subj := range stale {
		if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return changes, err
		}
		c := ScheduleChange{Action: "removed"}
		c.Cluster, c.Policy = scheduleSubjectParts(subj)
		changes = append(changes, c)
	}
	return changes, nil
}

// scheduleSubjectParts reads the cluster and policy of a schedule subject.
func scheduleSubjectParts(subj string) (cluster, policy string) {
	parts := strings.SplitN(strings.TrimPrefix(subj, "quiesce.schedules."), ".", 2)
	if len(parts) != 2 {
		return "", ""
	}
	return parts[0], parts[1]
}
