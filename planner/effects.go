package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// Deadlines of clean-up tasks, which must run even after their job ended.
const cleanupTaskTimeout = time.Hour

func (e *engine) effect(ctx context.Context, p *Plan, r *record, fx effect) (effectResult, error) {
	now := e.now()
	// A job that failed or was cancelled only cleans up: effects queued
	// before it ended that would carry it forward are dropped.
	if r.Phase.Terminal() && r.Phase != messages.PhaseSucceeded && !fx.cleansUp() {
		return effectResult{}, nil
	}
	if (fx.Kind == fxClear || fx.Kind == fxReclear) && (fx.Node < 0 || fx.Node >= len(p.Nodes)) {
		return effectResult{}, fmt.Errorf("outbox entry %s: no node %d in the plan", fx, fx.Node)
	}
	switch fx.Kind {
	case fxFlush:
		tasks := make([]messages.Task, 0, len(p.Nodes))
		for i := range p.Nodes {
			if !r.Flushed.has(i) && !r.FlushFailed.has(i) {
				t := p.flushTask(i, r.PhaseDeadline)
				t.FireAt = r.FireAt
				tasks = append(tasks, t)
			}
		}
		return effectResult{}, e.publishTasks(ctx, p, tasks)
	case fxSnapshots:
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
		return effectResult{}, e.publishTasks(ctx, p, tasks)
	case fxReclear:
		// Its own task ID, since the first clear's ID is still in the
		// stream's duplicate window.
		t := p.clearTask(fx.Node, now.Add(cleanupTaskTimeout), r.Flushed.has(fx.Node), false)
		t.ID += reclearSuffix + strconv.Itoa(fx.Seq)
		return effectResult{}, e.publishTasks(ctx, p, []messages.Task{t})
	case fxClear:
		// The clear that follows a node's snapshots in a running job
		// gathers the node's facts for the catalog first; a clean-up's
		// only clears.
		facts := !r.Phase.Terminal() && p.Mode == messages.ModeApplication
		t := p.clearTask(fx.Node, now.Add(cleanupTaskTimeout), r.Flushed.has(fx.Node), facts)
		return effectResult{}, e.publishTasks(ctx, p, []messages.Task{t})
	case fxAwait:
		expect := 0
		for j, u := range p.Units {
			if r.unitRequired(p, j) {
				expect += len(u.Volumes)
			}
		}
		return effectResult{}, e.publishTasks(ctx, p, []messages.Task{p.awaitTask(expect, r.PhaseDeadline)})
	case fxCatalog:
		return e.writeCatalog(ctx, p, r)
	case fxRetention:
		retired, trims, err := e.selectRetired(ctx, p)
		if err != nil {
			return effectResult{}, err
		}
		if len(retired) > 0 || len(trims) > 0 {
			t := p.baseTask(messages.KindRetention, p.Cluster, now.Add(cleanupTaskTimeout))
			t.Retire, t.Trim = retired, trims
			if err := e.publishTasks(ctx, p, []messages.Task{t}); err != nil {
				return effectResult{}, err
			}
		}
		return effectResult{retired: retired, trimmed: len(trims) > 0}, nil
	case fxHooks:
		var tasks []messages.Task
		for _, j := range p.hookTasksAt(fx.Point) {
			if r.HookDone.has(j) || r.HookFailed.has(j) {
				continue
			}
			h := p.Policy.Hooks[p.hooks[j].hook]
			t := p.hookTask(j, hookDeadline(h, fx.Point, r.PhaseDeadline, now))
			if fx.Point == messages.HookComplete {
				t.Outcome, t.Listing = r.Phase, r.Listing
			}
			tasks = append(tasks, t)
		}
		return effectResult{}, e.publishTasks(ctx, p, tasks)
	case fxCleanup:
		t := p.baseTask(messages.KindCleanup, strconv.Itoa(fx.Seq), now.Add(cleanupTaskTimeout))
		t.Retire = []string{p.JobID}
		return effectResult{}, e.publishTasks(ctx, p, []messages.Task{t})
	}
	return effectResult{}, fmt.Errorf("unknown outbox entry %s", fx)
}

