package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// Deadlines of clean-up tasks, which must run even after their job ended.
const cleanupTaskTimeout = time.Hour

func (e *engine) effect(ctx context.Context, p *Plan, r *record, fx string) (any, error) {
	now := e.now()
	// A job that failed or was cancelled only cleans up: effects queued
	// before it ended that would carry it forward are dropped.
	if r.Phase.Terminal() && r.Phase != messages.PhaseSucceeded &&
		!strings.HasPrefix(fx, fxClear) && !strings.HasPrefix(fx, fxReclear) && !strings.HasPrefix(fx, fxCleanup) {
		return nil, nil
	}
	switch {
	case fx == fxFlush:
		tasks := make([]messages.Task, 0, len(p.Nodes))
		for i := range p.Nodes {
			if !r.Flushed.has(i) && !r.FlushFailed.has(i) {
				tasks = append(tasks, p.flushTask(i, r.PhaseDeadline))
			}
		}
		return nil, e.publishTasks(ctx, tasks)
	case fx == fxSnapshots:
		deadline := r.PhaseDeadline
		if r.Phase == messages.PhasePlanned {
			deadline = p.deadline(messages.PhaseSnapshotting, now)
		}
		tasks := make([]messages.Task, 0, len(p.Units))
		for j := range p.Units {
			if r.unitRequired(p, j) && !r.SnapDone.has(j) && !r.SnapFailed.has(j) {
				tasks = append(tasks, p.snapshotTask(j, deadline))
			}
		}
		return nil, e.publishTasks(ctx, tasks)
	case strings.HasPrefix(fx, fxReclear):
		idx, seq, _ := strings.Cut(strings.TrimPrefix(fx, fxReclear), ".")
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || i >= len(p.Nodes) {
			return nil, fmt.Errorf("bad outbox entry %q", fx)
		}
		// Its own task ID, since the first clear's ID is still in the
		// stream's duplicate window.
		t := p.clearTask(i, now.Add(cleanupTaskTimeout))
		t.ID += ".again" + seq
		return nil, e.publishTasks(ctx, []messages.Task{t})
	case strings.HasPrefix(fx, fxClear):
		i, err := strconv.Atoi(strings.TrimPrefix(fx, fxClear))
		if err != nil || i < 0 || i >= len(p.Nodes) {
			return nil, fmt.Errorf("bad outbox entry %q", fx)
		}
		return nil, e.publishTasks(ctx, []messages.Task{p.clearTask(i, now.Add(cleanupTaskTimeout))})
	case fx == fxAwait:
		expect := 0
		for j, u := range p.Units {
			if r.unitRequired(p, j) {
				expect += len(u.Volumes)
			}
		}
		return nil, e.publishTasks(ctx, []messages.Task{p.awaitTask(expect, r.PhaseDeadline)})
	case fx == fxCatalog:
		return nil, e.writeCatalog(ctx, p, r)
	case fx == fxRetention:
		retired, err := e.selectRetired(ctx, p)
		if err != nil {
			return nil, err
		}
		if len(retired) > 0 {
			t := p.baseTask(messages.KindRetention, p.Cluster, now.Add(cleanupTaskTimeout))
			t.Retire = retired
			if err := e.publishTasks(ctx, []messages.Task{t}); err != nil {
				return nil, err
			}
		}
		return retired, nil
	case strings.HasPrefix(fx, fxCleanup):
		t := p.baseTask(messages.KindRetention, "cleanup-"+strings.TrimPrefix(fx, fxCleanup), now.Add(cleanupTaskTimeout))
		t.Retire = []string{p.JobID}
		return nil, e.publishTasks(ctx, []messages.Task{t})
	}
	return nil, fmt.Errorf("unknown outbox entry %q", fx)
}

// publishTasks publishes tasks asynchronously and waits for every ack. Each
// task's ID is its Nats-Msg-Id, so publishing the same task twice (a crash
// between publish and record update) leaves one message.
func (e *engine) publishTasks(ctx context.Context, tasks []messages.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(tasks))
	for i := range tasks {
		data, err := json.Marshal(&tasks[i])
		if err != nil {
			return err
		}
		f, err := e.js.PublishAsync(messages.SubjectTask(tasks[i].Kind, tasks[i].Cluster), data,
			jetstream.WithMsgID(tasks[i].ID))
		if err != nil {
			return fmt.Errorf("publish %s: %w", tasks[i].ID, err)
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", f.Msg().Header.Get(jetstream.MsgIDHeader), err)
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-timeout.C:
			return errors.New("publish: timed out waiting for acks")
		}
	}
	return nil
}

