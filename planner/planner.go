package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/internal/startstop"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// PlannerConfig tunes a Planner.
type PlannerConfig struct {
	Options
	// Inventory is the clusters and policies requests may name.
	Inventory Inventory
	// Discoverer finds a cluster's nodes; StaticDiscoverer when nil.
	Discoverer Discoverer
	// SyncSchedules makes the JetStream schedules of the inventory's
	// clusters match its policies (SyncClusterSchedules) and DrillSchedules
	// (SyncDrillSchedules) at start; other clusters' schedules are left
	// alone.
	SyncSchedules bool
	// DrillSchedules are the drill schedules of the inventory's clusters.
	DrillSchedules []DrillSchedule
	// MaxDeliver must match the planner consumer's (default
	// topology.PlannerMaxDeliver): a request for a cluster this planner does
	// not know is copied before its last delivery (topology.HandBack).
	MaxDeliver int
	// HandbackBase and HandbackMax shape the wait of a request handed back
	// to a planner that has its cluster: doubling from base with each
	// delivery, at most max (default 1s and 2m).
	HandbackBase time.Duration
	HandbackMax  time.Duration
}

// Planner consumes JobRequests: it validates each, resolves its cluster,
// stores the plan, creates the job record and publishes the first tasks.
// Replicas share one durable consumer.
type Planner struct {
	e    *engine
	rs   *restores
	cfg  PlannerConfig
	life startstop.Service

	mu     sync.Mutex
	cc     jetstream.ConsumeContext
	rcc    jetstream.ConsumeContext
	cancel context.CancelFunc

	// replicas caches the replicas bucket briefly: during a rolling update
	// every request for a cluster this planner lacks asks it.
	replicasMu sync.Mutex
	replicas   []messages.Replica
	replicasAt time.Time
}

// replicasFresh is how long a read of the replicas bucket is reused.
const replicasFresh = 2 * time.Second

// NewPlanner makes a planner.
func NewPlanner(js jetstream.JetStream, h *topology.Handles, cfg PlannerConfig) *Planner {
	if cfg.Discoverer == nil {
		cfg.Discoverer = StaticDiscoverer{}
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = topology.PlannerMaxDeliver
	}
	if cfg.HandbackBase == 0 {
		cfg.HandbackBase = time.Second
	}
	if cfg.HandbackMax == 0 {
		cfg.HandbackMax = 2 * time.Minute
	}
	e := newEngine(js, h, cfg.Options)
	return &Planner{e: e, rs: newRestores(e), cfg: cfg, life: startstop.Service{Name: "planner"}}
}

// Start binds to the planner consumer. A planner that was stopped can be
// started again.
func (p *Planner) Start(ctx context.Context) error {
	p.life.Lock()
	defer p.life.Unlock()
	if err := p.life.BeginStart(); err != nil {
		return err
	}
	if err := p.start(ctx); err != nil {
		_ = p.stop(context.WithoutCancel(ctx))
		return err
	}
	p.life.EndStart()
	return nil
}

