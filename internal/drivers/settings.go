package drivers

import (
	"cmp"
	"slices"
	"time"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/worker/ebs"
	"github.com/quiesce/quiesce/worker/noderestore"
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
		var copyRegions []string
		if cl, ok := cfg.Cluster(p.Cluster); ok {
			copyRegions = cl.EBS.CopyRegions
		}
		inv.Policies = append(inv.Policies, Policy(p, copyRegions))
	}
	return inv
}

// DrillSchedules are the configured clusters' drill schedules.
func DrillSchedules(cfg *config.Config) []planner.DrillSchedule {
	var out []planner.DrillSchedule
	for _, cl := range cfg.Clusters {
		if cl.Drill != nil && cl.Drill.Schedule != "" {
			out = append(out, planner.DrillSchedule{Cluster: cl.Name, Schedule: cl.Drill.Schedule})
		}
	}
	return out
}

// Cluster is what the planner needs of a configured cluster.
func Cluster(cl config.Cluster) planner.Cluster {
	return planner.Cluster{Name: cl.Name, DefaultPolicy: cl.DefaultPolicy, PerInstance: cl.EBS.PerInstance,
		Agent: ExecutorKind(cl) == ExecutorAgent, Nodes: Nodes(cl), Dirs: Dirs(cl.Directories, nil), Snapshotter: SnapshotterKind(cl)}
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

// Nodes is a cluster's static inventory, each node in its data centre's
// region (the cluster's, for a node of none).
func Nodes(cl config.Cluster) []messages.Node {
	nodes := make([]messages.Node, 0, len(cl.Nodes))
	for _, n := range cl.Nodes {
		vols := make([]messages.Volume, 0, len(n.Volumes))
		for _, v := range n.Volumes {
			vols = append(vols, messages.Volume{ID: v.ID, Device: v.Device, Path: v.Path, Tags: v.Tags})
		}
		nodes = append(nodes, messages.Node{Name: n.Name, Address: n.Address, InstanceID: n.InstanceID, AZ: n.AZ,
			DC: n.DC, Region: regionOf(cl, n.DC), Volumes: vols, Dirs: Dirs(cl.Directories, n.Directories)})
	}
	return nodes
}

// regionOf is the region of a cluster's data centre dc: its own, else the
// cluster's.
func regionOf(cl config.Cluster, dc string) string {
	for _, d := range cl.DataCenters {
		if d.Name == dc && d.Region != "" {
			return d.Region
		}
	}
	return cl.Region
}

// Policy is the planner's copy of a configured policy, of a cluster
// copying its snapshots to copyRegions (ebs.copy_regions).
func Policy(p config.Policy, copyRegions []string) planner.Policy {
	var copies map[string]planner.Retention
	if len(p.CopyRetention) > 0 {
		copies = make(map[string]planner.Retention, len(p.CopyRetention))
		for region, r := range p.CopyRetention {
			copies[region] = planner.Retention{KeepLast: r.KeepLast, KeepWithin: time.Duration(r.KeepWithin),
				KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly, KeepMonthly: r.KeepMonthly, KeepYearly: r.KeepYearly,
				CountPartial: r.CountPartial}
		}
	}
	return planner.Policy{
		CopyRegions: slices.Clone(copyRegions), CopyRetention: copies,
		Name: p.Name, Cluster: p.Cluster, Schedule: p.Schedule, AllowPartial: p.AllowPartial,
		Retention: planner.Retention{KeepLast: p.KeepLast, KeepWithin: time.Duration(p.KeepWithin),
			KeepDaily: p.KeepDaily, KeepWeekly: p.KeepWeekly, KeepMonthly: p.KeepMonthly, KeepYearly: p.KeepYearly,
			CountPartial: p.CountPartial},
		FlushTimeout: time.Duration(p.FlushTimeout), SnapshotTimeout: time.Duration(p.SnapshotTimeout),
		FinishTimeout: time.Duration(p.FinishTimeout), JobTimeout: time.Duration(p.JobTimeout),
		ArmWindow: p.Arm(),
		Hooks:     PolicyHooks(p.Hooks),
	}
}

// PolicyHooks are a policy's hooks as the planner stores them with each plan:
// scope node and on_error fail (continue for complete hooks) where the file
// says nothing.
func PolicyHooks(hs []config.Hook) []messages.Hook {
	if len(hs) == 0 {
		return nil
	}
	out := make([]messages.Hook, 0, len(hs))
	for _, h := range hs {
		m := messages.Hook{Name: h.Name, Point: messages.HookPoint(h.Point), Scope: messages.ScopeNode,
			Command: slices.Clone(h.Command), TimeoutMS: time.Duration(h.Timeout).Milliseconds(),
			OnError: messages.OnErrorFail, Retries: h.Retries}
		if h.Scope != "" {
			m.Scope = messages.HookScope(h.Scope)
		}
		if h.OnError != "" {
			m.OnError = messages.OnError(h.OnError)
		} else if m.Point == messages.HookComplete {
			m.OnError = messages.OnErrorContinue
		}
		out = append(out, m)
	}
	return out
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
	c := ebs.Config{
		Cluster: cl.Name, Region: cl.Region, Account: cl.Account, RoleARN: cl.RoleARN, Endpoint: cl.EBS.Endpoint,
		PerInstance: cl.EBS.PerInstance, CopyVolumeTags: cl.EBS.CopyVolumeTags, CopyRegions: cl.EBS.CopyRegions,
	}
	for _, dc := range cl.DataCenters {
		c.DataCenters = append(c.DataCenters, ebs.DataCenter{Name: dc.Name, Region: dc.Region, Account: dc.Account, RoleARN: dc.RoleARN})
	}
	return c
}

// DataCenterEBS is the EBS settings discovering one data centre of a
// cluster: its region, account and role, else the cluster's.
func DataCenterEBS(cl config.Cluster, dc config.DataCenter) ebs.Config {
	c := EBS(cl)
	c.DataCenters = nil
	c.Region = regionOf(cl, dc.Name)
	if dc.Account != "" || dc.RoleARN != "" {
		c.Account, c.RoleARN = dc.Account, cmp.Or(dc.RoleARN, cl.RoleARN)
	}
	return c
}

// PaceLimits gives the pacer each account's, region's and operation's
// budget: the most specific of the configuration's ec2.limits matching it
// (account and region, then account, then region, then the operation
// alone), else AWS's default (ebs.DefaultLimit). A limit without a burst
// keeps the default bucket.
func PaceLimits(cfg *config.Config) func(pace.Key) pace.Limit {
	limits := slices.Clone(cfg.EC2.Limits)
	return func(k pace.Key) pace.Limit {
		def := ebs.DefaultLimit(k.Op)
		best, score := -1, -1
		for i, l := range limits {
			if l.Operation != k.Op || (l.Account != "" && l.Account != k.Account) || (l.Region != "" && l.Region != k.Region) {
				continue
			}
			s := 0
			if l.Account != "" {
				s += 2
			}
			if l.Region != "" {
				s++
			}
			if s > score {
				best, score = i, s
			}
		}
		if best < 0 {
			return def
		}
		return pace.Limit{Rate: limits[best].Rate, Burst: cmp.Or(limits[best].Burst, def.Burst)}
	}
}

// Discovery is the EC2 discovery of a cluster with a discovery section.
func Discovery(d config.Discovery) ebs.Discovery {
	return ebs.Discovery{
		InstanceTags: d.InstanceTags, Devices: d.Devices, VolumeTags: d.VolumeTags, IncludeRoot: d.IncludeRoot,
	}
}

// Restore is how a restore stops, starts and verifies Cassandra on a
// cluster's nodes.
func Restore(cl config.Cluster) noderestore.Settings {
	s := noderestore.Settings{Sudo: cl.SSH.Sudo}
	if sv := cl.CassandraService; sv != nil {
		s.Service = noderestore.ServiceSettings{Unit: sv.Unit, Start: sv.Start, Stop: sv.Stop, IsRunning: sv.IsRunning, Sudo: sv.Sudo}
		s.Sudo = s.Sudo || sv.Sudo
		s.CQLPort = sv.CQLPort
	}
	return s
}
