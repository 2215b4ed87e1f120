package simnode

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
)

func cluster(t *testing.T, rf int, dcs ...string) []*Node {
	t.Helper()
	base := t.TempDir()
	var nodes []*Node
	var roots []string
	for i, dc := range dcs {
		n, err := Create(filepath.Join(base, fmt.Sprintf("n%d", i)), Options{
			Name: fmt.Sprintf("n%d", i), Address: fmt.Sprintf("127.0.0.%d", i+1),
			DC: dc, Rack: fmt.Sprintf("rack%d", i), ReplicationFactor: rf,
		})
		require.NoError(t, err)
		nodes = append(nodes, n)
		roots = append(roots, n.Root())
	}
	require.NoError(t, Join(roots...))
	return nodes
}

// Every command's output parses with the parsers quiesce uses on real nodes.
func TestCLIOutputParses(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, 1, "dc1", "dc1", "dc2")
	writeRows(t, nodes[0], "app", "events", 0, 40)
	require.NoError(t, nodes[0].Flush())
	require.NoError(t, SetFaults(nodes[2].Root(), Faults{Down: true}))
	root := nodes[0].Root()

	out, _, code := run(t, "--root", root, "status")
	require.Equal(t, 0, code)
	status, err := nodetool.ParseStatus([]byte(out))
	require.NoError(t, err, out)
	require.Len(t, status, 3)
	var owned float64
	for i, s := range status {
		info := nodes[i].Info()
		require.Equal(t, info.HostID, s.HostID)
		require.Equal(t, info.Address, s.Address)
		require.Equal(t, info.DC, s.Datacenter)
		require.Equal(t, info.Rack, s.Rack)
		require.Equal(t, 16, s.Tokens)
		pct, err := strconv.ParseFloat(strings.TrimSuffix(s.Owns, "%"), 64)
		require.NoError(t, err)
		owned += pct
	}
	require.InDelta(t, 100, owned, 0.2, "with RF 1 the ring is owned once")
	require.True(t, status[0].UpNormal())
	size, err := nodes[0].LiveDataSize()
	require.NoError(t, err)
	require.Equal(t, size, status[0].LoadBytes)
	require.Equal(t, "D", status[2].Status)
	require.Equal(t, int64(-1), status[2].LoadBytes)
	require.Contains(t, out, "\n\nDatacenter: dc2\n")

	out, _, code = run(t, "--root", root, "ring")
	require.Equal(t, 0, code)
	ring, err := nodetool.ParseRing([]byte(out))
	require.NoError(t, err, out)
	require.Len(t, ring, 48)
	for _, e := range ring {
		require.Contains(t, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, e.Address)
	}

	out, _, code = run(t, "--root", root, "describering", "app")
	require.Equal(t, 0, code)
	schema, ranges, err := nodetool.ParseDescribeRing([]byte(out))
	require.NoError(t, err, out)
	require.Equal(t, nodes[0].Info().SchemaID, schema)
	require.Len(t, ranges, 48)
	for _, r := range ranges {
		require.Len(t, r.Endpoints, 1)
	}

	out, _, code = run(t, "--root", root, "info", "-T")
	require.Equal(t, 0, code)
	info, err := nodetool.ParseInfo([]byte(out))
	require.NoError(t, err, out)
	require.Equal(t, nodes[0].Info().HostID, info.HostID)
	require.Equal(t, nodes[0].Info().Tokens, info.Tokens)
	require.Equal(t, size, info.LoadBytes)
	require.True(t, info.GossipActive)

	out, _, code = run(t, "--root", root, "version")
	require.Equal(t, 0, code)
	v, err := nodetool.ParseVersion([]byte(out))
	require.NoError(t, err)
	require.Equal(t, Version, v)

	out, _, code = run(t, "--root", root, "snapshot", "-t", "tagged")
	require.Equal(t, 0, code)
	require.Equal(t, "tagged", nodetool.ParseSnapshot([]byte(out)))

	// The down node refuses connections.
	_, errOut, code := run(t, "--root", nodes[2].Root(), "status")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "Failed to connect to '127.0.0.3:7199'")
	f := NewFleet(nodes...)
	err = f.Snapshot(t.Context(), messages.Node{Name: "n2"}, "x", nil)
	var ce *ConnectError
	require.ErrorAs(t, err, &ce)
	require.False(t, errclass.IsPermanent(err), "an unreachable node may come back")
	require.Equal(t, "connect", errclass.Code(err))
}

func TestEffectiveOwnership(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, 3, "dc1", "dc1", "dc1", "dc1")
	members, err := nodes[0].members()
	require.NoError(t, err)
	own := ownership(members, 3)
	var total float64
	for _, o := range own {
		require.Greater(t, o, 0.0)
		require.LessOrEqual(t, o, 1.0+1e-9)
		total += o
	}
	require.InDelta(t, 3, total, 1e-6, "RF 3 owns the ring three times over")

	three := cluster(t, 3, "dc1", "dc1", "dc1")
	out, _, code := run(t, "--root", three[1].Root(), "status")
	require.Equal(t, 0, code)
	status, err := nodetool.ParseStatus([]byte(out))
	require.NoError(t, err)
	for _, s := range status {
		require.Equal(t, "100.0%", s.Owns)
	}
}
