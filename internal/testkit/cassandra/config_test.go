package cassandra

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRenderYAMLOverridesReplaceEntries(t *testing.T) {
	t.Parallel()
	p := yamlParams{ClusterName: "c1", NumTokens: 16, Dir: "/n/node2", Seeds: "127.0.0.4:7000", Addr: "127.0.0.5", StoragePort: 7000, NativePort: 9042}
	y, err := renderYAML(p, nil)
	require.NoError(t, err)
	s := string(y)
	for _, want := range []string{
		"cluster_name: c1\n", "num_tokens: 16\n", "  - /n/node2/data\n", "commitlog_directory: /n/node2/commitlog\n",
		`      - seeds: "127.0.0.4:7000"` + "\n", "listen_address: 127.0.0.5\n", "rpc_address: 127.0.0.5\n",
		"commitlog_sync: periodic\n", "endpoint_snitch: GossipingPropertyFileSnitch\n",
	} {
		require.Contains(t, s, want)
	}

	y, err = renderYAML(p, map[string]string{
		"num_tokens":            "4",
		"initial_token":         "-9,-3,3,9",
		"data_file_directories": "  - /elsewhere/data",
	})
	require.NoError(t, err)
	s = string(y)
	require.Equal(t, 1, strings.Count(s, "num_tokens:"), s)
	require.Contains(t, s, "num_tokens: 4\n")
	require.Contains(t, s, "initial_token: -9,-3,3,9\n")
	require.Contains(t, s, "data_file_directories:\n  - /elsewhere/data\n")
	require.NotContains(t, s, "/n/node2/data")
	require.Contains(t, s, "commitlog_directory: /n/node2/commitlog\n", "the entry after a replaced block stays")
}

func TestJVMWordsAreOneOptionEach(t *testing.T) {
	t.Parallel()
	for name, text := range map[string]string{"server": serverOptions, "clients": clientOptions} {
		words := jvmWords(text)
		require.Contains(t, words, "--add-exports", name)
		require.Contains(t, words, "java.base/jdk.internal.misc=ALL-UNNAMED", name)
		for _, w := range words {
			require.NotContains(t, w, " ", "%s: java refuses %q as one word", name, w)
			require.False(t, strings.HasPrefix(w, "#"), name)
		}
	}
}

func TestNodeAddrs(t *testing.T) {
	t.Parallel()
	a, err := nodeAddrs("127.0.0.4", 3)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.4", "127.0.0.5", "127.0.0.6"}, a)
	_, err = nodeAddrs("10.0.0.1", 1)
	require.ErrorContains(t, err, "loopback")
	_, err = nodeAddrs("127.255.255.255", 2)
	require.ErrorContains(t, err, "128.0.0.0")
	_, err = nodeAddrs("::1", 1)
	require.Error(t, err)
}

func TestOptionsDefaultsAndLimits(t *testing.T) {
	t.Parallel()
	o, err := Options{}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, 1, o.Nodes)
	require.Equal(t, "127.0.0.1", o.BaseAddr)
	require.Equal(t, 9042, o.NativePort)
	_, err = Options{Nodes: 7}.withDefaults()
	require.Error(t, err)
	_, err = Options{Nodes: 1, Topology: make([]NodeSpec, 2)}.withDefaults()
	require.Error(t, err)
	_, err = Options{ClusterName: "a: b"}.withDefaults()
	require.Error(t, err)
}

// A node down, from a real 3-node Cassandra 5.0.6.
const statusN3Down = `Datacenter: dc1
===============
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address    Load        Tokens  Owns  Host ID                               Rack 
DN  127.0.0.3  105.67 KiB  16      ?     4df364ed-0a6a-4881-9fb5-f324b9d3f77c  rack1
UN  127.0.0.2  91.6 KiB    16      ?     f8508ca1-c49f-45eb-89e0-e8c8f6c80427  rack1
UN  127.0.0.1  1.04 MiB    16      ?     2164ea74-d818-447e-943d-2519f070db0e  rack1

Note: Non-system keyspaces don't have the same replication settings, effective ownership information is meaningless
`

func TestParseStatus(t *testing.T) {
	t.Parallel()
	require.Equal(t, map[string]string{"127.0.0.1": "UN", "127.0.0.2": "UN", "127.0.0.3": "DN"}, parseStatus(statusN3Down))
	two := "Datacenter: dc1\n==\nUN  127.0.0.4  1 KiB  16  ?  id  r1\nDatacenter: dc2\n==\nUJ  127.0.0.5  1 KiB  16  ?  id  r1\n"
	require.Equal(t, map[string]string{"127.0.0.4": "UN", "127.0.0.5": "UJ"}, parseStatus(two))
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	require.Equal(t, "/usr/bin/java", shellQuote("/usr/bin/java"))
	require.Equal(t, "--add-exports", shellQuote("--add-exports"))
	require.Equal(t, "'a b'", shellQuote("a b"))
	require.Equal(t, `'it'\''s'`, shellQuote("it's"))
	require.Equal(t, "''", shellQuote(""))
}
