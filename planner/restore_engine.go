package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// RestoreObserver receives a restore's measurements. An Observer that also
// implements it is told about restores.
type RestoreObserver interface {
	// RestoreStarted: a request became a restore.
	RestoreStarted(cluster string, target messages.RestoreTarget)
	// RestoreFinished: a restore reached terminal phase after d.
	RestoreFinished(cluster string, target messages.RestoreTarget, phase messages.RestorePhase, d time.Duration)
	// RestorePhaseFinished: a restore left phase after spending d in it.
	RestorePhaseFinished(target messages.RestoreTarget, phase messages.RestorePhase, d time.Duration)
}

// restores loads, stores and advances restore records, as engine does for
// jobs, sharing its connection, lock and observer.
type restores struct {
	e *engine

	mu    sync.Mutex
	plans map[string]*RestorePlan
}

func newRestores(e *engine) *restores { return &restores{e: e, plans: map[string]*RestorePlan{}} }

// restorePlanObject names a restore's plan in the plans object store.
func restorePlanObject(id string) string { return id + ".restore-plan" }

func (rs *restores) load(ctx context.Context, id string) (*restoreRecord, uint64, error) {
	entry, err := rs.e.h.Restores.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%w: restore %s", errNoJob, id)
	}
	if err != nil {
		return nil, 0, err
	}
	var r restoreRecord
	if err := json.Unmarshal(entry.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("restore %s record: %w", id, err)
	}
	return &r, entry.Revision(), nil
}

func (rs *restores) plan(ctx context.Context, id string) (*RestorePlan, error) {
	rs.mu.Lock()
	p := rs.plans[id]
	rs.mu.Unlock()
	if p != nil {
		return p, nil
	}
	data, err := rs.e.h.Plans.GetBytes(ctx, restorePlanObject(id))
	if err != nil {
		return nil, fmt.Errorf("restore %s plan: %w", id, err)
	}
	p = &RestorePlan{}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("restore %s plan: %w", id, err)
	}
	rs.cache(p)
	return p, nil
}

func (rs *restores) cache(p *RestorePlan) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.plans) > 64 {
		clear(rs.plans)
	}
	rs.plans[p.RestoreID] = p
}

func (rs *restores) store(ctx context.Context, r *restoreRecord, rev uint64) (uint64, error) {
	r.UpdatedAt = rs.e.now()
	data, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	return rs.e.h.Restores.Update(ctx, r.ID, data, rev)
}

