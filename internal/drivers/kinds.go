package drivers

import (
	"errors"
	"io"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
	"github.com/quiesce/quiesce/worker/fs"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// Driver kinds, as the configuration names them.
const (
	ExecutorSSH    = "ssh"
	ExecutorLocal  = "local"
	ExecutorAgent  = "agent"
	SnapshotterEBS = "ebs"
	SnapshotterFS  = "fs"
)

// executors builds each executor kind's command runner, and what closes it.
var executors = map[string]func(Env, config.Cluster) (nodetool.Runner, io.Closer, error){
	ExecutorSSH:   newSSH,
	ExecutorLocal: func(Env, config.Cluster) (nodetool.Runner, io.Closer, error) { return &local.Runner{}, nil, nil },
	// An agent runs its own node's commands on its own host.
	ExecutorAgent: func(Env, config.Cluster) (nodetool.Runner, io.Closer, error) { return &local.Runner{}, nil, nil },
}

// snapshotters builds each snapshotter kind.
var snapshotters = map[string]func(Env, config.Cluster) (worker.Snapshotter, error){
	SnapshotterEBS: func(env Env, cl config.Cluster) (worker.Snapshotter, error) {
		return ebs.New(env.Ctx, EBS(cl), ebs.Options{OnAPIError: env.Hooks.EC2Error, Pacer: env.Pacer})
	},
	SnapshotterFS: func(_ Env, cl config.Cluster) (worker.Snapshotter, error) { return fs.New(cl.FS.Store) },
}

var _ worker.Copier = (*ebs.Driver)(nil)

// ExecutorKind is the cluster's executor, ExecutorSSH by default.
func ExecutorKind(cl config.Cluster) string {
	if cl.Executor == "" {
		return ExecutorSSH
	}
	return cl.Executor
}

// SnapshotterKind is the cluster's snapshotter, SnapshotterEBS by default.
func SnapshotterKind(cl config.Cluster) string {
	if cl.Snapshotter == "" {
		return SnapshotterEBS
	}
	return cl.Snapshotter
}

// errNoHostKeys is the error of a trust-on-first-use cluster in a process
// given no store for the pinned keys.
var errNoHostKeys = errors.New("trust_on_first_use needs a JetStream connection for the pinned keys")

func newSSH(env Env, cl config.Cluster) (nodetool.Runner, io.Closer, error) {
	opts := ssh.Options{OnError: env.Hooks.SSHError, Logger: &env.Log}
	if cl.SSH.TrustOnFirstUse {
		if env.HostKeys == nil {
			return nil, nil, errNoHostKeys
		}
		opts.KeyStore = env.HostKeys
	}
	ex, err := ssh.New(SSH(cl), opts)
	if err != nil {
		return nil, nil, err
	}
	return ex, ex, nil
}

// UsesEC2 reports whether a cluster of cfg is snapshotted on EBS or
// discovered in EC2: whether a process of this fleet calls EC2.
func UsesEC2(cfg *config.Config) bool {
	for _, cl := range cfg.Clusters {
		if SnapshotterKind(cl) == SnapshotterEBS || cl.Discovery != nil {
			return true
		}
	}
	return false
}

// NeedsHostKeys reports whether a cluster of cfg trusts SSH host keys on
// first use, so a worker must open the fleet's pinned-key store.
func NeedsHostKeys(cfg *config.Config) bool {
	for _, cl := range cfg.Clusters {
		if ExecutorKind(cl) == ExecutorSSH && cl.SSH.TrustOnFirstUse {
			return true
		}
	}
	return false
}
