package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// ResolveBackup finds the backup a restore request names ("latest": the
// newest backup of the cluster that is not partial) and reads its full
// record.
func ResolveBackup(ctx context.Context, h *topology.Handles, cluster, backup string) (messages.Backup, error) {
	if backup != messages.Latest {
		entry, err := h.Catalog.Get(ctx, messages.CatalogKey(cluster, backup))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return messages.Backup{}, &RefusalError{Reasons: []string{fmt.Sprintf("backup %s of cluster %s is not in the catalog (retired, or the job did not succeed)", backup, cluster)}}
		}
		if err != nil {
			return messages.Backup{}, err
		}
		var b messages.Backup
		if err := json.Unmarshal(entry.Value(), &b); err != nil {
			return messages.Backup{}, fmt.Errorf("catalog %s: %w", backup, err)
		}
		return LoadBackup(ctx, h, b)
	}
	all, err := Backups(ctx, h.Catalog, cluster)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return messages.Backup{}, err
	}
	for _, b := range all {
		if !b.Partial {
			return LoadBackup(ctx, h, b)
		}
	}
	return messages.Backup{}, &RefusalError{Reasons: []string{fmt.Sprintf("cluster %s has no complete backup in the catalog", cluster)}}
}

// PlanRestore plans a restore from the catalog and the inventory, without
// storing or starting anything: what `quiesce restore plan` shows. The
// nodes of the clusters restored onto are found by disc (their static
// inventory when nil): a cluster found by EC2 discovery is restored onto
// the instances it has now.
func PlanRestore(ctx context.Context, h *topology.Handles, inv Inventory, disc Discoverer, req messages.RestoreRequest, now time.Time) (*RestorePlan, error) {
	if err := req.Validate(); err != nil {
		return nil, &RefusalError{Reasons: []string{err.Error()}}
	}
	if err := req.CheckDeadline(now); err != nil {
		return nil, &RefusalError{Reasons: []string{err.Error()}}
	}
	src, ok := inv.Cluster(req.Cluster)
	if !ok {
		return nil, &RefusalError{Reasons: []string{fmt.Sprintf("unknown cluster %q: not in the configuration", req.Cluster)}}
	}
	if disc == nil {
		disc = StaticDiscoverer{}
	}
	nodesOf := func(c *Cluster) error {
		nodes, err := disc.Discover(ctx, *c)
		if err != nil {
			return fmt.Errorf("discover cluster %q: %w", c.Name, err)
		}
		c.Nodes = withClusterDirs(nodes, c.Dirs)
		return nil
	}
	targets := RestoreTargets{Source: src}
	switch req.Target {
	case messages.TargetInPlace:
		if err := nodesOf(&targets.Source); err != nil {
			return nil, err
		}
	case messages.TargetNewCluster:
		if t, ok := inv.Cluster(req.TargetCluster); ok {
			if err := nodesOf(&t); err != nil {
				return nil, err
			}
			targets.Target = &t
		}
	}
	backup, err := ResolveBackup(ctx, h, req.Cluster, req.Backup)
	if err != nil {
		return nil, err
	}
	return BuildRestorePlan(req, backup, targets, now)
}

// SubmitRestore plans a restore and starts it. It returns false, with no
// error, when the request's restore exists already: a request is a restore
// once. A refused request returns a *RefusalError and starts nothing.
func (p *Planner) SubmitRestore(ctx context.Context, req messages.RestoreRequest) (bool, error) {
	id := req.RestoreID()
	if _, err := p.e.h.Restores.Get(ctx, id); err == nil {
		return false, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, err
	}
	plan, err := PlanRestore(ctx, p.e.h, p.cfg.Inventory, p.cfg.Discoverer, req, p.e.now())
	if err != nil {
		return false, err
	}
	data, err := json.Marshal(plan)
	if err != nil {
		return false, err
	}
	// The plan is stored before the record that refers to it.
	if _, err := p.e.h.Plans.PutBytes(ctx, restorePlanObject(id), data); err != nil {
		return false, fmt.Errorf("store restore plan: %w", err)
	}
	p.rs.cache(plan)
	rec := newRestoreRecord(plan, p.e.now())
	recData, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	unlock := p.e.lock(id)
	defer unlock()
	rev, err := p.e.h.Restores.Create(ctx, id, recData)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create restore record: %w", err)
	}
	if obs, ok := p.e.obs.(RestoreObserver); ok && !plan.Request.DryRun {
		obs.RestoreStarted(plan.Cluster, plan.Target)
	}
	p.rs.report(ctx, rec, []restoreTransition{{from: "", to: rec.Phase, at: rec.CreatedAt}})
	if err := p.rs.drain(ctx, plan, rec, rev); err != nil {
		p.e.log.Warn().Err(err).Str("restore_id", id).Msg("first restore tasks not published yet; the coordinator will retry")
	}
	return true, nil
}

