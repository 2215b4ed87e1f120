package drivers

import (
	"time"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker/ebs"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// This file is the one place the configuration file's schema meets the
// drivers' and the planner's own settings types.

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
	return planner.Cluster{Name: cl.Name, DefaultPolicy: cl.DefaultPolicy, PerInstance: cl.EBS.PerInstance, Nodes: Nodes(cl),
		Dirs: Dirs(cl.Directories, nil), Snapshotter: SnapshotterKind(cl)}
}

// Dirs is a node's directories: node's fields where it sets them, else the
// cluster's; nil when neither sets any.
func Dirs(cluster, node *config.Directories) *messages.NodeDirs {
	var d messages.NodeDirs
	for _, src := range []*config.Directories{cluster, node} {
		if src == nil {
			continue
		}
		if len(src.Data) > 0 {
			d.Data = append([]string(nil), src.Data...)
		}
		for _, f := range []struct {
			dst *string
			v   string
		}{{&d.CommitLog, src.CommitLog}, {&d.Hints, src.Hints}, {&d.SavedCaches, src.SavedCaches}, {&d.CDCRaw, src.CDCRaw}} {
			if f.v != "" {
				*f.dst = f.v
			}
		}
	}
	if len(d.Data) == 0 && d.CommitLog == "" && d.Hints == "" && d.SavedCaches == "" && d.CDCRaw == "" {
		return nil
	}
	return &d
}

// Nodes is a cluster's static inventory.
func Nodes(cl config.Cluster) []messages.Node {
	nodes := make([]messages.Node, 0, len(cl.Nodes))
	for _, n := range cl.Nodes {
		vols := make([]messages.Volume, 0, len(n.Volumes))
		for _, v := range n.Volumes {
			vols = append(vols, messages.Volume{ID: v.ID, Device: v.Device, Path: v.Path, Tags: v.Tags})
		}
		nodes = append(nodes, messages.Node{Name: n.Name, Address: n.Address, InstanceID: n.InstanceID, AZ: n.AZ, Volumes: vols,
			Dirs: Dirs(cl.Directories, n.Directories)})
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

// SSH is the SSH executor's settings for a cluster.
func SSH(cl config.Cluster) ssh.Config {
	s := cl.SSH
	return ssh.Config{
		User: s.User, Port: s.Port, IdentityFiles: s.IdentityFiles,
		PassphraseEnv: s.PassphraseEnv, PassphraseFile: s.PassphraseFile, Agent: s.Agent,
		KnownHosts: s.KnownHosts, TrustOnFirstUse: s.TrustOnFirstUse, Bastion: s.Bastion,
		ConnectTimeout: time.Duration(s.ConnectTimeout), CommandTimeout: time.Duration(s.CommandTimeout),
		KeepaliveInterval: time.Duration(s.KeepaliveInterval), MaxSessionsPerHost: s.MaxSessionsPerHost,
	}
}

// Nodetool is how nodetool runs on a cluster's nodes. Sudo is the ssh
// section's setting, where the file has always kept it.
func Nodetool(cl config.Cluster) nodetool.Settings {
	s := nodetool.Settings{Base: cl.Nodetool, Env: cl.NodetoolEnv, Sudo: cl.SSH.Sudo}
	for _, n := range cl.Nodes {
		if len(n.Nodetool) > 0 {
			if s.PerNode == nil {
				s.PerNode = map[string][]string{}
			}
			s.PerNode[n.Name] = n.Nodetool
		}
	}
	return s
}

// EBS is the EBS driver's settings for a cluster.
func EBS(cl config.Cluster) ebs.Config {
	return ebs.Config{
		Cluster: cl.Name, Region: cl.Region, RoleARN: cl.RoleARN, Endpoint: cl.EBS.Endpoint,
		PerInstance: cl.EBS.PerInstance, CopyVolumeTags: cl.EBS.CopyVolumeTags, CopyRegions: cl.EBS.CopyRegions,
	}
}

// Discovery is the EC2 discovery of a cluster with a discovery section.
func Discovery(d config.Discovery) ebs.Discovery {
	return ebs.Discovery{
		InstanceTags: d.InstanceTags, Devices: d.Devices, VolumeTags: d.VolumeTags, IncludeRoot: d.IncludeRoot,
	}
}
