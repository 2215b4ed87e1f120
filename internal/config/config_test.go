package config_test

import (
	"os"
	"testing"
	"time"

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
	sessions, ok := c.Cluster("sessions")
	require.True(t, ok)
	require.Equal(t, 3*time.Hour, sessions.MaxAge())
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
		{"ack wait under a second", "nats: {ack_wait: 200ms}\nclusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", "nats.ack_wait 200ms"},
		{"negative max deliver", "nats: {max_deliver: -1}\nclusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", "nats.max_deliver -1"},
		{"bad duration", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, flush_timeout: soon}\n", "soon"},
		{"negative calendar rule", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, keep_weekly: -1}\n", "policies[0].keep_weekly -1: must not be negative"},
		{"hook with a relative command", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: before, command: [pause.sh], timeout: 1m}\n", "policies[0].hooks[0].command \"pause.sh\": the program must be an absolute path"},
		{"hook without timeout", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: before, command: [/bin/true]}\n", "policies[0].hooks[0].timeout: required"},
		{"hook longer than its phase", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: before, command: [/bin/true], timeout: 11m}\n", "policies[0].hooks[0].timeout 11m0s: longer than the policy's flush_timeout"},
		{"hook at an unknown point", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: during, command: [/bin/true], timeout: 1m}\n", "policies[0].hooks[0].point \"during\""},
		{"hook of an unknown scope", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: after, scope: cluster, command: [/bin/true], timeout: 1m}\n", "policies[0].hooks[0].scope \"cluster\""},
		{"complete hook that would fail the job", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- name: p\n  cluster: a\n  hooks:\n  - {name: h, point: complete, command: [/bin/true], timeout: 1m, on_error: fail}\n", "policies[0].hooks[0].on_error fail"},
		{"retention that keeps nothing", "clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, keep_within: 10s}\n", "policies[0].keep_within 10s: keeps nothing"},
		{"negative max age", "clusters:\n- name: a\n  backup_max_age: -1h\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n", "negative"},
	}
	for _, tc := range cases {
		_, err := config.Parse([]byte(tc.yaml))
		require.Error(t, err, tc.desc)
		require.Contains(t, err.Error(), tc.want, tc.desc)
	}
}

// A cluster's stale-backup threshold is its backup_max_age, 26h when unset.
func TestBackupMaxAge(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("clusters:\n- name: a\n  backup_max_age: 192h\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n" +
		"- name: b\n  nodes: [{name: n1, volumes: [{id: v2}]}]\n"))
	require.NoError(t, err)
	require.Equal(t, 8*24*time.Hour, c.Clusters[0].MaxAge())
	require.Equal(t, config.DefaultBackupMaxAge, c.Clusters[1].MaxAge())
	require.Equal(t, 26*time.Hour, config.DefaultBackupMaxAge)
}

func TestMissingFileIsAnError(t *testing.T) {
	t.Parallel()
	_, err := config.Load(os.DevNull + "/nope.yaml")
	require.Error(t, err)
}
