package nodetool_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/worker/nodetool"
)

func sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "0 bytes", want: 0},
		{in: "512 bytes", want: 512},
		{in: "105.64 KiB", want: 108175},
		{in: "1.2 GiB", want: 1288490188},
		{in: "2 TiB", want: 2 << 40},
		{in: "1.5 MB", want: 1572864},
		{in: "?", err: true},
		{in: "12", err: true},
		{in: "-1 KiB", err: true},
		{in: "1 parsec", err: true},
		{in: "NaN KiB", err: true},
		{in: "1e300 TiB", err: true},
	} {
		got, err := nodetool.ParseSize(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	nodes, err := nodetool.ParseStatus(sample(t, "status.txt"))
	require.NoError(t, err)
	require.Len(t, nodes, 4)
	require.Equal(t, nodetool.StatusNode{
		Datacenter: "us-east", Status: "U", State: "N", Address: "10.0.1.10",
		Load: "1.2 GiB", LoadBytes: 1288490188, Tokens: 16, Owns: "66.7%",
		HostID: "6d194555-f6eb-41d0-c000-000000000001", Rack: "us-east-1a",
	}, nodes[0])
	require.True(t, nodes[0].UpNormal())
	require.False(t, nodes[2].UpNormal())
	require.Equal(t, int64(-1), nodes[2].LoadBytes)
	require.Equal(t, "eu-west", nodes[3].Datacenter)
	require.Equal(t, "J", nodes[3].State)
	require.Equal(t, "?", nodes[3].Owns)

	for _, bad := range []string{
		"",
		"Datacenter: x\n--  Address  Load  Tokens  Owns  Host ID  Rack\nUN  10.0.0.1  1 KiB  16  10%  not-a-uuid  r1\n",
		"--  Address\nXX  10.0.0.1  1 KiB  16  10%  6d194555-f6eb-41d0-c000-000000000001  r1\n",
		"--  Address\nUN  10.0.0.1  1 KiB  many  10%  6d194555-f6eb-41d0-c000-000000000001  r1\n",
		"--  Address\nUN  10.0.0.1  1 KiB  16  6d194555-f6eb-41d0-c000-000000000001  r1\n",
	} {
		_, err := nodetool.ParseStatus([]byte(bad))
		require.Error(t, err, bad)
	}
}

func TestParseInfo(t *testing.T) {
	t.Parallel()
	info, err := nodetool.ParseInfo(sample(t, "info.txt"))
	require.NoError(t, err)
	require.Equal(t, nodetool.Info{
		HostID: "6d194555-f6eb-41d0-c000-000000000001", Datacenter: "us-east", Rack: "us-east-1a",
		Load: "105.64 KiB", LoadBytes: 108175, GossipActive: true, NativeTransportActive: true,
		Generation: 1700000000, Uptime: 24 * time.Hour, UncompressedLoadBytes: -1,
	}, info)

	info, err = nodetool.ParseInfo(sample(t, "info-tokens.txt"))
	require.NoError(t, err)
	require.Equal(t, []string{"-9223372036854775808", "-3074457345618258603", "3074457345618258602"}, info.Tokens)
	require.False(t, info.NativeTransportActive)

	for _, bad := range []string{"", "ID : nope\n", "ID : 6d194555-f6eb-41d0-c000-000000000001\nLoad : lots\n",
		"ID : 6d194555-f6eb-41d0-c000-000000000001\nToken : x y\n"} {
		_, err := nodetool.ParseInfo([]byte(bad))
		require.Error(t, err, bad)
	}
}

func TestParseRing(t *testing.T) {
	t.Parallel()
	entries, err := nodetool.ParseRing(sample(t, "ring.txt"))
	require.NoError(t, err)
	require.Len(t, entries, 3)
	require.Equal(t, nodetool.RingEntry{
		Datacenter: "us-east", Address: "10.0.1.10", Rack: "us-east-1a", Status: "Up", State: "Normal",
		Load: "1.2 GiB", Owns: "33.33%", Token: "-9223372036854775808",
	}, entries[0])
	require.Equal(t, "?", entries[2].Load)
	require.Equal(t, "Down", entries[2].Status)

	_, err = nodetool.ParseRing([]byte("nothing here\n"))
	require.Error(t, err)
	_, err = nodetool.ParseRing([]byte("Address Rack Status State Load Owns Token\n10.0.0.1 r Up Normal 1 KiB 10% not;a;token\n"))
	require.Error(t, err)
}

func TestParseDescribeRing(t *testing.T) {
	t.Parallel()
	v, ranges, err := nodetool.ParseDescribeRing(sample(t, "describering.txt"))
	require.NoError(t, err)
	require.Equal(t, "1176b7ac-8993-395d-85fd-41b89ef49fbb", v)
	require.Len(t, ranges, 2)
	require.Equal(t, nodetool.TokenRange{
		Start: "-3074457345618258603", End: "3074457345618258602",
		Endpoints: []string{"10.0.1.12", "10.0.1.10"},
		Details: []nodetool.Endpoint{
			{Host: "10.0.1.12", Datacenter: "us-east", Rack: "us-east-1c"},
			{Host: "10.0.1.10", Datacenter: "us-east", Rack: "us-east-1a"},
		},
	}, ranges[0])

	_, _, err = nodetool.ParseDescribeRing([]byte("TokenRange: \n"))
	require.Error(t, err)
	_, _, err = nodetool.ParseDescribeRing([]byte("Schema Version:x\n\tTokenRange(start_token:1, endpoints:[a])\n"))
	require.Error(t, err)
}

func TestParseVersionAndSnapshot(t *testing.T) {
	t.Parallel()
	v, err := nodetool.ParseVersion(sample(t, "version.txt"))
	require.NoError(t, err)
	require.Equal(t, "4.1.3", v)
	_, err = nodetool.ParseVersion([]byte("nodetool: command not found\n"))
	require.Error(t, err)
	require.Equal(t, "quiesce-nightly-01", nodetool.ParseSnapshot(sample(t, "snapshot.txt")))
}

func TestParseListSnapshots(t *testing.T) {
	t.Parallel()
	entries, err := nodetool.ParseListSnapshots(sample(t, "listsnapshots.txt"))
	require.NoError(t, err)
	require.Len(t, entries, 3)
	require.Equal(t, nodetool.SnapshotEntry{Tag: "quiesce-nightly-01", Keyspace: "shop", Table: "orders", TrueSize: "0 bytes", OnDisk: "5.12 KiB"}, entries[0])
	entries, err = nodetool.ParseListSnapshots([]byte("Snapshot Details: \nThere are no snapshots\n"))
	require.NoError(t, err)
	require.Empty(t, entries)
}