func (p *Planner) start(ctx context.Context) error {
	if p.cfg.SyncSchedules {
		// Never nil: a planner with no cluster syncs no cluster's
		// schedules, not every one.
		clusters := make([]string, 0, len(p.cfg.Inventory.Clusters))
		for _, c := range p.cfg.Inventory.Clusters {
			clusters = append(clusters, c.Name)
		}
		changes, err := SyncClusterSchedules(ctx, p.e.js, p.cfg.Inventory.Policies, clusters)
		if err != nil {
			return fmt.Errorf("schedules: %w", err)
		}
		drills, err := SyncDrillSchedules(ctx, p.e.js, p.cfg.DrillSchedules, clusters)
		if err != nil {
			return fmt.Errorf("drill schedules: %w", err)
		}
		for _, c := range append(changes, drills...) {
			if c.Action == "unchanged" {
				continue
			}
			if c.Drill {
				p.e.log.Info().Str("cluster", c.Cluster).Str("schedule", c.Schedule).
					Str("action", c.Action).Msg("drill schedule synchronised")
			} else {
				p.e.log.Info().Str("cluster", c.Cluster).Str("policy", c.Policy).Str("schedule", c.Schedule).
					Str("action", c.Action).Msg("policy schedule synchronised")
			}
		}
	}
	cons, err := p.e.js.Consumer(ctx, messages.StreamJobs, topology.ConsumerPlanner)
	if err != nil {
		return err
	}
	// Requests in hand run on a context of their own, so Stop can let them
	// finish while nothing new is fetched.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.mu.Lock()
	p.cancel = cancel
	p.mu.Unlock()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		done, ok := p.life.Admit()
		if !ok {
			_ = m.NakWithDelay(0)
			return
		}
		defer done()
		p.handle(runCtx, m)
	}, jetstream.PullMaxMessages(16))
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cc = cc
	p.mu.Unlock()
	rcons, err := p.e.js.Consumer(ctx, messages.StreamJobs, topology.ConsumerRestores)
	if err != nil {
		return err
	}
	rcc, err := rcons.Consume(func(m jetstream.Msg) {
		done, ok := p.life.Admit()
		if !ok {
			_ = m.NakWithDelay(0)
			return
		}
		defer done()
		p.handleRestore(runCtx, m)
	}, jetstream.PullMaxMessages(4))
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.rcc = rcc
	p.mu.Unlock()
	return nil
}

// Ready reports whether the planner is consuming.
func (p *Planner) Ready() error { return p.life.Ready() }

// Stop stops consuming and waits for the requests in hand. If ctx ends
// first, they are cancelled (and redelivered) and Stop returns ctx's error.
func (p *Planner) Stop(ctx context.Context) error {
	p.life.Lock()
	defer p.life.Unlock()
	return p.stop(ctx)
}

func (p *Planner) stop(ctx context.Context) error {
	if !p.life.BeginStop() {
		return nil
	}
	p.mu.Lock()
	cc, rcc, cancel := p.cc, p.rcc, p.cancel
	p.cc, p.rcc, p.cancel = nil, nil, nil
	p.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
	if rcc != nil {
		rcc.Stop()
	}
	err := p.life.Wait(ctx)
	if cancel != nil {
		cancel()
	}
	if err != nil {
		_ = p.life.Wait(context.WithoutCancel(ctx))
	}
	p.life.EndStop()
	return err
}

// RejectError is a request refused for a reason retrying cannot fix.
type RejectError struct {
	// Class is a short, bounded reason for metrics.
	Class  string
	Reason string
}

func (e *RejectError) Error() string { return e.Reason }

func reject(class, format string, a ...any) error {
	return &RejectError{Class: class, Reason: fmt.Sprintf(format, a...)}
}

// ScheduledRequestID gives each firing of a schedule its own request ID:
// the schedule's request ID and the firing's time in the stream. A
// redelivered firing keeps its time, so it still makes one job (or one
// drill).
func ScheduledRequestID(requestID string, m jetstream.Msg) (string, bool) {
	if m.Headers().Get(jetstream.SchedulerHeader) == "" {
		return "", false
	}
	meta, err := m.Metadata()
	if err != nil {
		return "", false
	}
	return requestID + "@" + meta.Timestamp.UTC().Format("20060102T150405Z"), true
}

