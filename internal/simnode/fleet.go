package simnode

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

// Fleet is an in-process worker.NodeTool over simulated nodes, keyed by node
// name: the nodetool path without exec, for fast tests. It classifies errors
// as worker/nodetool.Client does for the real command: a failure nodetool
// reports is permanent, an existing tag on snapshot wraps
// worker.ErrSnapshotExists, a node that is down is transient, and what left
// the node as it was is errclass.NotRun.
type Fleet struct {
	mu    sync.RWMutex
	nodes map[string]*Node
}

var _ worker.NodeTool = (*Fleet)(nil)

// NewFleet returns a Fleet of nodes.
func NewFleet(nodes ...*Node) *Fleet {
	f := &Fleet{nodes: map[string]*Node{}}
	for _, n := range nodes {
		f.Add(n)
	}
	return f
}

// Add adds n under its name, replacing any node of that name.
func (f *Fleet) Add(n *Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nodes == nil {
		f.nodes = map[string]*Node{}
	}
	f.nodes[n.Name()] = n
}

// Node returns the node named name, or nil.
func (f *Fleet) Node(name string) *Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.nodes[name]
}

// Names returns the fleet's node names, sorted.
func (f *Fleet) Names() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	names := make([]string, 0, len(f.nodes))
	for n := range f.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (f *Fleet) lookup(node messages.Node) (*Node, error) {
	n := f.Node(node.Name)
	if n == nil {
		return nil, errclass.Permanent(fmt.Errorf("simnode: no node %q in the fleet", node.Name))
	}
	// A node that is down cannot be reached: transient, as a refused
	// connection is.
	if fl, err := readFaults(n.root); err != nil {
		return nil, err
	} else if fl.Down {
		return nil, errclass.NotRun(&ConnectError{Node: node.Name})
	}
	return n, nil
}

// Snapshot runs the node's Snapshot. A tag that already exists is an error
// wrapping worker.ErrSnapshotExists.
func (f *Fleet) Snapshot(ctx context.Context, node messages.Node, tag string, keyspaces []string) error {
	n, err := f.lookup(node)
	if err != nil {
		return err
	}
	err = n.snapshot(ctx.Done(), tag, keyspaces, false)
	var exists *SnapshotExistsError
	if errors.As(err, &exists) {
		return errclass.Permanent(fmt.Errorf("nodetool snapshot on %s: %w: %w", node.Name, err, worker.ErrSnapshotExists))
	}
	var ke *KeyspaceNotFoundError
	if errors.As(err, &ke) {
		return errclass.NotRun(classify(ctx, node.Name, "snapshot", err))
	}
	return classify(ctx, node.Name, "snapshot", err)
}

// ClearSnapshot runs the node's ClearSnapshot for tag, which must not be empty.
func (f *Fleet) ClearSnapshot(ctx context.Context, node messages.Node, tag string) error {
	if err := messages.ValidateTag(tag); err != nil {
		return errclass.Permanent(err)
	}
	n, err := f.lookup(node)
	if err != nil {
		return err
	}
	return classify(ctx, node.Name, "clearsnapshot", n.clearSnapshot(ctx.Done(), tag, nil))
}

func classify(ctx context.Context, node, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errCancelled):
		return fmt.Errorf("simnode: %s on %s stopped: %w", op, node, context.Cause(ctx))
	default:
		return errclass.Permanent(&CommandError{Node: node, Op: op, Err: err})
	}
}

// CommandError is a nodetool command that ran and failed on a simulated node.
// It carries nodetool's stderr and metric code as the exec path would.
type CommandError struct {
	Node string
	Op   string
	Err  error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("nodetool %s on %s: %v", e.Op, e.Node, e.Err)
}

// Unwrap returns the node's error.
func (e *CommandError) Unwrap() error { return e.Err }

// Stderr is what nodetool would have printed.
func (e *CommandError) Stderr() string { return "error: " + e.Err.Error() + "\n" }

// Code is the metric label, the same as for a real command that exited non-zero.
func (e *CommandError) Code() string { return "exit" }

// SnapshotContext is Snapshot that stops waiting (for an injected delay or for
// the node's lock) when ctx ends.
func (n *Node) SnapshotContext(ctx context.Context, tag string, keyspaces []string) error {
	err := n.snapshot(ctx.Done(), tag, keyspaces, false)
	if errors.Is(err, errCancelled) {
		return context.Cause(ctx)
	}
	return err
}

// ClearSnapshotContext is ClearSnapshot that stops waiting when ctx ends.
func (n *Node) ClearSnapshotContext(ctx context.Context, tag string) error {
	err := n.clearSnapshot(ctx.Done(), tag, nil)
	if errors.Is(err, errCancelled) {
		return context.Cause(ctx)
	}
	return err
}

// ConnectError is a node that is down (Faults.Down): nodetool cannot reach it.
type ConnectError struct{ Node string }

func (e *ConnectError) Error() string {
	return "nodetool on " + e.Node + ": Failed to connect: Connection refused"
}

// Code is the metric label.
func (e *ConnectError) Code() string { return "connect" }