// writeCatalog stores the backup's catalog record: topology, tag and every
// snapshot the job's tasks reported.
func (e *engine) writeCatalog(ctx context.Context, p *Plan, r *record) error {
	refs, results, err := e.snapshotRefs(ctx, r.ID)
	if err != nil {
		return err
	}
	// A listing can come up short (a stream replica still catching up after
	// a restart); a catalog record missing snapshots would be a backup that
	// cannot be restored, so the effect fails and is retried instead.
	if want := r.SnapDone.count(); results < want {
		return fmt.Errorf("catalog: %d of %d snapshot task results visible", results, want)
	}
	b := messages.Backup{
		Schema: messages.BackupSchema, JobID: r.ID, Cluster: r.Cluster, Policy: r.Policy, Mode: r.Mode,
		Tag: r.Tag, StartedAt: r.CreatedAt, FinishedAt: e.now(), Snapshots: refs,
	}
	for i, n := range p.Nodes {
		if p.Mode == messages.ModeCrash || r.Flushed.has(i) {
			b.Nodes = append(b.Nodes, n)
		}
	}
	b.NodeCount, b.SnapshotCount = len(b.Nodes), len(b.Snapshots)
	data, err := json.Marshal(&b)
	if err != nil {
		return err
	}
	key := messages.CatalogKey(r.Cluster, r.ID)
	if len(data) > catalogInlineLimit {
		// The manifest is stored first, so a record never names a
		// manifest that is not there.
		if _, err := e.h.Manifests.PutBytes(ctx, key, data); err != nil {
			return fmt.Errorf("store manifest: %w", err)
		}
		b.Nodes, b.Snapshots, b.Manifest = nil, nil, key
		if data, err = json.Marshal(&b); err != nil {
			return err
		}
	}
	_, err = e.h.Catalog.Put(ctx, key, data)
	return err
}

// catalogInlineLimit is the largest catalog record kept whole in the
// catalog bucket: well under the server's default 1 MB message limit.
var catalogInlineLimit = 256 << 10

// LoadBackup returns b with its nodes and snapshots, reading its manifest
// when the catalog record keeps them there.
func LoadBackup(ctx context.Context, h *topology.Handles, b messages.Backup) (messages.Backup, error) {
	if b.Manifest == "" {
		return b, nil
	}
	data, err := h.Manifests.GetBytes(ctx, b.Manifest)
	if err != nil {
		return b, fmt.Errorf("backup %s manifest: %w", b.JobID, err)
	}
	var full messages.Backup
	if err := json.Unmarshal(data, &full); err != nil {
		return b, fmt.Errorf("backup %s manifest: %w", b.JobID, err)
	}
	return full, nil
}

func resultKey(taskID string) string { return taskID }

// snapshotRefs returns every snapshot the job's snapshot tasks reported,
// and how many task results it read.
func (e *engine) snapshotRefs(ctx context.Context, job string) ([]messages.SnapshotRef, int, error) {
	lister, err := e.h.Jobs.ListKeysFiltered(ctx, job+"."+string(messages.KindSnapshot)+".*")
	if err != nil {
		return nil, 0, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	// One read per snapshot task, several at a time: a job of thousands of
	// volumes would otherwise wait a round trip per task.
	parts := make([][]messages.SnapshotRef, len(keys))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	sem := make(chan struct{}, effectConcurrency)
	for n, k := range keys {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			entry, err := e.h.Jobs.Get(ctx, k)
			if err != nil {
				errs[n] = fmt.Errorf("task result %s: %w", k, err)
				return
			}
			if err := json.Unmarshal(entry.Value(), &parts[n]); err != nil {
				errs[n] = fmt.Errorf("task result %s: %w", k, err)
			}
		}()
	}
	wg.Wait()
	var refs []messages.SnapshotRef
	for n := range keys {
		if errs[n] != nil {
			return nil, 0, errs[n]
		}
		refs = append(refs, parts[n]...)
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Node != refs[j].Node {
			return refs[i].Node < refs[j].Node
		}
		return refs[i].VolumeID < refs[j].VolumeID
	})
	return refs, len(keys), nil
}