func (p *Planner) handleRestore(ctx context.Context, m jetstream.Msg) {
	req, err := messages.DecodeRestoreRequest(m.Data())
	id := messages.InvalidJobID
	if messages.ValidateRequestID(req.RequestID) == nil && messages.ValidateCluster(req.Cluster) == nil {
		id = req.RestoreID()
	}
	log := p.e.log.With().Str("restore_id", id).Str("request_id", messages.Bound(req.RequestID, maxRequestIDEcho)).
		Str("cluster", messages.Bound(req.Cluster, messages.MaxEchoBytes)).Logger()
	if err == nil {
		if name, known := p.restoreClustersKnown(req); !known {
			p.unknownRestoreCluster(ctx, m, req, id, name, log)
			return
		}
		var created bool
		created, err = p.SubmitRestore(ctx, req)
		if err == nil {
			if created {
				log.Info().Str("target", string(req.Target)).Msg("restore planned")
			} else {
				log.Info().Msg("duplicate restore request; restore already exists")
			}
			_ = m.DoubleAck(ctx)
			return
		}
	}
	var refused *RefusalError
	if err != nil && !errors.Is(err, messages.ErrMalformed) && !errors.As(err, &refused) && req.Validate() == nil {
		log.Warn().Err(err).Msg("restore request not planned; will retry")
		_ = m.NakWithDelay(2 * time.Second)
		return
	}
	class := "refused"
	switch {
	case errors.Is(err, messages.ErrMalformed):
		class = "malformed"
	case refused == nil:
		class = "invalid"
	}
	p.rejectRestore(ctx, m, req, id, class, err.Error(), log)
}

// restoreClustersKnown reports whether this planner's configuration has
// every cluster a restore request names (its backup's, and a new-cluster
// restore's target), or the first it lacks.
func (p *Planner) restoreClustersKnown(req messages.RestoreRequest) (string, bool) {
	names := []string{req.Cluster}
	if req.Target == messages.TargetNewCluster {
		names = append(names, req.TargetCluster)
	}
	for _, n := range names {
		if _, ok := p.cfg.Inventory.Cluster(n); !ok {
			return n, false
		}
	}
	return "", true
}

// unknownRestoreCluster answers a restore request naming a cluster this
// planner's configuration lacks, as unknown does a job request: left for a
// running planner that has every cluster it names, rejected only when
// there is none.
func (p *Planner) unknownRestoreCluster(ctx context.Context, m jetstream.Msg, req messages.RestoreRequest, id, name string, log zerolog.Logger) {
	known, err := p.knownElsewhere(ctx, func(r messages.Replica) bool {
		return r.Knows(messages.RolePlanner, req.Cluster) &&
			(req.Target != messages.TargetNewCluster || r.Knows(messages.RolePlanner, req.TargetCluster))
	})
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("restore request names a cluster this planner's configuration lacks, and the other replicas cannot be read; will retry")
		_ = m.NakWithDelay(2 * time.Second)
	case !known:
		p.rejectRestore(ctx, m, req, id, "unknown_cluster",
			fmt.Sprintf("unknown cluster %q: no running planner has it in its configuration", messages.Bound(name, messages.MaxEchoBytes)), log)
	default:
		delay := topology.HandbackDelay(m, p.cfg.HandbackBase, p.cfg.HandbackMax)
		copied, err := topology.HandBack(ctx, p.e.js, m, topology.RestorePlannerMaxDeliver, delay, nil)
		p.e.obs.RequestHandedBack()
		ev := log.Info()
		if err != nil {
			ev = log.Warn().Err(err)
		}
		ev.Bool("copied", copied).Int64("retry_in_ms", delay.Milliseconds()).Str("unknown_cluster", messages.Bound(name, messages.MaxEchoBytes)).
			Msg("restore names a cluster not in this planner's configuration; request left for a planner that has it")
	}
}

