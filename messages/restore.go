package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Schema versions of the restore's wire types.
const (
	RestoreRequestSchema = "quiesce.restore-request/v1"
	RestoreSchema        = "quiesce.restore/v1"
)

// BucketRestores is the KV bucket holding each restore's record under its
// restore ID.
const BucketRestores = "quiesce_restores"

// SubjectRestoreSubmit carries RestoreRequests, on the JOBS stream, with the
// request ID as the Nats-Msg-Id.
const SubjectRestoreSubmit = "quiesce.restores.submit"

// Latest names, in RestoreRequest.Backup, the newest complete backup of the
// cluster.
const Latest = "latest"

// RestoreTarget is what a restore makes of a backup.
type RestoreTarget string

// Restore targets.
const (
	// TargetVolumes creates one volume per snapshot of the backup, and
	// attaches them where told; Cassandra is not touched.
	TargetVolumes RestoreTarget = "volumes"
	// TargetInPlace restores the backup onto the nodes it was taken from:
	// drained and stopped, the snapshot's files put in place, started and
	// verified.
	TargetInPlace RestoreTarget = "in-place"
	// TargetNewCluster restores the backup onto other nodes that take the
	// source nodes' tokens and form a cluster of their own.
	TargetNewCluster RestoreTarget = "new-cluster"
)

// RestorePointBarrier is the one restore point of v1: the backup's flush
// barrier, the files of snapshots/<tag> on every node.
const RestorePointBarrier = "barrier"

// RestoreRequest asks for one restore of one backup. It is published as
// JSON on SubjectRestoreSubmit with the request ID as the Nats-Msg-Id, so a
// request submitted twice makes one restore.
type RestoreRequest struct {
	Schema    string `json:"schema"`
	RequestID string `json:"request_id"`
	// Cluster is the cluster the backup was taken of.
	Cluster string `json:"cluster"`
	// Backup is the backup's job ID, or "latest" for the newest complete
	// backup of Cluster.
	Backup string        `json:"backup"`
	Target RestoreTarget `json:"target"`
	// RestorePoint is "barrier" (the default and, in v1, the only one).
	RestorePoint string `json:"restore_point,omitempty"`
	// TargetCluster names the cluster of quiesce's configuration whose
	// nodes receive a new-cluster restore (required then); the nodes of an
	// in-place restore are Cluster's.
	TargetCluster string `json:"target_cluster,omitempty"`
	// Nodes maps source nodes to where they are restored. In place, it
	// restricts the restore to these nodes (refused without Force unless
	// every node of the backup is listed). For a new cluster every source
	// node needs a target; the default pairs the backup's nodes with the
	// target cluster's in order. For volumes, a mapping's InstanceID and AZ
	// say where the node's volumes are created and attached.
	Nodes []NodeMapping `json:"nodes,omitempty"`
	// Volumes overrides what the catalog says of the volumes to create.
	Volumes *VolumeOverrides `json:"volumes,omitempty"`
	// Region restores from the backup's copies in this region instead of
	// the originals.
	Region string `json:"region,omitempty"`
	// Keyspaces limits what is put in place to these keyspaces (and
	// system_schema and system); default every keyspace of the backup.
	Keyspaces []string `json:"keyspaces,omitempty"`
	// Verify says how the restored cluster is checked.
	Verify *RestoreVerification `json:"verify,omitempty"`
	// StopRunning lets the restore drain and stop a node whose Cassandra is
	// running; without it such a node fails the restore before anything
	// changed on any node.
	StopRunning bool `json:"stop_running,omitempty"`
	// Force allows an in-place restore of some nodes of the backup only.
	Force bool `json:"force,omitempty"`
	// ClusterName is the cluster_name of a new cluster (default the
	// catalogued one).
	ClusterName string    `json:"cluster_name,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Deadline    time.Time `json:"deadline,omitempty"`
	// DryRun plans the restore and records the plan, and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// NodeMapping says where one source node is restored.
type NodeMapping struct {
	// Source is the node's name in the backup.
	Source string `json:"source"`
	// Target is a node of the target cluster's configuration.
	Target string `json:"target,omitempty"`
	// InstanceID and AZ place a volumes restore: the volumes are created in
	// AZ (default the source volume's) and attached to InstanceID.
	InstanceID string `json:"instance_id,omitempty"`
	AZ         string `json:"az,omitempty"`
}

// VolumeOverrides replace catalogued properties of the volumes a restore
// creates. Zero values keep the catalogued ones.
type VolumeOverrides struct {
	AZ         string `json:"az,omitempty"`
	Type       string `json:"type,omitempty"`
	SizeGiB    int32  `json:"size_gib,omitempty"`
	IOPS       int32  `json:"iops,omitempty"`
	Throughput int32  `json:"throughput,omitempty"`
	KMSKeyID   string `json:"kms_key_id,omitempty"`
	// Attach attaches each volume to its mapped instance.
	Attach bool `json:"attach,omitempty"`
}

// RestoreVerification says how a restored cluster is checked. Every node
// up and normal, host IDs and tokens as the catalog says (tokens only, for
// a new cluster) and one schema version are always checked.
type RestoreVerification struct {
	// CQL is a query run at consistency ALL once every node is up; with
	// ExpectRows it must return that many rows.
	CQL        string `json:"cql,omitempty"`
	ExpectRows *int64 `json:"expect_rows,omitempty"`
	// TimeoutSeconds bounds the wait for every node to be up (default 600).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// RestoreID returns the restore ID the request produces.
func (r RestoreRequest) RestoreID() string { return RestoreIDFor(r.Cluster, r.RequestID) }

// RestoreIDFor derives a restore ID from a cluster and a request ID. It
// ends in "-r" and 12 hex digits, so it is never a job ID.
func RestoreIDFor(cluster, requestID string) string {
	sum := sha256.Sum256([]byte("restore:" + requestID))
	return cluster + "-r" + hex.EncodeToString(sum[:6])
}

var (
	restoreIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}-r[0-9a-f]{12}$`)
	azPattern        = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+$`)
	volTypePattern   = regexp.MustCompile(`^(gp2|gp3|io1|io2|st1|sc1|standard)$`)
	instancePattern  = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
	kmsPattern       = regexp.MustCompile(`^[A-Za-z0-9:/_-]{1,1000}$`)
	// Cassandra's cluster_name becomes a YAML value; keep it plain.
	clusterNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 _.-]{0,62}$`)
)

