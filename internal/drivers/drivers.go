package drivers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// Hooks let observability count driver errors without the drivers
// importing a metrics library.
type Hooks struct {
	EC2Error func(op, code string)
	SSHError func(code string)
}

// Env is what a factory may use.
type Env struct {
	Ctx    context.Context
	Log    zerolog.Logger
	Hooks  Hooks
	Extras map[string]any
}

// RunnerFactory builds a command runner for a cluster.
type RunnerFactory func(env Env, cl config.Cluster) (nodetool.Runner, io.Closer, error)

// SnapshotterFactory builds a volume snapshotter for a cluster.
type SnapshotterFactory func(env Env, cl config.Cluster) (worker.Snapshotter, error)

// DiscovererFactory builds a discoverer for a cluster with a discovery section.
type DiscovererFactory func(env Env, cl config.Cluster) (planner.Discoverer, error)

var (
	regMu       sync.Mutex
	runners     = map[string]RunnerFactory{}
	snapshotter = map[string]SnapshotterFactory{}
	discoverers = map[string]DiscovererFactory{}
)

// RegisterRunner makes an executor kind available.
func RegisterRunner(kind string, f RunnerFactory) {
	regMu.Lock()
	defer regMu.Unlock()
	runners[kind] = f
}

// RegisterSnapshotter makes a snapshotter kind available.
func RegisterSnapshotter(kind string, f SnapshotterFactory) {
	regMu.Lock()
	defer regMu.Unlock()
	snapshotter[kind] = f
}

// RegisterDiscoverer makes a discovery kind available ("ec2").
func RegisterDiscoverer(kind string, f DiscovererFactory) {
	regMu.Lock()
	defer regMu.Unlock()
	discoverers[kind] = f
}

// Registry builds drivers on first use and keeps them for reuse (an SSH
// executor's connections, an EC2 client).
type Registry struct {
	cfg *config.Config
	env Env

	mu      sync.Mutex
	tools   map[string]worker.NodeTool
	snaps   map[string]worker.Snapshotter
	discs   map[string]planner.Discoverer
	closers []io.Closer
}

var _ worker.Drivers = (*Registry)(nil)

// New makes a registry over cfg. ctx bounds driver set-up calls (an STS
// role assumption, say), not the drivers' lifetime.
func New(ctx context.Context, cfg *config.Config, log zerolog.Logger, hooks Hooks) *Registry {
	return &Registry{cfg: cfg, env: Env{Ctx: ctx, Log: log, Hooks: hooks, Extras: map[string]any{}},
		tools: map[string]worker.NodeTool{}, snaps: map[string]worker.Snapshotter{}, discs: map[string]planner.Discoverer{}}
}

// SetExtra hands a factory something only the caller has (a JetStream
// bucket for pinned host keys, say).
func (r *Registry) SetExtra(key string, v any) { r.env.Extras[key] = v }

func (r *Registry) cluster(name string) (config.Cluster, error) {
	cl, ok := r.cfg.Cluster(name)
	if !ok {
		return config.Cluster{}, fmt.Errorf("cluster %q is not in this worker's configuration", name)
	}
	return *cl, nil
}

// ExecutorKind is the cluster's executor, "ssh" by default.
func ExecutorKind(cl config.Cluster) string {
	if cl.Executor == "" {
		return "ssh"
	}
	return cl.Executor
}

// SnapshotterKind is the cluster's snapshotter, "ebs" by default.
func SnapshotterKind(cl config.Cluster) string {
	if cl.Snapshotter == "" {
		return "ebs"
	}
	return cl.Snapshotter
}

// NodeTool returns the cluster's nodetool client.
func (r *Registry) NodeTool(name string) (worker.NodeTool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.tools[name]; ok {
		return t, nil
	}
	cl, err := r.cluster(name)
	if err != nil {
		return nil, err
	}
	c, err := r.client(cl)
	if err != nil {
		return nil, err
	}
	r.tools[name] = c
	return c, nil
}

// Client returns a nodetool client for a cluster (for preflight checks).
func (r *Registry) Client(name string) (*nodetool.Client, error) {
	t, err := r.NodeTool(name)
	if err != nil {
		return nil, err
	}
	c, ok := t.(*nodetool.Client)
	if !ok {
		return nil, errors.New("not a nodetool client")
	}
	return c, nil
}

func (r *Registry) client(cl config.Cluster) (*nodetool.Client, error) {
	kind := ExecutorKind(cl)
	regMu.Lock()
	f := runners[kind]
	regMu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("cluster %q: executor %q is not available in this build", cl.Name, kind)
	}
	runner, closer, err := f(r.env, cl)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %s executor: %w", cl.Name, kind, err)
	}
	if closer != nil {
		r.closers = append(r.closers, closer)
	}
	c := &nodetool.Client{Runner: runner, Base: cl.Nodetool, Env: cl.NodetoolEnv, Sudo: cl.SSH.Sudo, PerNode: map[string][]string{}}
	for _, n := range cl.Nodes {
		if len(n.Nodetool) > 0 {
			c.PerNode[n.Name] = n.Nodetool
		}
	}
	return c, nil
}

// Snapshotter returns the cluster's volume snapshotter.
func (r *Registry) Snapshotter(name string) (worker.Snapshotter, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.snaps[name]; ok {
		return s, nil
	}
	cl, err := r.cluster(name)
	if err != nil {
		return nil, err
	}
	kind := SnapshotterKind(cl)
	regMu.Lock()
	f := snapshotter[kind]
	regMu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("cluster %q: snapshotter %q is not available in this build", name, kind)
	}
	s, err := f(r.env, cl)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %s snapshotter: %w", name, kind, err)
	}
	r.snaps[name] = s
	return s, nil
}

// Discoverer returns how the planner finds the cluster's nodes. It is kept
// per cluster, so credentials (an assumed role) are reused across jobs.
func (r *Registry) Discoverer(cl config.Cluster) planner.Discoverer {
	if cl.Discovery == nil {
		return planner.StaticDiscoverer{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.discs[cl.Name]; ok {
		return d
	}
	regMu.Lock()
	f := discoverers["ec2"]
	regMu.Unlock()
	if f == nil {
		return failingDiscoverer{fmt.Errorf("cluster %q: EC2 discovery is not available in this build", cl.Name)}
	}
	d, err := f(r.env, cl)
	if err != nil {
		return failingDiscoverer{err}
	}
	r.discs[cl.Name] = d
	return d
}

type failingDiscoverer struct{ err error }

func (f failingDiscoverer) Discover(context.Context, config.Cluster) ([]messages.Node, error) {
	return nil, f.err
}

// Close releases connections.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, c := range r.closers {
		errs = append(errs, c.Close())
	}
	r.closers = nil
	return errors.Join(errs...)
}
