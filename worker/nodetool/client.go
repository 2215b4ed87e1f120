package nodetool

import (
	"context"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

// Version runs "nodetool version" and returns the release version.
func (c *Client) Version(ctx context.Context, node messages.Node) (string, error) {
	out, err := c.run(ctx, node, "version")
	if err != nil {
		return "", classify(err)
	}
	v, err := ParseVersion(out.Stdout)
	return v, errclass.Permanent(err)
}

// Status runs "nodetool status [keyspace]".
func (c *Client) Status(ctx context.Context, node messages.Node, keyspace string) ([]StatusNode, error) {
	args, err := withKeyspace("status", keyspace)
	if err != nil {
		return nil, err
	}
	out, err := c.run(ctx, node, args...)
	if err != nil {
		return nil, classify(err)
	}
	nodes, err := ParseStatus(out.Stdout)
	return nodes, errclass.Permanent(err)
}

// Info runs "nodetool info", with -T when tokens is set.
func (c *Client) Info(ctx context.Context, node messages.Node, tokens bool) (Info, error) {
	args := []string{"info"}
	if tokens {
		args = append(args, "-T")
	}
	out, err := c.run(ctx, node, args...)
	if err != nil {
		return Info{}, classify(err)
	}
	info, err := ParseInfo(out.Stdout)
	return info, errclass.Permanent(err)
}

// Ring runs "nodetool ring [keyspace]".
func (c *Client) Ring(ctx context.Context, node messages.Node, keyspace string) ([]RingEntry, error) {
	args, err := withKeyspace("ring", keyspace)
	if err != nil {
		return nil, err
	}
	out, err := c.run(ctx, node, args...)
	if err != nil {
		return nil, classify(err)
	}
	entries, err := ParseRing(out.Stdout)
	return entries, errclass.Permanent(err)
}

// DescribeRing runs "nodetool describering KEYSPACE".
func (c *Client) DescribeRing(ctx context.Context, node messages.Node, keyspace string) (string, []TokenRange, error) {
	if err := messages.ValidateKeyspace(keyspace); err != nil {
		return "", nil, errclass.Permanent(err)
	}
	out, err := c.run(ctx, node, "describering", keyspace)
	if err != nil {
		return "", nil, classify(err)
	}
	v, ranges, err := ParseDescribeRing(out.Stdout)
	return v, ranges, errclass.Permanent(err)
}

// withKeyspace builds "SUBCOMMAND [keyspace]", validating the keyspace.
func withKeyspace(sub, keyspace string) ([]string, error) {
	if keyspace == "" {
		return []string{sub}, nil
	}
	if err := messages.ValidateKeyspace(keyspace); err != nil {
		return nil, errclass.Permanent(err)
	}
	return []string{sub, keyspace}, nil
}

// DescribeCluster runs "nodetool describecluster": the cluster's name,
// snitch, partitioner, schema versions (more than one: no agreement),
// releases and keyspaces.
func (c *Client) DescribeCluster(ctx context.Context, node messages.Node) (Cluster, error) {
	out, err := c.run(ctx, node, "describecluster")
	if err != nil {
		return Cluster{}, classify(err)
	}
	cl, err := ParseDescribeCluster(out.Stdout)
	return cl, errclass.Permanent(err)
}

// Drain runs "nodetool drain": the node flushes its memtables, stops
// accepting writes and leaves gossip, so that stopping it loses nothing and
// no commitlog is replayed at its next start.
func (c *Client) Drain(ctx context.Context, node messages.Node) error {
	_, err := c.run(ctx, node, "drain")
	return classify(err)
}