// rejectRestore answers a restore request that starts nothing: the reason
// is published for its submitter, and the message is terminated.
func (p *Planner) rejectRestore(ctx context.Context, m jetstream.Msg, req messages.RestoreRequest, id, class, reason string, log zerolog.Logger) {
	p.e.obs.RequestRejected("restore_" + class)
	reason = messages.Bound(reason, messages.MaxReasonBytes)
	log.Warn().Str("code", class).Str("reason", reason).Msg("restore request rejected")
	ev := messages.Rejection{Schema: messages.RestoreRequestSchema, RequestID: messages.Bound(req.RequestID, maxRequestIDEcho), JobID: id,
		Code: class, Reason: reason, At: p.e.now()}
	if data, merr := json.Marshal(ev); merr == nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = p.e.js.Publish(pctx, messages.SubjectRejected(id), data)
		cancel()
	}
	_ = m.TermWithReason(messages.Bound(reason, 200))
}

// applyRestore applies a batch of events to one restore.
func (c *Coordinator) applyRestore(ctx context.Context, id string, evs []pendingEvent) error {
	now := c.e.now()
	return c.rs.mutate(ctx, id, func(r *restoreRecord, p *RestorePlan) (bool, []restoreTransition) {
		changed := false
		var ts []restoreTransition
		for _, ev := range evs {
			if ev.control != nil {
				if t, ok := r.cancel(p, now, ev.control.By, ev.control.Reason); ok {
					changed = true
					ts = append(ts, t)
				}
				continue
			}
			if r.apply(p, ev.result, now) {
				changed = true
			}
		}
		return changed, ts
	})
}

// sweepRestores enforces restores' deadlines and carries out outboxes a
// crashed process left behind.
func (c *Coordinator) sweepRestores(ctx context.Context) {
	lister, err := c.e.h.Restores.ListKeys(ctx)
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoKeysFound) && ctx.Err() == nil {
			c.e.log.Warn().Err(err).Msg("sweep: list restores")
		}
		return
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	now := c.e.now()
	for _, id := range keys {
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		ended := c.ended[id]
		c.mu.Unlock()
		if ended {
			continue
		}
		rec, _, err := c.rs.load(ctx, id)
		if err != nil {
			continue
		}
		if rec.Phase.Terminal() && len(rec.Outbox) == 0 {
			c.mu.Lock()
			c.ended[id] = true
			c.mu.Unlock()
			continue
		}
		expired := !rec.Phase.Terminal() &&
			((!rec.PhaseDeadline.IsZero() && !now.Before(rec.PhaseDeadline)) ||
				(!rec.Deadline.IsZero() && !now.Before(rec.Deadline)))
		stalled := len(rec.Outbox) > 0 && now.Sub(rec.UpdatedAt) >= c.cfg.StallAfter
		if !expired && !stalled {
			continue
		}
		unlock := c.e.lock(id)
		err = c.rs.mutate(ctx, id, func(r *restoreRecord, p *RestorePlan) (bool, []restoreTransition) {
			if t, ok := r.expire(p, c.e.now()); ok {
				return true, []restoreTransition{t}
			}
			return false, nil
		})
		unlock()
		if err != nil && ctx.Err() == nil {
			c.e.log.Warn().Err(err).Str("restore_id", id).Msg("sweep")
		}
	}
}