// publishTasks publishes tasks asynchronously and waits for every ack. Each
// task's ID is its Nats-Msg-Id, so publishing the same task twice (a crash
// between publish and record update) leaves one message.
func (e *engine) publishTasks(ctx context.Context, p *Plan, tasks []messages.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(tasks))
	for i := range tasks {
		data, err := json.Marshal(&tasks[i])
		if err != nil {
			return err
		}
		f, err := e.js.PublishAsync(p.subject(&tasks[i]), data,
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

// writeCatalog stores the backup's catalog record: the nodes that flushed,
// the tag, every snapshot as the await task last saw it, when every one
// had completed, and the cluster's topology. That listing is the record's
// one source of snapshots and volumes; the nodes' facts, gathered by their
// clear tasks before the catalog is written, are the source of the rest.
func (e *engine) writeCatalog(ctx context.Context, p *Plan, r *record) (effectResult, error) {
	var res effectResult
	listing, err := e.listing(ctx, r)
	if err != nil {
		return res, err
	}
	refs, dups := oneSnapshotPerVolume(listing.Snapshots)
	for _, v := range dups {
		res.warnings = append(res.warnings, fmt.Sprintf("volume %s has more than one snapshot of this job; the earliest is catalogued", v))
	}
	if missing := r.uncovered(p, refs); len(missing) > 0 {
		res.failed = fmt.Sprintf("no completed snapshot found for volume %s", summarize(missing))
		return res, nil
	}
	b := messages.Backup{
		Schema: messages.BackupSchema, JobID: r.ID, Cluster: r.Cluster, Policy: r.Policy, Mode: r.Mode,
		Tag: r.Tag, StartedAt: r.CreatedAt, FinishedAt: e.now(), Snapshots: refs,
		Partial: r.partial(p), Keyspaces: p.Keyspaces,
	}
	if b.Partial {
		b.MissingNodes = r.missingNodes(p)
	}
	for i, n := range p.Nodes {
		if p.Mode == messages.ModeCrash || r.Flushed.has(i) {
			b.Nodes = append(b.Nodes, n)
		}
	}
	b.NodeCount, b.SnapshotCount = len(b.Nodes), len(b.Snapshots)
	b.Regions = snapshotRegions(refs)
	facts, warnings, err := e.nodeFacts(ctx, p, r, b.Nodes)
	if err != nil {
		return res, err
	}
	b.Topology = buildTopology(b.Nodes, facts, listing.Volumes)
	b.Warnings = append(append(b.Warnings, listing.Warnings...), warnings...)
	// The job says what its catalog record lacks, where operators look.
	for _, w := range b.Warnings {
		res.warnings = append(res.warnings, "catalog: "+w)
	}
	// The await task copied every snapshot to each of these (CopyJob)
	// before the catalog was written.
	b.CopyRegions = slices.Clone(p.Policy.CopyRegions)
	data, err := json.Marshal(&b)
	if err != nil {
		return res, err
	}
	key := messages.CatalogKey(r.Cluster, r.ID)
	if len(data) > catalogInlineLimit {
		// The manifest is stored first, so a record never names a
		// manifest that is not there.
		if _, err := e.h.Manifests.PutBytes(ctx, key, data); err != nil {
			return res, fmt.Errorf("store manifest: %w", err)
		}
		b.Nodes, b.Snapshots, b.MissingNodes, b.Topology, b.Manifest = nil, nil, nil, nil, key
		if data, err = json.Marshal(&b); err != nil {
			return res, err
		}
	}
	_, err = e.h.Catalog.Put(ctx, key, data)
	return res, err
}

// snapshotRegions are the regions a backup's snapshots are in, sorted;
// none for a driver without regions.
func snapshotRegions(refs []messages.SnapshotRef) []string {
	var out []string
	for _, r := range refs {
		if r.Region != "" && !slices.Contains(out, r.Region) {
			out = append(out, r.Region)
		}
	}
	slices.Sort(out)
	return out
}

// listing reads the snapshots the await task stored. A record whose await
// ended under the previous release has no listing: its snapshot tasks'
// results, kept beside the record, stand in.
func (e *engine) listing(ctx context.Context, r *record) (messages.Listing, error) {
	if r.Listing == "" {
		refs, results, err := e.legacySnapshotRefs(ctx, r.ID)
		if err != nil {
			return messages.Listing{}, err
		}
		// A listing can come up short (a stream replica still catching
		// up after a restart): fail the effect, to be retried.
		if want := r.SnapDone.count(); results < want {
			return messages.Listing{}, fmt.Errorf("catalog: %d of %d snapshot task results visible", results, want)
		}
		return messages.Listing{Schema: messages.ListingSchema, Snapshots: refs}, nil
	}
	data, err := e.h.Plans.GetBytes(ctx, r.Listing)
	if err != nil {
		return messages.Listing{}, fmt.Errorf("snapshot listing %s: %w", r.Listing, err)
	}
	l, err := messages.DecodeListing(data)
	if err != nil {
		return messages.Listing{}, fmt.Errorf("snapshot listing %s: %w", r.Listing, err)
	}
	return l, nil
}

// oneSnapshotPerVolume keeps the earliest snapshot of each volume. Two
// snapshots of one volume mean a task ran twice at once; the earlier one was
// taken while the node's hard links were certainly there. The rest are
// deleted with the job's snapshots when it is retired.
func oneSnapshotPerVolume(refs []messages.SnapshotRef) ([]messages.SnapshotRef, []string) {
	sort.Slice(refs, func(i, j int) bool {
		a, b := refs[i], refs[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		if a.VolumeID != b.VolumeID {
			return a.VolumeID < b.VolumeID
		}
		if !a.StartTime.Equal(b.StartTime) {
			return a.StartTime.Before(b.StartTime)
		}
		return a.SnapshotID < b.SnapshotID
	})
	out := refs[:0]
	var dups []string
	for k, ref := range refs {
		if k > 0 && ref.VolumeID == refs[k-1].VolumeID && ref.Node == refs[k-1].Node {
			if len(dups) == 0 || dups[len(dups)-1] != ref.VolumeID {
				dups = append(dups, ref.VolumeID)
			}
			continue
		}
		out = append(out, ref)
	}
	return out, dups
}

// uncovered names the volumes of the backup that have no snapshot in refs.
func (r *record) uncovered(p *Plan, refs []messages.SnapshotRef) []string {
	have := make(map[string]bool, len(refs))
	for _, ref := range refs {
		have[ref.VolumeID] = true
	}
	var missing []string
	for j, u := range p.Units {
		if !r.unitRequired(p, j) {
			continue
		}
		for _, k := range u.Volumes {
			if v := p.Nodes[u.Node].Volumes[k].ID; !have[v] {
				missing = append(missing, v)
			}
		}
	}
	return missing
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
	// What retention deleted since is noted in the catalog record only.
	full.SourceDeleted, full.DeletedCopies = b.SourceDeleted, b.DeletedCopies
	return full, nil
}

func resultKey(taskID string) string { return taskID }

// legacySnapshotRefs returns every snapshot the job's snapshot tasks
// reported under the previous release, and how many task results it read.
func (e *engine) legacySnapshotRefs(ctx context.Context, job string) ([]messages.SnapshotRef, int, error) {
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

// selectRetired selects the backups of the job's policy that no region
// keeps (retired whole) and the regions' snapshots to delete of those some
// region still keeps (trims).
func (e *engine) selectRetired(ctx context.Context, p *Plan) ([]string, []messages.Trim, error) {
	sets := p.Policy.RetentionSets()
	if !AnyRule(sets) {
		return nil, nil, nil
	}
	backups, err := Backups(ctx, e.h.Catalog, p.Cluster)
	if err != nil {
		return nil, nil, err
	}
	// Only backups of this policy count against its rules.
	var mine []messages.Backup
	for _, b := range backups {
		if b.Policy == p.Policy.Name {
			mine = append(mine, b)
		}
	}
	holds, err := Holds(ctx, e.h.Holds, p.Cluster)
	if err != nil {
		return nil, nil, err
	}
	retired, trims := RetiredAndTrimmed(SelectRegionRetention(mine, sets, holds, e.now()))
	// The job being finished is the newest backup; never retire it.
	retired = removeString(retired, p.JobID)
	trims = slices.DeleteFunc(trims, func(t messages.Trim) bool { return t.JobID == p.JobID })
	return retired, trims, nil
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
			log.Info().Int64("barrier_wait_ms", wait.Milliseconds()).Int64("flush_spread_ms", spread.Milliseconds()).Int("nodes", len(p.Nodes)).
				Msg("every node flushed; snapshots released")
		}
		if t.from == messages.PhaseFlushing && t.to.Terminal() {
			why := BarrierNodeFailed
			switch {
			case t.reason.Deadline():
				why = BarrierDeadline
			case t.reason == ReasonCancelled:
				why = BarrierCancelled
			}
			e.obs.BarrierFailed(r.Cluster, why)
		}
		ev2 := log.Info()
		if t.to == messages.PhaseFailed {
			ev2 = log.Error()
		}
		ev2 = ev2.Str("from", string(t.from)).Str("to", string(t.to))
		if t.err != "" {
			ev2 = ev2.Str("error", t.err).Str("reason", string(t.reason))
		}
		ev2.Msg("job phase changed")
		if t.to.Terminal() {
			e.obs.JobFinished(r.Cluster, t.to, t.at.Sub(r.CreatedAt))
			if t.to == messages.PhaseSucceeded {
				e.obs.BackupSucceeded(r.Cluster, t.at, r.partial(p))
			}
		}
	}
}