func (p *Planner) handle(ctx context.Context, m jetstream.Msg) {
	req, err := messages.DecodeJobRequest(m.Data())
	scheduled := false
	if id, ok := ScheduledRequestID(req.RequestID, m); ok && err == nil {
		req.RequestID, scheduled = id, true
		err = req.Validate()
	}
	jobID := messages.InvalidJobID
	if messages.ValidateRequestID(req.RequestID) == nil && messages.ValidateCluster(req.Cluster) == nil {
		jobID = req.JobID()
	}
	log := p.e.log.With().Str("job_id", jobID).Str("request_id", messages.Bound(req.RequestID, maxRequestIDEcho)).
		Str("cluster", messages.Bound(req.Cluster, messages.MaxEchoBytes)).Logger()
	if err != nil {
		class := RejectInvalid
		if errors.Is(err, messages.ErrMalformed) {
			class = RejectMalformed
		}
		p.rejectMsg(ctx, m, req, jobID, &RejectError{Class: class, Reason: err.Error()})
		return
	}
	if _, ok := p.cfg.Inventory.Cluster(req.Cluster); !ok {
		p.unknown(ctx, m, req, jobID, scheduled, log, &RejectError{Class: "unknown_cluster",
			Reason: fmt.Sprintf("unknown cluster %q: no running planner has it in its configuration", req.Cluster)},
			func(r messages.Replica) bool { return r.Knows(messages.RolePlanner, req.Cluster) })
		return
	}
	if _, err := p.cfg.Inventory.Policy(req.Cluster, req.Policy); err != nil && req.Policy != "" {
		p.unknown(ctx, m, req, jobID, scheduled, log, &RejectError{Class: "unknown_policy",
			Reason: fmt.Sprintf("%v, nor has any running planner", err)},
			func(r messages.Replica) bool { return r.KnowsPolicy(messages.RolePlanner, req.Cluster, req.Policy) })
		return
	}
	created, err := p.Submit(ctx, req)
	var rej *RejectError
	switch {
	case errors.As(err, &rej):
		p.rejectMsg(ctx, m, req, jobID, rej)
	case err != nil:
		log.Warn().Err(err).Msg("request not planned; will retry")
		_ = m.NakWithDelay(2 * time.Second)
	default:
		if created {
			log.Info().Msg("job planned")
		} else {
			log.Info().Msg("duplicate request; job already exists")
		}
		_ = m.DoubleAck(ctx)
	}
}

// maxRequestIDEcho bounds a request ID echoed in a rejection or a log line:
// every valid one fits whole.
const maxRequestIDEcho = 256

// unknown answers a request for a cluster (or a cluster's policy) this
// planner's configuration lacks. During a rolling update another planner
// may have it: the request is handed back for that one, never rejected
// here. Only when no running planner has it (knows says which do) is it
// rejected with rej, or a mistyped name would be redelivered for ever.
func (p *Planner) unknown(ctx context.Context, m jetstream.Msg, req messages.JobRequest, jobID string, scheduled bool,
	log zerolog.Logger, rej *RejectError, knows func(messages.Replica) bool) {
	known, err := p.knownElsewhere(ctx, knows)
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("request names what this planner's configuration lacks, and the other replicas cannot be read; will retry")
		_ = m.NakWithDelay(2 * time.Second)
	case !known:
		p.rejectMsg(ctx, m, req, jobID, rej)
	default:
		delay := topology.HandbackDelay(m, p.cfg.HandbackBase, p.cfg.HandbackMax)
		copied, err := topology.HandBack(ctx, p.e.js, m, p.cfg.MaxDeliver, delay, func(c *nats.Msg) {
			if scheduled {
				// The copy is no firing of the schedule: it carries the
				// request ID the firing was given.
				c.Header.Del(jetstream.SchedulerHeader)
				if data, err := json.Marshal(req); err == nil {
					c.Data = data
				}
			}
		})
		p.e.obs.RequestHandedBack()
		ev := log.Info()
		if err != nil {
			ev = log.Warn().Err(err)
		}
		ev.Bool("copied", copied).Int64("retry_in_ms", delay.Milliseconds()).Str("policy", req.Policy).
			Msg("cluster or policy not in this planner's configuration; request left for a planner that has it")
	}
}

// knownElsewhere reports whether a running replica knows what a request
// names (knows), as the replicas bucket says.
func (p *Planner) knownElsewhere(ctx context.Context, knows func(messages.Replica) bool) (bool, error) {
	p.replicasMu.Lock()
	defer p.replicasMu.Unlock()
	if now := time.Now(); now.Sub(p.replicasAt) > replicasFresh {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		reps, err := topology.LiveReplicas(rctx, p.e.h.Replicas)
		if err != nil {
			return false, err
		}
		p.replicas, p.replicasAt = reps, now
	}
	return slices.ContainsFunc(p.replicas, knows), nil
}

