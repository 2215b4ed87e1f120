package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/topology"
)

// The stanza `quiesce agent permissions` prints is what nats-server reads:
// parsed by the server's own config parser, the user's permissions are the
// ones the agent suite tests against a running server.
func TestAgentPermissionsStanzaParses(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	g := &globals{stdout: &out}
	cmd := agentPermissionsCmd(g)
	cmd.SetArgs([]string{"--cluster", "orders", "--node", "node-1"})
	require.NoError(t, cmd.Execute())

	conf := "AGENT_PASSWORD_HASH: \"$2a$11$abcdefghijklmnopqrstuu\"\naccounts {\n  QUIESCE {\n    jetstream: enabled\n    users: [\n" +
		out.String() + "\n    ]\n  }\n}\n"
	path := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	opts, err := server.ProcessConfigFile(path)
	require.NoError(t, err, conf)
	require.Len(t, opts.Users, 1)
	u := opts.Users[0]
	require.Equal(t, "agent-orders-node-1", u.Username)
	pub, sub := topology.AgentPermissions("orders", "node-1")
	require.Equal(t, pub, u.Permissions.Publish.Allow)
	require.Equal(t, sub, u.Permissions.Subscribe.Allow)
}

// An agent is refused at start for a node its cluster does not have, or a
// cluster whose node tasks go to workers.
func TestAgentNodeIsChecked(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Clusters: []config.Cluster{
		{Name: "orders", Executor: "agent", Nodes: []config.Node{{Name: "node-1"}, {Name: "node-2"}}},
		{Name: "carts", Executor: "ssh", Nodes: []config.Node{{Name: "node-1"}}},
	}}
	require.NoError(t, agentNode(cfg, "orders", "node-2"))
	require.EqualError(t, agentNode(cfg, "orders", "node-9"), `--node "node-9": cluster "orders" has no such node (its nodes: node-1, node-2)`)
	require.ErrorContains(t, agentNode(cfg, "carts", "node-1"), `its executor is "ssh", not "agent"`)
	require.ErrorContains(t, agentNode(cfg, "nope", "node-1"), `--cluster "nope": not in the configuration`)
	require.ErrorContains(t, agentNode(cfg, "orders", "node;1"), "--node")
}
