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

// ScheduleChange is what SyncSchedules did for one policy, or
// SyncDrillSchedules for one cluster's drill (Drill set, Policy empty).
type ScheduleChange struct {
	Cluster, Policy string
	Drill           bool
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
	want := map[string]scheduled{}
	for _, p := range policies {
		if only != nil && !only[p.Cluster] {
			continue
		}
		if p.Schedule != "" {
			want[messages.SubjectSchedule(p.Cluster, p.Name)] = scheduled{
				change: ScheduleChange{Cluster: p.Cluster, Policy: p.Name, Schedule: p.Schedule},
				target: messages.SubjectSubmit,
				request: messages.JobRequest{
					Schema: messages.JobRequestSchema, RequestID: "schedule-" + p.Cluster + "-" + p.Name,
					Cluster: p.Cluster, Policy: p.Name, RequestedBy: "schedule",
					Reason: fmt.Sprintf("policy %s schedule %q", p.Name, p.Schedule),
				},
			}
		}
	}
	return syncScheduleMessages(ctx, js, want, messages.SubjectSchedulesAll, func(subj string) ScheduleChange {
		cluster, policy := scheduleSubjectParts(subj)
		return ScheduleChange{Cluster: cluster, Policy: policy}
	}, only)
}

// DrillSchedule is a cluster's drill schedule: a cron expression as a
// policy's, whose firings submit a DrillRequest for the cluster.
type DrillSchedule struct {
	Cluster  string
	Schedule string
}

// SyncDrillSchedules makes the drill schedules in JetStream match drills:
// each cluster with a drill schedule has one schedule message whose
// firings submit its DrillRequest onto messages.SubjectDrillSubmit; other
// clusters have none. With clusters (not nil), only those clusters' drill
// schedules are set or removed (a planner syncs its own configuration's;
// an empty list touches none); with nil, every one (quiesce schedules). Policies' schedules are not touched, nor
// are drill schedules touched by SyncSchedules: they live under subjects
// of their own.
func SyncDrillSchedules(ctx context.Context, js jetstream.JetStream, drills []DrillSchedule, clusters []string) ([]ScheduleChange, error) {
	var only map[string]bool
	if clusters != nil {
		only = map[string]bool{}
		for _, c := range clusters {
			only[c] = true
		}
	}
	want := map[string]scheduled{}
	for _, d := range drills {
		if (only != nil && !only[d.Cluster]) || d.Schedule == "" {
			continue
		}
		want[messages.SubjectDrillSchedule(d.Cluster)] = scheduled{
			change: ScheduleChange{Cluster: d.Cluster, Drill: true, Schedule: d.Schedule},
			target: messages.SubjectDrillSubmit,
			request: messages.DrillRequest{
				Schema: messages.DrillRequestSchema, RequestID: "drill-schedule-" + d.Cluster,
				Cluster: d.Cluster, RequestedBy: "schedule", Reason: fmt.Sprintf("drill schedule %q", d.Schedule),
			},
		}
	}
	return syncScheduleMessages(ctx, js, want, messages.SubjectDrillSchedulesAll, func(subj string) ScheduleChange {
		return ScheduleChange{Cluster: strings.TrimPrefix(subj, strings.TrimSuffix(messages.SubjectDrillSchedulesAll, ">")), Drill: true}
	}, only)
}

// scheduled is one schedule message as it should be: its subject's
// change (Schedule as configured), the subject its firings land on and
// the request they carry.
type scheduled struct {
	change  ScheduleChange
	target  string
	request any
}

// syncScheduleMessages makes the schedule messages under filter those of
// want, keyed by subject: each set unless it is already there unchanged,
// every other one under filter purged, except those of clusters not in
// only (when only is set). of says whose schedule a subject is.
func syncScheduleMessages(ctx context.Context, js jetstream.JetStream, want map[string]scheduled, filter string,
	of func(subject string) ScheduleChange, only map[string]bool) ([]ScheduleChange, error) {
	stream, err := js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		return nil, err
	}
	var changes []ScheduleChange
	subjects := make([]string, 0, len(want))
	for subj := range want {
		subjects = append(subjects, subj)
	}
	sort.Strings(subjects)
	for _, subj := range subjects {
		w := want[subj]
		change := w.change
		what := "policy " + change.Cluster + "/" + change.Policy
		if change.Drill {
			what = "drill of " + change.Cluster
		}
		expr, err := messages.ScheduleExpr(change.Schedule)
		if err != nil {
			return changes, fmt.Errorf("%s: %w", what, err)
		}
		body, err := json.Marshal(w.request)
		if err != nil {
			return changes, err
		}
		change.Schedule, change.Action = expr, "unchanged"
		// Re-publishing an unchanged schedule would restart its timer.
		if last, err := stream.GetLastMsgForSubject(ctx, subj); err == nil &&
			last.Header.Get("Nats-Schedule") == expr && bytes.Equal(last.Data, body) {
			changes = append(changes, change)
			continue
		}
		msg := nats.NewMsg(subj)
		msg.Data = body
		msg.Header.Set("Nats-Schedule", expr)
		msg.Header.Set("Nats-Schedule-Target", w.target)
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			return changes, fmt.Errorf("%s schedule %q: %w", what, expr, err)
		}
		change.Action = "set"
		changes = append(changes, change)
	}
	// Remove the schedules no longer wanted.
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return changes, err
	}
	var stale []string
	for subj := range info.State.Subjects {
		if _, ok := want[subj]; ok {
			continue
		}
		if only != nil && !only[of(subj).Cluster] {
			continue
		}
		stale = append(stale, subj)
	}
	sort.Strings(stale)
	for _, subj := range stale {
		if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return changes, err
		}
		c := of(subj)
		c.Action = "removed"
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
