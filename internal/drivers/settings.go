package drivers

import (
	"time"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

// This file is where the configuration file's schema meets the planner's
// own types.

// Inventory is the planner's view of the configuration: every cluster and
// policy.
func Inventory(cfg *config.Config) planner.Inventory {
	inv := planner.Inventory{
		Clusters: make([]planner.Cluster, 0, len(cfg.Clusters)),
		Policies: make([]planner.Policy, 0, len(cfg.Policies)),
	}
	for _, cl := range cfg.Clusters {
		inv.Clusters = append(inv.Clusters, Cluster(cl))
	}
	for _, p := range cfg.Policies {
		inv.Policies = append(inv.Policies, Policy(p))
	}
	return inv
}

// Cluster is what the planner needs of a configured cluster.
func Cluster(cl config.Cluster) planner.Cluster {
	return planner.Cluster{Name: cl.Name, DefaultPolicy: cl.DefaultPolicy, PerInstance: cl.EBS.PerInstance, Nodes: Nodes(cl)}
}

// Nodes is a cluster's static inventory.
func Nodes(cl config.Cluster) []messages.Node {
	nodes := make([]messages.Node, 0, len(cl.Nodes))
	for _, n := range cl.Nodes {
		vols := make([]messages.Volume, 0, len(n.Volumes))
		for _, v := range n.Volumes {
			vols = append(vols, messages.Volume{ID: v.ID, Device: v.Device, Path: v.Path, Tags: v.Tags})
		}
		nodes = append(nodes, messages.Node{Name: n.Name, Address: n.Address, InstanceID: n.InstanceID, AZ: n.AZ, Volumes: vols})
	}
	return nodes
}

// Policy is the planner's copy of a configured policy.
func Policy(p config.Policy) planner.Policy {
	return planner.Policy{
		Name: p.Name, Cluster: p.Cluster, Schedule: p.Schedule, KeepLast: p.KeepLast, AllowPartial: p.AllowPartial,
		FlushTimeout: time.Duration(p.FlushTimeout), SnapshotTimeout: time.Duration(p.SnapshotTimeout),
		FinishTimeout: time.Duration(p.FinishTimeout), JobTimeout: time.Duration(p.JobTimeout),
	}
}
