package config_test

import (
	"os"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
)

// FuzzConfigParse feeds arbitrary YAML to the parser every role runs at
// start-up. It must never panic, and a configuration it accepts must
// validate, resolve each cluster's default policy, and survive a round trip
// through its own encoding.
func FuzzConfigParse(f *testing.F) {
	if data, err := os.ReadFile("../../docs/examples/quiesce.yaml"); err == nil {
		f.Add(data)
	}
	seeds := []string{
		"clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n",
		"clusters:\n- name: a\n  snapshotter: fs\n  fs: {store: /s}\n  nodes: [{name: n1, volumes: [{id: v1, path: /d}]}]\npolicies:\n- {name: p, cluster: a, keep_last: 3, flush_timeout: 10s}\n",
		"clusters:\n- name: a\n  default_policy: p\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a}\n",
		"clusters:\n- name: a\n  discovery: {instance_tags: {k: v}}\n",
		"clusters:\n- name: a\n  nodez: []\n",
		"clusters:\n- name: 'A B'\n  nodes: [{name: n1, volumes: [{id: v1}]}]\n",
		"clusters:\n- name: a\n  nodes: [{name: 'n1;reboot', volumes: [{id: v1}]}]\n",
		"clusters:\n- name: a\n  nodes: [{name: n1, volumes: [{id: v1}]}]\npolicies:\n- {name: p, cluster: a, flush_timeout: soon}\n",
		"nats: {replicas: 9}\n",
		"{\"clusters\": [{\"name\": \"a\", \"nodes\": [{\"name\": \"n1\", \"volumes\": [{\"id\": \"v1\"}]}]}]}",
		"a: &a [*a, *a]\n",
		"clusters: !!binary aGVsbG8=\n",
		"", "---\n", "~", "[]",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		for _, cl := range c.Clusters {
			if err := messages.ValidateCluster(cl.Name); err != nil {
				t.Fatalf("accepted cluster name: %v", err)
			}
			got, ok := c.Cluster(cl.Name)
			if !ok || got.Name != cl.Name {
				t.Fatalf("cluster %q not found by name", cl.Name)
			}
			if cl.DefaultPolicy != "" {
				if _, err := c.Policy(cl.Name, ""); err != nil {
					t.Fatalf("default policy of %q: %v", cl.Name, err)
				}
			}
			for _, n := range cl.Nodes {
				if err := messages.ValidateTarget("node", n.Name); err != nil {
					t.Fatalf("accepted node name: %v", err)
				}
				for _, v := range n.Volumes {
					if err := messages.ValidateTarget("volume", v.ID); err != nil {
						t.Fatalf("accepted volume id: %v", err)
					}
				}
			}
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		if _, err := config.Parse(out); err != nil {
			t.Fatalf("round trip rejected:\n%s\n%v", out, err)
		}
	})
}
