package drivers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// Hooks let observability count driver errors without the drivers
// importing a metrics library.
type Hooks struct {
	EC2Error func(op, code string)
	SSHError func(code string)
}

// Env is what building a driver may use.
type Env struct {
	// Ctx bounds driver set-up calls (an STS role assumption, say), not the
	// drivers' lifetime.
	Ctx   context.Context
	Log   zerolog.Logger
	Hooks Hooks
	// HostKeys pins SSH host keys for clusters that trust on first use; the
	// fleet shares one (ssh.KVKeyStore). Without it such a cluster's
	// executor cannot be built.
	HostKeys ssh.KeyStore
	// Pacer paces every EC2 call of the EBS drivers and of discovery by the
	// budget the fleet shares (built with PaceLimits). Without it EC2 calls
	// are paced by the SDK's retries alone.
	Pacer *pace.Pacer
}

// Registry builds drivers on first use and keeps them for reuse (an SSH
// executor's connections, an EC2 client).
type Registry struct {
	cfg *config.Config
	env Env

	mu      sync.Mutex
	tools   map[string]*nodetool.Client
	snaps   map[string]worker.Snapshotter
	ec2     *ebs.Discoverer
	closers []io.Closer
}

var (
	_ worker.Drivers     = (*Registry)(nil)
	_ planner.Discoverer = (*Registry)(nil)
)

// New makes a registry over cfg.
func New(cfg *config.Config, env Env) *Registry {
	return &Registry{cfg: cfg, env: env, tools: map[string]*nodetool.Client{}, snaps: map[string]worker.Snapshotter{}}
}

func (r *Registry) cluster(name string) (config.Cluster, error) {
	cl, ok := r.cfg.Cluster(name)
	if !ok {
		return config.Cluster{}, fmt.Errorf("cluster %q: %w", name, worker.ErrUnknownCluster)
	}
	return *cl, nil
}

// NodeTool returns the cluster's nodetool client.
func (r *Registry) NodeTool(name string) (worker.NodeTool, error) {
	return r.Client(name)
}

// Client returns a nodetool client for a cluster (for preflight checks).
func (r *Registry) Client(name string) (*nodetool.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.tools[name]; ok {
		return t, nil
	}
	cl, err := r.cluster(name)
	if err != nil {
		return nil, err
	}
	kind := ExecutorKind(cl)
	build, ok := executors[kind]
	if !ok {
		return nil, fmt.Errorf("cluster %q: executor %q is not available in this build", cl.Name, kind)
	}
	runner, closer, err := build(r.env, cl)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %s executor: %w", cl.Name, kind, err)
	}
	if closer != nil {
		r.closers = append(r.closers, closer)
	}
	c := nodetool.New(runner, Nodetool(cl))
	r.tools[name] = c
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
	build, ok := snapshotters[kind]
	if !ok {
		return nil, fmt.Errorf("cluster %q: snapshotter %q is not available in this build", name, kind)
	}
	s, err := build(r.env, cl)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %s snapshotter: %w", name, kind, err)
	}
	r.snaps[name] = s
	return s, nil
}

// Discover finds a cluster's nodes: in EC2 for a cluster with a discovery
// section, its static inventory otherwise. The EC2 clients are kept, so
// credentials (an assumed role) are reused across jobs.
func (r *Registry) Discover(ctx context.Context, c planner.Cluster) ([]messages.Node, error) {
	cl, err := r.cluster(c.Name)
	if err != nil {
		return nil, err
	}
	discovers := cl.Discovery != nil
	for _, dc := range cl.DataCenters {
		discovers = discovers || dc.Discovery != nil
	}
	if !discovers {
		return planner.StaticDiscoverer{}.Discover(ctx, c)
	}
	r.mu.Lock()
	if r.ec2 == nil {
		r.ec2 = ebs.NewDiscoverer(ebs.Options{OnAPIError: r.env.Hooks.EC2Error, Pacer: r.env.Pacer})
	}
	d := r.ec2
	r.mu.Unlock()
	if cl.Discovery != nil {
		return d.Discover(ctx, EBS(cl), Discovery(*cl.Discovery))
	}
	// Each data centre is discovered in its region with its role; data
	// centres without discovery keep their static nodes.
	nodes, err := planner.StaticDiscoverer{}.Discover(ctx, c)
	if err != nil {
		return nil, err
	}
	for _, dc := range cl.DataCenters {
		if dc.Discovery == nil {
			continue
		}
		found, err := d.Discover(ctx, DataCenterEBS(cl, dc), Discovery(*dc.Discovery))
		if err != nil {
			return nil, fmt.Errorf("data centre %s: %w", dc.Name, err)
		}
		for i := range found {
			found[i].DC = dc.Name
			found[i].Region = regionOf(cl, dc.Name)
		}
		nodes = append(nodes, found...)
	}
	seen := map[string]string{}
	for _, n := range nodes {
		if dc, ok := seen[n.Name]; ok {
			return nil, fmt.Errorf("cluster %s: node name %q found in data centres %s and %s: give the instances distinct Name tags",
				cl.Name, n.Name, dc, n.DC)
		}
		seen[n.Name] = n.DC
	}
	slices.SortFunc(nodes, func(a, b messages.Node) int { return strings.Compare(a.Name, b.Name) })
	return nodes, nil
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