// IsRestoreID reports whether id has a restore ID's shape.
func IsRestoreID(id string) bool { return restoreIDPattern.MatchString(id) }

// ValidateRestoreID checks a restore ID's shape.
func ValidateRestoreID(s string) error {
	if !IsRestoreID(s) {
		return &FieldError{"restore_id", s, "is not a quiesce restore ID (<cluster>-r<12 hex digits>)"}
	}
	return nil
}

// MaxCQLBytes bounds a verification query.
const MaxCQLBytes = 4096

// Validate checks a RestoreRequest on its own, without the catalog or the
// configuration. It returns every problem found, joined.
func (r RestoreRequest) Validate() error {
	var errs []error
	add := func(field, value, reason string) { errs = append(errs, &FieldError{field, value, reason}) }
	if r.Schema != RestoreRequestSchema {
		add("schema", r.Schema, "must be "+RestoreRequestSchema)
	}
	if r.RequestID == "" {
		add("request_id", "", "is required")
	} else if err := ValidateRequestID(r.RequestID); err != nil {
		errs = append(errs, err)
	}
	if r.Cluster == "" {
		add("cluster", "", "is required")
	} else if err := ValidateCluster(r.Cluster); err != nil {
		errs = append(errs, err)
	}
	switch {
	case r.Backup == "":
		add("backup", "", `is required: a backup's job ID, or "latest"`)
	case r.Backup == Latest:
	case ValidateJobID(r.Backup) != nil:
		add("backup", r.Backup, `must be a backup's job ID (<cluster>-<12 hex digits>) or "latest"`)
	case r.Cluster != "" && !strings.HasPrefix(r.Backup, r.Cluster+"-"):
		add("backup", r.Backup, "is not a backup of cluster "+r.Cluster)
	}
	switch r.Target {
	case TargetVolumes, TargetInPlace, TargetNewCluster:
	case "":
		add("target", "", fmt.Sprintf("is required: %q, %q or %q", TargetVolumes, TargetInPlace, TargetNewCluster))
	default:
		add("target", string(r.Target), fmt.Sprintf("must be %q, %q or %q", TargetVolumes, TargetInPlace, TargetNewCluster))
	}
	if r.RestorePoint != "" && r.RestorePoint != RestorePointBarrier {
		add("restore_point", r.RestorePoint, `must be "barrier": a backup restores to its flush barrier`)
	}
	switch {
	case r.Target == TargetNewCluster && r.TargetCluster == "":
		add("target_cluster", "", "is required for a new-cluster restore: the configured cluster whose nodes receive it")
	case r.Target == TargetNewCluster && r.TargetCluster == r.Cluster:
		add("target_cluster", r.TargetCluster, "must not be the backup's own cluster: a new cluster never joins its source (use target in-place)")
	case r.Target != TargetNewCluster && r.TargetCluster != "" && r.TargetCluster != r.Cluster:
		add("target_cluster", r.TargetCluster, "is only for a new-cluster restore")
	}
	if r.TargetCluster != "" {
		if err := ValidateCluster(r.TargetCluster); err != nil {
			errs = append(errs, &FieldError{"target_cluster", r.TargetCluster, err.(*FieldError).Reason})
		}
	}
	seenSrc, seenDst := map[string]bool{}, map[string]bool{}
	for i, m := range r.Nodes {
		f := fmt.Sprintf("nodes[%d]", i)
		if err := ValidateTarget(f+".source", m.Source); err != nil {
			errs = append(errs, err)
		} else if seenSrc[m.Source] {
			add(f+".source", m.Source, "is mapped twice")
		}
		seenSrc[m.Source] = true
		if m.Target != "" {
			if err := ValidateTarget(f+".target", m.Target); err != nil {
				errs = append(errs, err)
			} else if seenDst[m.Target] {
				add(f+".target", m.Target, "receives two source nodes")
			}
			seenDst[m.Target] = true
		}
		if r.Target == TargetInPlace && m.Target != "" && m.Target != m.Source {
			add(f+".target", m.Target, "must be the source node itself (or empty) in place")
		}
		if m.InstanceID != "" && !instancePattern.MatchString(m.InstanceID) {
			add(f+".instance_id", m.InstanceID, "must be an EC2 instance ID (i-…)")
		}
		if m.AZ != "" && !azPattern.MatchString(m.AZ) {
			add(f+".az", m.AZ, "must be an availability zone (us-east-1a)")
		}
		if r.Target != TargetVolumes && (m.InstanceID != "" || m.AZ != "") {
			add(f, m.Source, "instance_id and az place volumes; they are for target volumes only")
		}
	}
	if v := r.Volumes; v != nil {
		if r.Target != TargetVolumes && v.Attach {
			add("volumes.attach", "true", "is for target volumes only")
		}
		if v.AZ != "" && !azPattern.MatchString(v.AZ) {
			add("volumes.az", v.AZ, "must be an availability zone (us-east-1a)")
		}
		if v.Type != "" && !volTypePattern.MatchString(v.Type) {
			add("volumes.type", v.Type, "must be one of gp2, gp3, io1, io2, st1, sc1, standard")
		}
		if v.SizeGiB < 0 || v.SizeGiB > 65536 {
			add("volumes.size_gib", fmt.Sprint(v.SizeGiB), "must be between 1 and 65536")
		}
		if v.IOPS < 0 || v.IOPS > 256000 {
			add("volumes.iops", fmt.Sprint(v.IOPS), "must be between 100 and 256000")
		}
		if v.Throughput < 0 || v.Throughput > 2000 {
			add("volumes.throughput", fmt.Sprint(v.Throughput), "must be between 125 and 2000 MiB/s")
		}
		if v.KMSKeyID != "" && !kmsPattern.MatchString(v.KMSKeyID) {
			add("volumes.kms_key_id", v.KMSKeyID, "must be a KMS key ID, alias or ARN")
		}
		if v.Attach {
			for i, m := range r.Nodes {
				if m.InstanceID == "" {
					add(fmt.Sprintf("nodes[%d].instance_id", i), "", "is required to attach: which instance receives the volumes")
				}
			}
			if len(r.Nodes) == 0 {
				add("volumes.attach", "true", "needs nodes with an instance_id each")
			}
		}
	}
	if r.Region != "" && !azPattern.MatchString(r.Region) {
		add("region", r.Region, "must be an AWS region (us-west-2)")
	}
	for _, ks := range r.Keyspaces {
		if err := ValidateKeyspace(ks); err != nil {
			errs = append(errs, err)
		}
	}
	if v := r.Verify; v != nil {
		if len(v.CQL) > MaxCQLBytes {
			add("verify.cql", "", fmt.Sprintf("is longer than %d bytes", MaxCQLBytes))
		}
		if v.ExpectRows != nil && v.CQL == "" {
			add("verify.expect_rows", fmt.Sprint(*v.ExpectRows), "needs verify.cql")
		}
		if v.ExpectRows != nil && *v.ExpectRows < 0 {
			add("verify.expect_rows", fmt.Sprint(*v.ExpectRows), "must not be negative")
		}
		if v.TimeoutSeconds < 0 || v.TimeoutSeconds > 86400 {
			add("verify.timeout_seconds", fmt.Sprint(v.TimeoutSeconds), "must be between 1 and 86400")
		}
		if r.Target == TargetVolumes && (v.CQL != "" || v.ExpectRows != nil) {
			add("verify", "", "a volumes restore starts no Cassandra to query")
		}
	}
	if r.Target != TargetInPlace && r.Force {
		add("force", "true", "is for an in-place restore of some nodes only")
	}
	if r.Target == TargetVolumes && r.StopRunning {
		add("stop_running", "true", "a volumes restore stops no Cassandra")
	}
	if r.ClusterName != "" {
		if r.Target != TargetNewCluster {
			add("cluster_name", r.ClusterName, "is for a new-cluster restore only (in place, the cluster keeps its name)")
		} else if !clusterNamePattern.MatchString(r.ClusterName) {
			add("cluster_name", r.ClusterName, "must match "+clusterNamePattern.String())
		}
	}
	if len(r.Reason) > 1024 {
		add("reason", "", "is longer than 1024 bytes")
	}
	if len(r.RequestedBy) > 256 {
		add("requested_by", "", "is longer than 256 bytes")
	}
	return errors.Join(errs...)
}

