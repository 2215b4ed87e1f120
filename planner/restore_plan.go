package planner

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// Snapshotter kinds, as a Cluster's Snapshotter names them: they decide how
// a restore gets a snapshot's data onto a node.
const (
	SnapshotterEBS = "ebs"
	SnapshotterFS  = "fs"
)

// Deadlines of a restore's phases, and of the whole restore, when the
// request sets none.
const (
	DefaultRestoreVolumesTimeout = 2 * time.Hour
	DefaultRestoreStopTimeout    = 15 * time.Minute
	DefaultRestorePrepareTimeout = 2 * time.Hour
	DefaultRestoreStartTimeout   = 30 * time.Minute
	DefaultRestoreVerifyTimeout  = 10 * time.Minute
	DefaultRestoreTimeout        = 12 * time.Hour
)

// RestorePlan is everything a restore does, decided once from the request,
// the backup's catalog record and the configuration: which volume is made
// from which snapshot where, and which node receives which source node's
// data. It is stored before the restore's record.
type RestorePlan struct {
	RestoreID     string                  `json:"restore_id"`
	Request       messages.RestoreRequest `json:"request"`
	Cluster       string                  `json:"cluster"`
	TargetCluster string                  `json:"target_cluster"`
	Backup        string                  `json:"backup"`
	Tag           string                  `json:"tag"`
	Target        messages.RestoreTarget  `json:"target"`
	// Snapshotter is the source cluster's snapshotter kind.
	Snapshotter string                  `json:"snapshotter"`
	Volumes     []RestoreVolumePlan     `json:"volumes"`
	Nodes       []RestoreNodePlan       `json:"nodes,omitempty"`
	Verify      *messages.RestoreVerify `json:"verify,omitempty"`
	// Warnings say what the plan could not be sure of.
	Warnings  []string  `json:"warnings,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// RestoreVolumePlan is one volume the restore makes from one snapshot.
type RestoreVolumePlan struct {
	Volume messages.VolumeRestore `json:"volume"`
	// TargetNode names the node receiving the volume ("" for a volumes
	// restore that attaches it nowhere).
	TargetNode string `json:"target_node,omitempty"`
}

// RestoreNodePlan is one node receiving one source node's data.
type RestoreNodePlan struct {
	Node messages.Node        `json:"node"`
	Spec messages.NodeRestore `json:"spec"`
}

// RefusalError lists every reason a restore cannot be planned. Nothing was
// started.
type RefusalError struct {
	Reasons []string
}

func (e *RefusalError) Error() string {
	return "restore refused: " + strings.Join(e.Reasons, "; ")
}

// ErrRefused is matched by every RefusalError.
var ErrRefused = errors.New("restore refused")

// Is makes errors.Is(err, ErrRefused) hold.
func (e *RefusalError) Is(target error) bool { return target == ErrRefused }

// RestoreTargets are the nodes a restore may use: the source cluster's, as
// configured, and the target cluster's for a new-cluster restore.
type RestoreTargets struct {
	// Source is the backup's cluster as configured now (in place: the
	// nodes restored).
	Source Cluster
	// Target is the target cluster of a new-cluster restore.
	Target *Cluster
}

// BuildRestorePlan decides what a restore does, or says every reason it
// cannot. It is a pure function of its inputs. backup must be the full
// record (LoadBackup).
func BuildRestorePlan(req messages.RestoreRequest, backup messages.Backup, targets RestoreTargets, now time.Time) (*RestorePlan, error) {
	var why []string
	refuse := func(format string, a ...any) { why = append(why, fmt.Sprintf(format, a...)) }
	if err := req.Validate(); err != nil {
		return nil, &RefusalError{Reasons: []string{err.Error()}}
	}
	p := &RestorePlan{
		RestoreID: req.RestoreID(), Request: req, Cluster: req.Cluster, TargetCluster: req.Cluster,
		Backup: backup.JobID, Tag: backup.Tag, Target: req.Target, Snapshotter: targets.Source.Snapshotter,
		CreatedAt: now,
	}
	if p.Snapshotter == "" {
		p.Snapshotter = SnapshotterEBS
	}
	if req.Target == messages.TargetNewCluster {
		p.TargetCluster = req.TargetCluster
	}
	if backup.Partial && req.Target == messages.TargetInPlace && !req.Force {
		refuse("backup %s is partial (no data of %s): restoring it in place needs force", backup.JobID, strings.Join(backup.MissingNodes, ", "))
	}
	if p.Snapshotter != SnapshotterFS && p.Snapshotter != SnapshotterEBS && req.Target != messages.TargetVolumes {
		refuse("cluster %s snapshots with %s: only ebs and fs snapshots are restored onto nodes; restore it with target volumes", req.Cluster, p.Snapshotter)
	}
	if backup.Mode == messages.ModeCrash && req.Target != messages.TargetVolumes {
		refuse("backup %s is crash-consistent: it has no Cassandra snapshot tag to restore from; restore its volumes instead", backup.JobID)
	}
	facts := map[string]messages.NodeFacts{}
	if backup.Topology != nil {
		for _, f := range backup.Topology.Nodes {
			facts[f.Node] = f
		}
	}
	snapOf := map[string]messages.SnapshotRef{}
	for _, s := range backup.Snapshots {
		snapOf[s.VolumeID] = s
	}
	volFacts := map[string]messages.VolumeFacts{}
	if backup.Topology != nil {
		for _, v := range backup.Topology.Volumes {
			volFacts[v.VolumeID] = v
		}
	}
	source := map[string]messages.Node{}
	for _, n := range backup.Nodes {
		source[n.Name] = n
	}
	mapping := map[string]messages.NodeMapping{}
	for _, m := range req.Nodes {
		if _, ok := source[m.Source]; !ok {
			refuse("nodes: %s is not a node of backup %s", m.Source, backup.JobID)
		}
		mapping[m.Source] = m
	}

	// Which source nodes are restored, and onto which node.
	var sources []messages.Node
	for _, n := range backup.Nodes {
		if len(req.Nodes) == 0 || mapping[n.Name].Source != "" {
			sources = append(sources, n)
		}
	}
	if req.Target == messages.TargetInPlace && len(sources) < len(backup.Nodes) && !req.Force {
		refuse("in place, %d of the backup's %d nodes are restored: the others would repair post-barrier data back into them; restore every node, or set force", len(sources), len(backup.Nodes))
	}
	targetsByName := map[string]messages.Node{}
	var targetOrder []messages.Node
	switch req.Target {
	case messages.TargetInPlace:
		for _, n := range targets.Source.Nodes {
			targetsByName[n.Name] = n
			targetOrder = append(targetOrder, n)
		}
	case messages.TargetNewCluster:
		if targets.Target == nil {
			refuse("target_cluster %q is not in the configuration", req.TargetCluster)
			break
		}
		for _, n := range targets.Target.Nodes {
			targetsByName[n.Name] = n
			targetOrder = append(targetOrder, n)
		}
		if len(targetOrder) < len(sources) {
			refuse("target_cluster %s has %d nodes for the backup's %d", req.TargetCluster, len(targetOrder), len(sources))
		}
	}
	targetFor := func(i int, src messages.Node) (messages.Node, bool) {
		name := mapping[src.Name].Target
		switch {
		case req.Target == messages.TargetInPlace:
			name = src.Name
		case name == "" && i < len(targetOrder):
			name = targetOrder[i].Name
		}
		n, ok := targetsByName[name]
		if !ok {
			if req.Target == messages.TargetInPlace {
				refuse("node %s is in the backup but not in cluster %s's configuration", src.Name, req.Cluster)
			} else {
				refuse("node %s: target %q is not a node of cluster %s", src.Name, name, req.TargetCluster)
			}
		}
		return n, ok
	}

	var seeds []string
	if req.Target == messages.TargetNewCluster {
		for i, src := range sources {
			if t, ok := targetFor(i, src); ok && len(seeds) < 3 && t.Address != "" {
				seeds = append(seeds, t.Address)
			}
		}
	}
	deviceSeq := map[string]int{}
	for i, src := range sources {
		var target messages.Node
		if req.Target != messages.TargetVolumes {
			t, ok := targetFor(i, src)
			if !ok {
				continue
			}
			target = t
		}
		f, haveFacts := facts[src.Name]
		srcDirs := f.Dirs
		if !haveFacts || len(srcDirs.Data) == 0 {
			if src.Dirs != nil {
				srcDirs = *src.Dirs
			}
		}
		var spec messages.NodeRestore
		if req.Target != messages.TargetVolumes {
			if !haveFacts || len(f.Tokens) == 0 {
				refuse("node %s: the catalog has no tokens for it (the backup predates catalog topology, or its facts could not be gathered)", src.Name)
			}
			if len(srcDirs.Data) == 0 {
				refuse("node %s: the catalog has no data directories for it", src.Name)
			}
			tdirs := srcDirs
			if req.Target == messages.TargetNewCluster {
				if target.Dirs == nil || len(target.Dirs.Data) == 0 {
					refuse("target node %s: no data directories configured (clusters.nodes.dirs)", target.Name)
				} else {
					tdirs = *target.Dirs
					if len(tdirs.Data) != len(srcDirs.Data) {
						refuse("target node %s has %d data directories for source %s's %d", target.Name, len(tdirs.Data), src.Name, len(srcDirs.Data))
					}
				}
			}
			if target.Dirs == nil {
				d := tdirs
				target.Dirs = &d
			}
			spec = messages.NodeRestore{
				RestoreID: p.RestoreID, Target: req.Target, SourceNode: src.Name, Tag: backup.Tag,
				Keyspaces: req.Keyspaces, StopRunning: req.StopRunning, Dirs: tdirs,
			}
			if req.Target == messages.TargetNewCluster {
				name := req.ClusterName
				if name == "" && backup.Topology != nil {
					name = backup.Topology.ClusterName
				}
				if name == "" {
					refuse("cluster_name: the catalog does not say the source's cluster name; give cluster_name")
				}
				spec.NewCluster = &messages.NewClusterConfig{
					ClusterName: name, InitialTokens: f.Tokens, NumTokens: len(f.Tokens), Seeds: seeds,
					Datacenter: f.Datacenter, Rack: f.Rack, DropSystemLocal: true,
				}
			}
		}
		for _, v := range src.Volumes {
			s, ok := snapOf[v.ID]
			if !ok {
				refuse("volume %s of node %s has no snapshot in backup %s", v.ID, src.Name, backup.JobID)
				continue
			}
			if s.State != "" && s.State != "completed" {
				refuse("snapshot %s of volume %s is %s, not completed", s.SnapshotID, v.ID, s.State)
			}
			vf := volFacts[v.ID]
			vr := messages.VolumeRestore{
				SnapshotID: s.SnapshotID, SourceVolume: v.ID, SourceNode: src.Name, Region: req.Region,
				AZ: firstOf(vf.AZ, src.AZ), Type: vf.Type, SizeGiB: vf.SizeGiB, IOPS: vf.IOPS,
				Throughput: vf.Throughput, Encrypted: vf.Encrypted, KMSKeyID: vf.KMSKeyID,
				Tags: map[string]string{
					messages.TagManaged: "true", messages.TagCluster: req.Cluster, messages.TagRestore: p.RestoreID,
					messages.TagSourceSnapshot: s.SnapshotID, messages.TagNode: src.Name,
				},
			}
			if o := req.Volumes; o != nil {
				vr.AZ = firstOf(o.AZ, vr.AZ)
				vr.Type = firstOf(o.Type, vr.Type)
				if o.SizeGiB > 0 {
					if o.SizeGiB < vf.SizeGiB {
						refuse("volumes.size_gib %d is smaller than volume %s's %d GiB", o.SizeGiB, v.ID, vf.SizeGiB)
					}
					vr.SizeGiB = o.SizeGiB
				}
				if o.IOPS > 0 {
					vr.IOPS = o.IOPS
				}
				if o.Throughput > 0 {
					vr.Throughput = o.Throughput
				}
				if o.KMSKeyID != "" {
					vr.KMSKeyID, vr.Encrypted = o.KMSKeyID, true
				}
			}
			plan := RestoreVolumePlan{Volume: vr}
			switch req.Target {
			case messages.TargetVolumes:
				m := mapping[src.Name]
				vr.AZ = firstOf(m.AZ, vr.AZ)
				if req.Volumes != nil && req.Volumes.Attach {
					vr.InstanceID = m.InstanceID
					vr.Device = nextDevice(deviceSeq, m.InstanceID)
				}
				if p.Snapshotter == SnapshotterFS {
					if v.Path == "" {
						refuse("volume %s has no path to restore beside", v.ID)
					}
					vr.Path = stagingDir(v.Path, p.RestoreID, v.ID)
				}
				plan.TargetNode = firstOf(m.InstanceID, src.Name)
			default:
				plan.TargetNode = target.Name
				srcs := restoreSource(srcDirs.Data, spec.Dirs.Data, v)
				if len(srcs) == 0 {
					// A commit log or hints volume: the restore empties
					// those directories, so their snapshots are not needed.
					p.Warnings = append(p.Warnings, fmt.Sprintf("volume %s of node %s holds no data directory; not restored", v.ID, src.Name))
					continue
				}
				// The volume's copy is beside the target data directory:
				// restored there by the fs driver, or, with EBS, a new
				// volume attached to the target's instance and mounted
				// there by the node's prepare.
				dir := stagingDir(srcs[0].DataDir, p.RestoreID, v.ID)
				if p.Snapshotter == SnapshotterFS {
					vr.Path = dir
				} else {
					if target.InstanceID == "" {
						refuse("target node %s: no instance_id configured: its restored volumes are attached to its instance", target.Name)
					}
					vr.AZ = firstOf(target.AZ, vr.AZ)
					if req.Volumes != nil {
						vr.AZ = firstOf(req.Volumes.AZ, vr.AZ)
					}
					if target.AZ != "" && vr.AZ != target.AZ {
						refuse("volume %s: availability zone %s is not target node %s's (%s): a volume attaches only in its instance's zone", v.ID, vr.AZ, target.Name, target.AZ)
					}
					vr.InstanceID = target.InstanceID
					vr.Device = nextDevice(deviceSeq, target.InstanceID)
				}
				for k := range srcs {
					srcs[k].From = path.Join(dir, srcs[k].From)
					if p.Snapshotter != SnapshotterFS {
						srcs[k].Snapshot, srcs[k].Region, srcs[k].Mount, srcs[k].Device = s.SnapshotID, req.Region, dir, vr.Device
					}
				}
				spec.Sources = append(spec.Sources, srcs...)
			}
			if req.Region != "" && !strings.HasPrefix(vr.AZ, req.Region) {
				refuse("volume %s: availability zone %q is not in region %s, where its copy is; give volumes.az", v.ID, vr.AZ, req.Region)
			}
			plan.Volume = vr
			p.Volumes = append(p.Volumes, plan)
		}
		if req.Target != messages.TargetVolumes {
			sort.Slice(spec.Sources, func(a, b int) bool { return spec.Sources[a].DataDir < spec.Sources[b].DataDir })
			if len(spec.Sources) < len(spec.Dirs.Data) {
				refuse("node %s: %d of its %d data directories are on no volume of the backup", src.Name, len(spec.Dirs.Data)-len(spec.Sources), len(spec.Dirs.Data))
			}
			p.Nodes = append(p.Nodes, RestoreNodePlan{Node: target, Spec: spec})
		}
	}
	if len(p.Volumes) == 0 && len(why) == 0 {
		refuse("backup %s has no snapshot to restore", backup.JobID)
	}
	if req.Target != messages.TargetVolumes {
		v := &messages.RestoreVerify{}
		if backup.Topology != nil {
			v.SchemaVersion = backup.Topology.SchemaVersion
		}
		if rv := req.Verify; rv != nil {
			v.CQL, v.ExpectRows, v.Timeout = rv.CQL, rv.ExpectRows, rv.TimeoutSeconds
		}
		for _, n := range p.Nodes {
			f := facts[n.Spec.SourceNode]
			vn := messages.VerifyNode{Node: n.Node.Name, Address: n.Node.Address, Tokens: f.Tokens}
			if req.Target == messages.TargetInPlace {
				vn.HostID = f.HostID
			}
			v.Nodes = append(v.Nodes, vn)
		}
		p.Verify = v
	}
	if len(why) > 0 {
		return nil, &RefusalError{Reasons: why}
	}
	return p, nil
}

// restoreSource pairs the source's data directories held by volume v with
// the target's data directories of the same position. From is set to the
// directory's path relative to the volume; the caller makes it absolute.
func restoreSource(srcData, dstData []string, v messages.Volume) []messages.RestoreSource {
	var out []messages.RestoreSource
	for k, d := range srcData {
		if k >= len(dstData) {
			break
		}
		rel, ok := within(v.Path, d)
		if !ok {
			continue
		}
		out = append(out, messages.RestoreSource{DataDir: dstData[k], From: rel, VolumeID: v.ID})
	}
	if len(out) == 0 && v.Path == "" && len(srcData) == 1 && len(dstData) == 1 {
		// A volume without a recorded mount point on a node of one data
		// directory holds that directory.
		out = append(out, messages.RestoreSource{DataDir: dstData[0], From: ".", VolumeID: v.ID})
	}
	return out
}

// within reports d's path relative to root when d is root or under it.
func within(root, d string) (string, bool) {
	if root == "" {
		return "", false
	}
	if d == root {
		return ".", true
	}
	if strings.HasPrefix(d, strings.TrimSuffix(root, "/")+"/") {
		return strings.TrimPrefix(d, strings.TrimSuffix(root, "/")+"/"), true
	}
	return "", false
}

// stagingDir is where the fs driver restores a volume's snapshot beside
// dir, on its file system, so the node's restore can hard-link its files.
func stagingDir(dir, restoreID, volumeID string) string {
	return path.Join(path.Dir(dir), ".quiesce-restore", restoreID, volumeID)
}

// nextDevice gives each volume attached to one instance a device of its
// own, from /dev/sdr on: letters the data volumes of a node rarely use.
func nextDevice(seq map[string]int, key string) string {
	n := seq[key]
	seq[key] = n + 1
	return fmt.Sprintf("/dev/sd%c", 'r'+rune(n%9))
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// phaseTimeout is the deadline of a restore phase.
func (p *RestorePlan) phaseTimeout(ph messages.RestorePhase) time.Duration {
	switch ph {
	case messages.RestorePlanned, messages.RestoreVolumes:
		return DefaultRestoreVolumesTimeout
	case messages.RestoreStopping:
		return DefaultRestoreStopTimeout
	case messages.RestorePreparing:
		return DefaultRestorePrepareTimeout
	case messages.RestoreStarting:
		return DefaultRestoreStartTimeout
	case messages.RestoreVerifying:
		if p.Verify != nil && p.Verify.Timeout > 0 {
			return time.Duration(p.Verify.Timeout)*time.Second + 5*time.Minute
		}
		return DefaultRestoreVerifyTimeout + 5*time.Minute
	}
	return 0
}