func (p *Planner) rejectMsg(ctx context.Context, m jetstream.Msg, req messages.JobRequest, jobID string, rej *RejectError) {
	p.e.obs.RequestRejected(rej.Class)
	requestID := messages.Bound(req.RequestID, maxRequestIDEcho)
	reason := messages.Bound(rej.Reason, messages.MaxReasonBytes)
	p.e.log.Warn().Str("job_id", jobID).Str("request_id", requestID).Str("code", rej.Class).Str("reason", reason).Msg("job request rejected")
	ev := messages.Rejection{Schema: messages.JobRequestSchema, RequestID: requestID, JobID: jobID,
		Code: rej.Class, Reason: reason, At: p.e.now()}
	if rej.Class != "malformed" {
		ev.RequestDigest = req.Digest()
	}
	if data, err := json.Marshal(ev); err == nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = p.e.js.Publish(pctx, messages.SubjectRejected(jobID), data)
		cancel()
	}
	_ = m.TermWithReason(messages.Bound(rej.Reason, 200))
}

// checkClaim rejects a request whose ID already named a different request.
func (p *Planner) checkClaim(ctx context.Context, req messages.JobRequest) error {
	if p.e.h.Requests == nil {
		return nil
	}
	e, err := p.e.h.Requests.Get(ctx, messages.RequestKey(req.RequestID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return reused(req, e.Value())
}

// claimRequest records that req's ID names req, unless it names another
// request already.
func (p *Planner) claimRequest(ctx context.Context, req messages.JobRequest) error {
	if p.e.h.Requests == nil {
		return nil
	}
	data, err := json.Marshal(messages.RequestClaim{Schema: messages.RequestClaimSchema, RequestID: req.RequestID,
		JobID: req.JobID(), Digest: req.Digest(), At: p.e.now()})
	if err != nil {
		return err
	}
	key := messages.RequestKey(req.RequestID)
	_, err = p.e.h.Requests.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Claimed meanwhile, by this request redelivered or by another.
		return p.checkClaim(ctx, req)
	}
	return err
}

// reused rejects req when the stored claim names another request.
func reused(req messages.JobRequest, stored []byte) error {
	var c messages.RequestClaim
	if err := json.Unmarshal(stored, &c); err != nil || c.Schema != messages.RequestClaimSchema {
		return nil
	}
	if c.Digest == req.Digest() && c.JobID == req.JobID() {
		return nil
	}
	return reject(ReasonRequestIDReused,
		"request_id %q already named a different request (job %s, submitted %s): a request ID names one backup; send this request with a new request_id",
		messages.Bound(req.RequestID, maxRequestIDEcho), c.JobID, c.At.UTC().Format(time.RFC3339))
}

// ReasonRequestIDReused is the rejection class of a request whose ID
// already named a different request.
const ReasonRequestIDReused = "request_id_reused"

// Plan validates a request against the configuration and builds its plan,
// without storing or publishing anything.
func (p *Planner) Plan(ctx context.Context, req messages.JobRequest) (*Plan, error) {
	if err := req.Validate(); err != nil {
		return nil, reject(RejectInvalid, "invalid job request: %v", err)
	}
	now := p.e.now()
	if err := req.CheckDeadline(now); err != nil {
		return nil, reject(RejectInvalid, "invalid job request: %v", err)
	}
	cl, ok := p.cfg.Inventory.Cluster(req.Cluster)
	if !ok {
		return nil, reject(RejectUnknownCluster, "unknown cluster %q: not in the configuration", req.Cluster)
	}
	policy, err := p.cfg.Inventory.Policy(req.Cluster, req.Policy)
	if err != nil {
		return nil, reject(RejectUnknownPolicy, "%v", err)
	}
	nodes, err := p.cfg.Discoverer.Discover(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("discover cluster %q: %w", req.Cluster, err)
	}
	nodes = p.withKnownDirs(ctx, req.Cluster, withClusterDirs(nodes, cl.Dirs))
	plan, err := BuildPlan(req, policy, nodes, cl.PerInstance, now)
	if err != nil {
		return nil, reject(RejectInvalidPlan, "cluster %q: %v", req.Cluster, err)
	}
	plan.Agent = cl.Agent
	return plan, nil
}

// Submit plans a request and starts its job. It returns false, with no
// error, when the request's job already exists: a request is a job once. A
// request ID that already named a different request (another body, another
// cluster) is rejected, however long ago it was used: the JetStream
// duplicate window hides such a reuse from the planner only within it.
func (p *Planner) Submit(ctx context.Context, req messages.JobRequest) (bool, error) {
	jobID := req.JobID()
	if err := p.checkClaim(ctx, req); err != nil {
		return false, err
	}
	if _, err := p.e.h.Jobs.Get(ctx, jobID); err == nil {
		return false, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, err
	}
	plan, err := p.Plan(ctx, req)
	if err != nil {
		return false, err
	}
	if err := p.claimRequest(ctx, req); err != nil {
		return false, err
	}
	data, err := json.Marshal(plan)
	if err != nil {
		return false, err
	}
	// The plan is stored before the record that refers to it, so any
	// replica that sees the record can load the plan.
	if _, err := p.e.h.Plans.PutBytes(ctx, jobID, data); err != nil {
		return false, fmt.Errorf("store plan: %w", err)
	}
	p.e.cachePlan(plan)
	rec := newRecord(plan, p.e.now())
	recData, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	unlock := p.e.lock(jobID)
	defer unlock()
	rev, err := p.e.h.Jobs.Create(ctx, jobID, recData)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create job record: %w", err)
	}
	p.e.obs.JobStarted(plan.Cluster)
	p.e.report(ctx, plan, rec, []transition{{from: "", to: messages.PhasePlanned, at: rec.CreatedAt}})
	// Publishing the first tasks here saves a round trip through the
	// coordinator; if this process dies first, the sweep finishes it.
	if err := p.e.drain(ctx, plan, rec, rev); err != nil {
		p.e.log.Warn().Err(err).Str("job_id", jobID).Msg("first tasks not published yet; the coordinator will retry")
	}
	return true, nil
}