// CheckDeadline rejects a deadline already past at now.
func (r RestoreRequest) CheckDeadline(now time.Time) error {
	if !r.Deadline.IsZero() && !r.Deadline.After(now) {
		return &FieldError{"deadline", r.Deadline.Format(time.RFC3339), "is already past"}
	}
	return nil
}

// DecodeRestoreRequest parses and validates a RestoreRequest. Unknown fields
// are an error, and a request that is not JSON of the request's shape wraps
// ErrMalformed.
func DecodeRestoreRequest(data []byte) (RestoreRequest, error) {
	var r RestoreRequest
	if err := decodeStrict(data, "restore request", RestoreRequestSchema, &r); err != nil {
		return r, err
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("invalid restore request: %w", err)
	}
	return r, nil
}

// decodeStrict reads data, at most MaxJobRequestBytes, as exactly one JSON
// object of v's shape: an unknown field, or anything after the object, is
// an error wrapping ErrMalformed. what names the request in the error.
func decodeStrict(data []byte, what, schema string, v any) error {
	if len(data) > MaxJobRequestBytes {
		return &malformed{fmt.Errorf("%s is %d bytes, more than the %d allowed", what, len(data), MaxJobRequestBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &malformed{fmt.Errorf("%s is not valid JSON for %s: %w", what, schema, err)}
	}
	if dec.More() {
		return &malformed{fmt.Errorf("%s has data after the JSON object", what)}
	}
	return nil
}

// RestorePhase is a restore's lifecycle phase; it changes only by
// compare-and-set on the restore's record.
type RestorePhase string

// Phases of a restore, in order. A volumes restore goes from volumes to
// succeeded; in place and new-cluster pass every phase: every node is
// stopped before any is prepared, and every node prepared before any
// starts.
const (
	RestorePlanned   RestorePhase = "planned"
	RestoreVolumes   RestorePhase = "volumes"
	RestoreStopping  RestorePhase = "stopping"
	RestorePreparing RestorePhase = "preparing"
	RestoreStarting  RestorePhase = "starting"
	RestoreVerifying RestorePhase = "verifying"
	RestoreSucceeded RestorePhase = "succeeded"
	RestoreFailed    RestorePhase = "failed"
	RestoreCancelled RestorePhase = "cancelled"
)

// RestorePhases lists the phases in order.
var RestorePhases = []RestorePhase{RestorePlanned, RestoreVolumes, RestoreStopping, RestorePreparing,
	RestoreStarting, RestoreVerifying, RestoreSucceeded, RestoreFailed, RestoreCancelled}

// Terminal reports whether no further transition can leave p.
func (p RestorePhase) Terminal() bool {
	return p == RestoreSucceeded || p == RestoreFailed || p == RestoreCancelled
}

// Task kinds of a restore.
const (
	KindRestoreVolume  Kind = "restore-volume"  // per snapshot: a volume (or a directory) from it, attached where told
	KindRestoreStop    Kind = "restore-stop"    // per node: drain and stop Cassandra, or check it is stopped
	KindRestorePrepare Kind = "restore-prepare" // per node: the snapshot's files in place, logs emptied, config written
	KindRestoreStart   Kind = "restore-start"   // per node: start Cassandra, wait until it serves CQL
	KindRestoreVerify  Kind = "restore-verify"  // per restore: the restored cluster checked
)

// RestoreKinds lists the restore's task kinds in the order it uses them.
var RestoreKinds = []Kind{KindRestoreVolume, KindRestoreStop, KindRestorePrepare, KindRestoreStart, KindRestoreVerify}

// IsRestore reports whether k is a restore's task kind.
func (k Kind) IsRestore() bool {
	for _, x := range RestoreKinds {
		if k == x {
			return true
		}
	}
	return false
}

// Tags a restore applies to the volumes it creates, beside TagManaged and
// TagCluster.
const (
	TagRestore        = "quiesce:restore"
	TagSourceSnapshot = "quiesce:source-snapshot"
)

// RestoreTask is the restore part of a Task of a restore kind.
type RestoreTask struct {
	RestoreID string        `json:"restore_id"`
	Target    RestoreTarget `json:"target"`
	// Volume is set for restore-volume tasks.
	Volume *VolumeRestore `json:"volume,omitempty"`
	// Node is set for restore-stop, restore-prepare and restore-start.
	Node *NodeRestore `json:"node,omitempty"`
	// Verify is set for restore-verify.
	Verify *RestoreVerify `json:"verify,omitempty"`
}

// VolumeRestore is one volume to make from one snapshot.
type VolumeRestore struct {
	SnapshotID   string `json:"snapshot_id"`
	SourceVolume string `json:"source_volume"`
	SourceNode   string `json:"source_node,omitempty"`
	// Region holds the snapshot (a copy's region); empty for the driver's.
	Region     string `json:"region,omitempty"`
	AZ         string `json:"az,omitempty"`
	Type       string `json:"type,omitempty"`
	SizeGiB    int32  `json:"size_gib,omitempty"`
	IOPS       int32  `json:"iops,omitempty"`
	Throughput int32  `json:"throughput,omitempty"`
	Encrypted  bool   `json:"encrypted,omitempty"`
	KMSKeyID   string `json:"kms_key_id,omitempty"`
	// InstanceID, when set, receives the volume at Device.
	InstanceID string `json:"instance_id,omitempty"`
	Device     string `json:"device,omitempty"`
	// Path is, for the fs driver, the directory the snapshot is restored
	// into.
	Path string `json:"path,omitempty"`
	// Tags are applied at creation.
	Tags map[string]string `json:"tags,omitempty"`
}

// NodeRestore is what a node's restore tasks need.
type NodeRestore struct {
	RestoreID string        `json:"restore_id"`
	Target    RestoreTarget `json:"target"`
	// SourceNode is the backup's node whose data this node receives.
	SourceNode string `json:"source_node"`
	// Tag is the backup's Cassandra snapshot tag.
	Tag       string   `json:"tag"`
	Keyspaces []string `json:"keyspaces,omitempty"`
	// StopRunning lets restore-stop drain and stop a running Cassandra.
	StopRunning bool `json:"stop_running,omitempty"`
	// Sources say, per live data directory, where on the node the restored
	// volume's copy of it is.
	Sources []RestoreSource `json:"sources,omitempty"`
	// NewCluster is set for a new-cluster restore.
	NewCluster *NewClusterConfig `json:"new_cluster,omitempty"`
	// Dirs are the node's live directories.
	Dirs NodeDirs `json:"dirs"`
}

// RestoreSource is where the restored copy of one data directory is.
type RestoreSource struct {
	DataDir string `json:"data_dir"`
	// From holds <keyspace>/<table>-<id>/snapshots/<tag>/; empty when the
	// snapshot is inside DataDir itself.
	From string `json:"from,omitempty"`
	// VolumeID is the backup's volume holding the directory; Device is
	// where the restored copy of it was attached, when one was.
	VolumeID string `json:"volume_id,omitempty"`
	Device   string `json:"device,omitempty"`
	// Snapshot is the source snapshot of an EBS volume attached to the node
	// for its restore (the restore-volume task's target, by which the
	// worker finds the volume made after the plan), and Region where that
	// volume is, when not the driver's. Mount is where the node's prepare
	// mounts the volume; From is under it.
	Snapshot string `json:"snapshot,omitempty"`
	Region   string `json:"region,omitempty"`
	Mount    string `json:"mount,omitempty"`
	// Devices are the paths the volume's device may have on the node, most
	// likely first: filled in by the worker running the prepare, from the
	// volume it finds.
	Devices []string `json:"devices,omitempty"`
}

// NewClusterConfig is what a node of a new cluster is configured with.
type NewClusterConfig struct {
	ClusterName   string   `json:"cluster_name"`
	InitialTokens []string `json:"initial_tokens"`
	NumTokens     int      `json:"num_tokens"`
	Seeds         []string `json:"seeds"`
	Datacenter    string   `json:"datacenter,omitempty"`
	Rack          string   `json:"rack,omitempty"`
	// DropSystemLocal gives the node a new host ID (system.local not
	// restored); peers tables are never restored in a new cluster.
	DropSystemLocal bool `json:"drop_system_local"`
}

// RestoreVerify is what a restore-verify task checks.
type RestoreVerify struct {
	Nodes         []VerifyNode `json:"nodes"`
	SchemaVersion string       `json:"schema_version,omitempty"`
	CQL           string       `json:"cql,omitempty"`
	ExpectRows    *int64       `json:"expect_rows,omitempty"`
	Timeout       int          `json:"timeout_seconds,omitempty"`
}

// VerifyNode is one node a verification expects.
type VerifyNode struct {
	Node    string `json:"node"`
	Address string `json:"address,omitempty"`
	// HostID is empty when any host ID will do (a new cluster).
	HostID string   `json:"host_id,omitempty"`
	Tokens []string `json:"tokens,omitempty"`
}

// RestoreReport is what a restore task did, in its TaskResult.
type RestoreReport struct {
	// VolumeID, Device and Path say what a restore-volume task made.
	VolumeID string `json:"volume_id,omitempty"`
	// Device is the name the attached volume has on its instance (for
	// NVMe, the /dev/nvme… name found by its serial).
	Device string `json:"device,omitempty"`
	Path   string `json:"path,omitempty"`
	// Step is how far a node task got: stopped, prepared, started, verified.
	Step string `json:"step,omitempty"`
	// Again is set when an earlier attempt had done the work.
	Again  bool     `json:"again,omitempty"`
	Aside  []string `json:"aside,omitempty"`
	Files  int      `json:"files,omitempty"`
	Bytes  int64    `json:"bytes,omitempty"`
	HostID string   `json:"host_id,omitempty"`
	Tokens []string `json:"tokens,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// Steps a node task reports in RestoreReport.Step.
const (
	// StepRunning: a restore-stop found Cassandra running on a node it was
	// not allowed to stop, and changed nothing.
	StepRunning  = "running"
	StepStopped  = "stopped"
	StepPrepared = "prepared"
	StepStarted  = "started"
	StepVerified = "verified"
)

// RestoreProgress counts a restore's tasks.
type RestoreProgress struct {
	Volumes       int  `json:"volumes"`
	VolumesDone   int  `json:"volumes_done"`
	VolumesFailed int  `json:"volumes_failed"`
	Nodes         int  `json:"nodes"`
	Stopped       int  `json:"stopped"`
	Prepared      int  `json:"prepared"`
	Started       int  `json:"started"`
	NodesFailed   int  `json:"nodes_failed"`
	Verified      bool `json:"verified"`
}

// RestoredVolume is one volume a restore made.
type RestoredVolume struct {
	SnapshotID   string `json:"snapshot_id"`
	SourceVolume string `json:"source_volume"`
	SourceNode   string `json:"source_node,omitempty"`
	TargetNode   string `json:"target_node,omitempty"`
	VolumeID     string `json:"volume_id,omitempty"`
	Device       string `json:"device,omitempty"`
	Path         string `json:"path,omitempty"`
}

// Restore is a restore's record in BucketRestores, as status readers see
// it; the coordinator keeps further bookkeeping in the same record.
type Restore struct {
	Schema        string        `json:"schema"`
	ID            string        `json:"id"`
	RequestID     string        `json:"request_id"`
	Cluster       string        `json:"cluster"`
	Backup        string        `json:"backup"`
	Tag           string        `json:"tag"`
	Target        RestoreTarget `json:"target"`
	TargetCluster string        `json:"target_cluster,omitempty"`
	DryRun        bool          `json:"dry_run,omitempty"`
	Reason        string        `json:"reason,omitempty"`
	RequestedBy   string        `json:"requested_by,omitempty"`
	Phase         RestorePhase  `json:"phase"`
	Error         string        `json:"error,omitempty"`
	// EndReason classifies Error once the restore failed or was cancelled.
	EndReason     string                     `json:"end_reason,omitempty"`
	CreatedAt     time.Time                  `json:"created_at"`
	UpdatedAt     time.Time                  `json:"updated_at"`
	Deadline      time.Time                  `json:"deadline"`
	PhaseDeadline time.Time                  `json:"phase_deadline,omitempty"`
	PhaseTimes    map[RestorePhase]time.Time `json:"phase_times,omitempty"`
	Progress      RestoreProgress            `json:"progress"`
	// Volumes is not kept in the record (planner.RestoredVolumes reads
	// them from the plan and the tasks' result events); status readers
	// fill it in.
	Volumes  []RestoredVolume `json:"volumes,omitempty"`
	Failures []Failure        `json:"failures,omitempty"`
	Warnings []string         `json:"warnings,omitempty"`
}

// RestorePhaseEvent is published on SubjectPhaseEvent(restore) at every
// phase change of a restore.
type RestorePhaseEvent struct {
	Schema    string       `json:"schema"`
	RestoreID string       `json:"restore_id"`
	From      RestorePhase `json:"from"`
	To        RestorePhase `json:"to"`
	At        time.Time    `json:"at"`
	Error     string       `json:"error,omitempty"`
}

// RestorePhaseEventSchema versions RestorePhaseEvent.
const RestorePhaseEventSchema = "quiesce.restore-phase/v1"

// IndexOfRestorePhase is p's position in RestorePhases, or -1.
func IndexOfRestorePhase(p RestorePhase) int {
	for i, x := range RestorePhases {
		if x == p {
			return i
		}
	}
	return -1
}