// Backups returns a cluster's catalog records, newest first.
func Backups(ctx context.Context, catalog jetstream.KeyValue, cluster string) ([]messages.Backup, error) {
	lister, err := catalog.ListKeysFiltered(ctx, cluster+".*")
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	out := make([]messages.Backup, 0, len(keys))
	for _, k := range keys {
		entry, err := catalog.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var b messages.Backup
		if err := json.Unmarshal(entry.Value(), &b); err != nil {
			return nil, fmt.Errorf("catalog %s: %w", k, err)
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].FinishedAt.Equal(out[j].FinishedAt) {
			return out[i].FinishedAt.After(out[j].FinishedAt)
		}
		return out[i].JobID > out[j].JobID
	})
	return out, nil
}

// SelectRetired returns the job IDs of the backups to retire under
// keep-last-N: everything but the newest keepLast. keepLast below 1 retires
// nothing, so the newest backup is never selected. backups must be newest
// first, as Backups returns them. The answer depends only on its input, so
// two runs over the same catalog retire the same backups.
func SelectRetired(backups []messages.Backup, keepLast int) []string {
	if keepLast < 1 || len(backups) <= keepLast {
		return nil
	}
	var out []string
	for _, b := range backups[keepLast:] {
		out = append(out, b.JobID)
	}
	sort.Strings(out)
	return out
}

func (e *engine) selectRetired(ctx context.Context, p *Plan) ([]string, error) {
	if p.Policy.KeepLast < 1 {
		return nil, nil
	}
	backups, err := Backups(ctx, e.h.Catalog, p.Cluster)
	if err != nil {
		return nil, err
	}
	// Only backups of this policy count against its keep-last.
	var mine []messages.Backup
	for _, b := range backups {
		if b.Policy == p.Policy.Name {
			mine = append(mine, b)
		}
	}
	retired := SelectRetired(mine, p.Policy.KeepLast)
	// The job being finished is the newest backup; never retire it.
	retired = removeString(retired, p.JobID)
	return retired, nil
}

func removeString(xs []string, s string) []string {
	out := xs[:0]
	for _, x := range xs {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// report publishes phase events and tells the observer about transitions
// that were stored.
func (e *engine) report(ctx context.Context, p *Plan, r *record, ts []transition) {
	for _, t := range ts {
		log := e.log.With().Str("job_id", r.ID).Str("cluster", r.Cluster).Logger()
		ev := messages.PhaseEvent{Schema: messages.JobSchema, JobID: r.ID, From: t.from, To: t.to, At: t.at, Error: t.err}
		if data, err := json.Marshal(ev); err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := e.js.Publish(pctx, messages.SubjectPhaseEvent(r.ID), data,
				jetstream.WithMsgID(r.ID+".phase."+string(t.to))); err != nil {
				log.Warn().Err(err).Msg("phase event not published")
			}
			cancel()
		}
		if from, ok := r.PhaseTimes[t.from]; ok {
			e.obs.PhaseFinished(r.Cluster, t.from, t.at.Sub(from))
		}
		if t.from == messages.PhaseFlushing && t.to == messages.PhaseSnapshotting {
			wait := t.at.Sub(r.PhaseTimes[messages.PhaseFlushing])
			release := t.at.Sub(r.LastEventAt)
			spread := r.FlushLast.Sub(r.FlushFirst)
			e.obs.BarrierReleased(r.Cluster, wait, release, spread)
			log.Info().Dur("barrier_wait", wait).Dur("flush_spread", spread).Int("nodes", len(p.Nodes)).
				Msg("every node flushed; snapshots released")
		}
		if t.from == messages.PhaseFlushing && t.to.Terminal() {
			reason := "failed"
			if strings.Contains(t.err, "deadline") {
				reason = "deadline"
			} else if t.to == messages.PhaseCancelled {
				reason = "cancelled"
			}
			e.obs.BarrierFailed(r.Cluster, reason)
		}
		ev2 := log.Info()
		if t.to == messages.PhaseFailed {
			ev2 = log.Error()
		}
		ev2.Str("from", string(t.from)).Str("to", string(t.to)).Str("error", t.err).Msg("job phase changed")
		if t.to.Terminal() {
			e.obs.JobFinished(r.Cluster, t.to, t.at.Sub(r.CreatedAt))
			if t.to == messages.PhaseSucceeded {
				e.obs.BackupSucceeded(r.Cluster, t.at)
			}
		}
	}
}
