package config_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
)

func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	c, err := config.Load("../../docs/examples/quiesce.yaml")
	require.NoError(t, err)
	require.Equal(t, 3, c.Replicas())
	p, err := c.Policy("orders", "")
	require.NoError(t, err)
	require.Equal(t, "nightly", p.Name)
	require.Equal(t, 14, p.KeepLast)
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	cases := []struct{ desc, yaml, want string }{
		{"unknown key", "clusters:\n- name: a\n  nodez: []\n", `unknown field "nodez"`},
		{"bad cluster name", "clusters:\n- name: 'A B'\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", "clusters[0].name"},
		{"duplicate volume", "clusters:\n- name: a\n  nodes:\n  - {name: n1, volumes: [{id: v1}]}\n  - {name: n2, volumes: [{id: v1}]}\n", `volume listed twice`},
		{"policy for unknown cluster", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: b}\n", `no such cluster`},
		{"fs without store", "clusters:\n- name: a\n  snapshotter: fs\n  nodes: [{name: n1, volumes: [{id: v1, path: /x}]}]\n", "fs.store"},
		{"node name with shell metacharacters", "clusters:\n- name: a\n  nodes: [{name: 'n1;reboot', volumes: [{id: v1}]}]\n", "nodes[0].name"},
		{"relative data directory", "clusters:\n- name: a\n  directories: {data: [var/lib/cassandra/data]}\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", `clusters[0].directories: data directory "var/lib/cassandra/data"`},
		{"data directory with a subshell", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}], directories: {data: ['/d/$(id)']}}]\n", `clusters[0].nodes[0].directories: data directory "/d/$(id)"`},
		{"hints directory with ..", "clusters:\n- name: a\n  directories: {hints: /a/../b}\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", `hints directory "/a/../b": must be a clean path`},
		{"bad duration", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, flush_timeout: soon}\n", "soon"},
	}
	for _, tc := range cases {
		_, err := config.Parse([]byte(tc.yaml))
		require.Error(t, err, tc.desc)
		require.Contains(t, err.Error(), tc.want, tc.desc)
	}
}

func TestMissingFileIsAnError(t *testing.T) {
	t.Parallel()
	_, err := config.Load(os.DevNull + "/nope.yaml")
	require.Error(t, err)
}