// withKnownDirs gives each node without configured data directories the
// directories the cluster's newest backup found on it, so its flush syncs
// only the file systems that hold them (without any, it syncs every file
// system of the node). nodes is not modified.
func (p *Planner) withKnownDirs(ctx context.Context, cluster string, nodes []messages.Node) []messages.Node {
	need := false
	for _, n := range nodes {
		if n.Dirs == nil || len(n.Dirs.Data) == 0 {
			need = true
		}
	}
	if !need {
		return nodes
	}
	known, err := knownDirs(ctx, p.e.h, cluster)
	if err != nil {
		p.e.log.Warn().Err(err).Str("cluster", cluster).Msg("data directories of the last backup not read; nodes without configured ones sync every file system")
		return nodes
	}
	out := make([]messages.Node, len(nodes))
	for i, n := range nodes {
		out[i] = n
		if n.Dirs != nil && len(n.Dirs.Data) > 0 {
			continue
		}
		if d, ok := known[n.Name]; ok {
			merged := d
			if n.Dirs != nil {
				merged = *n.Dirs
				merged.Data = d.Data
			}
			out[i].Dirs = &merged
		}
	}
	return out
}

// knownDirs maps each node of the cluster's newest backup with a topology
// to the directories its facts name.
func knownDirs(ctx context.Context, h *topology.Handles, cluster string) (map[string]messages.NodeDirs, error) {
	backups, err := Backups(ctx, h.Catalog, cluster)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, err
	}
	for _, b := range backups {
		if b.Topology == nil && b.Manifest == "" {
			continue
		}
		full, err := LoadBackup(ctx, h, b)
		if err != nil {
			return nil, err
		}
		if full.Topology == nil {
			continue
		}
		known := map[string]messages.NodeDirs{}
		for _, f := range full.Topology.Nodes {
			if len(f.Dirs.Data) > 0 && f.Dirs.Validate() == nil {
				known[f.Node] = f.Dirs
			}
		}
		return known, nil
	}
	return nil, nil
}

// withClusterDirs gives each node without directories of its own the
// cluster's. nodes is not modified.
func withClusterDirs(nodes []messages.Node, dirs *messages.NodeDirs) []messages.Node {
	if dirs == nil {
		return nodes
	}
	out := make([]messages.Node, len(nodes))
	for i, n := range nodes {
		if n.Dirs == nil {
			d := *dirs
			d.Data = slices.Clone(dirs.Data)
			n.Dirs = &d
		}
		out[i] = n
	}
	return out
}