// mutate applies fn to the record and stores it by compare-and-set,
// retrying on conflict, then reports and carries out the outbox.
func (rs *restores) mutate(ctx context.Context, id string, fn func(r *restoreRecord, p *RestorePlan) (bool, []restoreTransition)) error {
	p, err := rs.plan(ctx, id)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		r, rev, err := rs.load(ctx, id)
		if err != nil {
			return err
		}
		changed, ts := fn(r, p)
		if !changed {
			if len(r.Outbox) > 0 {
				return rs.drain(ctx, p, r, rev)
			}
			return nil
		}
		ts = append(ts, r.advance(p, rs.e.now())...)
		newRev, err := rs.store(ctx, r, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			if attempt > 50 {
				return fmt.Errorf("restore %s: too many concurrent updates: %w", id, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		rs.report(ctx, r, ts)
		return rs.drain(ctx, p, r, newRev)
	}
}

// drain carries out the outbox, then removes what it did by
// compare-and-set. Every effect is idempotent.
func (rs *restores) drain(ctx context.Context, p *RestorePlan, r *restoreRecord, rev uint64) error {
	for round := 0; len(r.Outbox) > 0 && round < 10; round++ {
		done := map[restoreEffect]bool{}
		for _, fx := range slices.Clone(r.Outbox) {
			if err := rs.effect(ctx, p, r, fx); err != nil {
				return fmt.Errorf("restore %s effect %s: %w", r.ID, fx, err)
			}
			done[fx] = true
		}
		for attempt := 0; ; attempt++ {
			r.Outbox = slices.DeleteFunc(r.Outbox, func(fx restoreEffect) bool { return done[fx] })
			ts := r.complete(p, done, rs.e.now())
			ts = append(ts, r.advance(p, rs.e.now())...)
			newRev, err := rs.store(ctx, r, rev)
			if err == nil {
				rev = newRev
				rs.report(ctx, r, ts)
				break
			}
			if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) || attempt > 50 {
				return err
			}
			if r, rev, err = rs.load(ctx, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// effect carries out one outbox entry.
func (rs *restores) effect(ctx context.Context, p *RestorePlan, r *restoreRecord, fx restoreEffect) error {
	ended := r.Phase.Terminal()
	switch fx.Kind {
	case rfxHold:
		return holdForRestore(ctx, rs.e.h.Holds, p, r.Deadline, rs.e.now())
	case rfxRelease:
		return releaseForRestore(ctx, rs.e.h.Holds, p)
	}
	if ended {
		// A restore that ended starts nothing more.
		return nil
	}
	deadline := r.PhaseDeadline
	switch fx.Kind {
	case rfxVolumes:
		if r.Phase == messages.RestorePlanned {
			deadline = rs.e.now().Add(p.phaseTimeout(messages.RestoreVolumes))
		}
		var tasks []messages.Task
		for j, v := range p.Volumes {
			if r.VolDone.has(j) || r.VolFailed.has(j) {
				continue
			}
			vol := v.Volume
			tasks = append(tasks, p.restoreTask(messages.KindRestoreVolume, p.Cluster, vol.SnapshotID, deadline,
				messages.RestoreTask{Volume: &vol}))
		}
		return rs.e.publishTasks(ctx, restoreSubjects, tasks)
	case rfxStop, rfxPrepare, rfxStart:
		kind := restoreNodeKinds[fx.Kind]
		var done, failed bitset
		switch fx.Kind {
		case rfxStop:
			done, failed = r.Stopped, r.StopFailed
		case rfxPrepare:
			done, failed = r.Prepared, r.PrepFailed
		default:
			done, failed = r.Started, r.StartFailed
		}
		var tasks []messages.Task
		for i, n := range p.Nodes {
			if done.has(i) || failed.has(i) {
				continue
			}
			spec, node := n.Spec, n.Node
			t := p.restoreTask(kind, p.TargetCluster, node.Name, deadline, messages.RestoreTask{Node: &spec})
			t.Node = &node
			tasks = append(tasks, t)
		}
		return rs.e.publishTasks(ctx, restoreSubjects, tasks)
	case rfxVerify:
		if p.Verify == nil || len(p.Nodes) == 0 {
			return fmt.Errorf("restore %s: nothing to verify", p.RestoreID)
		}
		v, node := *p.Verify, p.Nodes[0].Node
		t := p.restoreTask(messages.KindRestoreVerify, p.TargetCluster, p.TargetCluster, deadline, messages.RestoreTask{Verify: &v})
		t.Node = &node
		return rs.e.publishTasks(ctx, restoreSubjects, []messages.Task{t})
	}
	return fmt.Errorf("unknown restore outbox entry %s", fx)
}

// restoreTask builds one task of a restore.
func (p *RestorePlan) restoreTask(kind messages.Kind, cluster, target string, deadline time.Time, rt messages.RestoreTask) messages.Task {
	rt.RestoreID, rt.Target = p.RestoreID, p.Target
	return messages.Task{Schema: messages.TaskSchema, ID: messages.TaskID(p.RestoreID, kind, target), Kind: kind,
		JobID: p.RestoreID, Cluster: cluster, Target: target, Tag: p.Tag, Keyspaces: p.Request.Keyspaces,
		Deadline: deadline, Restore: &rt}
}

// report publishes phase events and tells the observer about stored
// transitions.
func (rs *restores) report(ctx context.Context, r *restoreRecord, ts []restoreTransition) {
	obs, _ := rs.e.obs.(RestoreObserver)
	for _, t := range ts {
		log := rs.e.log.With().Str("restore_id", r.ID).Str("cluster", r.Cluster).Logger()
		ev := messages.RestorePhaseEvent{Schema: messages.RestorePhaseEventSchema, RestoreID: r.ID, From: t.from, To: t.to, At: t.at, Error: t.err}
		if data, err := json.Marshal(ev); err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := rs.e.js.Publish(pctx, messages.SubjectPhaseEvent(r.ID), data,
				jetstream.WithMsgID(r.ID+".phase."+string(t.to))); err != nil {
				log.Warn().Err(err).Msg("restore phase event not published")
			}
			cancel()
		}
		if from, ok := r.PhaseTimes[t.from]; ok && obs != nil {
			obs.RestorePhaseFinished(r.Target, t.from, t.at.Sub(from))
		}
		le := log.Info()
		if t.to == messages.RestoreFailed {
			le = log.Error()
		}
		le = le.Str("from", string(t.from)).Str("to", string(t.to)).Str("target", string(r.Target))
		if t.err != "" {
			le = le.Str("error", t.err).Str("reason", string(t.reason))
		}
		le.Msg("restore phase changed")
		if t.to.Terminal() && obs != nil {
			obs.RestoreFinished(r.Cluster, r.Target, t.to, t.at.Sub(r.CreatedAt))
		}
	}
}

// RestoreHoldReason is the reason of the hold a restore puts on its backup.
func RestoreHoldReason(restoreID string) string { return "restore " + restoreID }

// holdForRestore holds the restore's backup until the restore's deadline.
// A hold already there (an operator's, or another restore's) is left as it
// is: it keeps the backup too, and releasing it is not this restore's to do.
func holdForRestore(ctx context.Context, kv jetstream.KeyValue, p *RestorePlan, until, now time.Time) error {
	data, err := json.Marshal(Hold{JobID: p.Backup, Until: until, By: "quiesce", Reason: RestoreHoldReason(p.RestoreID), At: now})
	if err != nil {
		return err
	}
	_, err = kv.Create(ctx, messages.CatalogKey(p.Cluster, p.Backup), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	return err
}

// releaseForRestore releases the hold this restore put on its backup, and
// no other.
func releaseForRestore(ctx context.Context, kv jetstream.KeyValue, p *RestorePlan) error {
	key := messages.CatalogKey(p.Cluster, p.Backup)
	entry, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var h Hold
	if json.Unmarshal(entry.Value(), &h) != nil || h.Reason != RestoreHoldReason(p.RestoreID) {
		return nil
	}
	err = kv.Delete(ctx, key, jetstream.LastRevision(entry.Revision()))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil
	}
	return err
}

// LoadRestore reads a restore's public record.
func LoadRestore(ctx context.Context, h *topology.Handles, id string) (messages.Restore, error) {
	entry, err := h.Restores.Get(ctx, id)
	if err != nil {
		return messages.Restore{}, err
	}
	var r messages.Restore
	if err := json.Unmarshal(entry.Value(), &r); err != nil {
		return messages.Restore{}, fmt.Errorf("restore %s record: %w", id, err)
	}
	return r, nil
}

// LoadRestorePlan reads a restore's stored plan.
func LoadRestorePlan(ctx context.Context, h *topology.Handles, id string) (*RestorePlan, error) {
	data, err := h.Plans.GetBytes(ctx, restorePlanObject(id))
	if err != nil {
		return nil, err
	}
	var p RestorePlan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// RestoredVolumes lists what a restore's volume tasks made: each volume of
// the plan, with the volume ID, device or directory its task reported.
func RestoredVolumes(ctx context.Context, js jetstream.JetStream, h *topology.Handles, id string) ([]messages.RestoredVolume, error) {
	p, err := LoadRestorePlan(ctx, h, id)
	if err != nil {
		return nil, err
	}
	out := make([]messages.RestoredVolume, len(p.Volumes))
	index := map[string]int{}
	for j, v := range p.Volumes {
		out[j] = messages.RestoredVolume{SnapshotID: v.Volume.SnapshotID, SourceVolume: v.Volume.SourceVolume,
			SourceNode: v.Volume.SourceNode, TargetNode: v.TargetNode}
		index[v.Volume.SnapshotID] = j
	}
	cons, err := js.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectTaskEvent(id, messages.KindRestoreVolume)}})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	for left := info.NumPending; left > 0; left-- {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return out, err
		}
		var ev messages.TaskResult
		if json.Unmarshal(m.Data(), &ev) != nil || ev.Outcome != messages.OutcomeSucceeded || ev.Restore == nil {
			continue
		}
		if j, ok := index[ev.Target]; ok {
			out[j].VolumeID, out[j].Device, out[j].Path = ev.Restore.VolumeID, ev.Restore.Device, ev.Restore.Path
		}
	}
	return out, nil
}

// Restores lists the restore records, of one cluster's backups when
// cluster is set, newest first.
func Restores(ctx context.Context, h *topology.Handles, cluster string) ([]messages.Restore, error) {
	lister, err := h.Restores.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []messages.Restore
	for k := range lister.Keys() {
		if cluster != "" && !strings.HasPrefix(k, cluster+"-r") {
			continue
		}
		r, err := LoadRestore(ctx, h, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if cluster == "" || r.Cluster == cluster {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// restoreSubjects publishes a restore's tasks on their kinds' subjects: no
// restore task goes to a node's agent.
var restoreSubjects = &Plan{}
