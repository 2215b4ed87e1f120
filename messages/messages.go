package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"
)

// Schema versions of the wire types. A consumer rejects a message whose schema
// it does not know rather than guessing at its meaning.
const (
	JobRequestSchema = "quiesce.job-request/v1"
	TaskSchema       = "quiesce.task/v1"
	TaskResultSchema = "quiesce.task-result/v1"
	TaskRetrySchema  = "quiesce.task-retry/v1"
	JobSchema        = "quiesce.job/v1"
	BackupSchema     = "quiesce.backup/v1"
)

// Mode is a job's consistency mode.
type Mode string

const (
	// ModeApplication flushes every node (nodetool snapshot) before any volume
	// snapshot is taken: the default, and the point of quiesce.
	ModeApplication Mode = "application"
	// ModeCrash skips the flush barrier and snapshots volumes directly. The
	// result is crash-consistent at best; use it only where the operator
	// accepts that (for example a node that cannot be reached).
	ModeCrash Mode = "crash"
)

// Phase is a job's lifecycle phase. A phase changes only by compare-and-set on
// the job's record in the jobs KV bucket.
type Phase string

// Phases of a job, in order. succeeded, failed and cancelled are terminal.
const (
	PhasePlanned      Phase = "planned"
	PhaseFlushing     Phase = "flushing"
	PhaseSnapshotting Phase = "snapshotting"
	PhaseFinishing    Phase = "finishing"
	PhaseSucceeded    Phase = "succeeded"
	PhaseFailed       Phase = "failed"
	PhaseCancelled    Phase = "cancelled"
)

// Terminal reports whether no further transition can leave p.
func (p Phase) Terminal() bool {
	return p == PhaseSucceeded || p == PhaseFailed || p == PhaseCancelled
}

// Kind is a task's kind: a stable string used in subjects, consumer names,
// task IDs and metric labels.
type Kind string

// Task kinds.
const (
	KindFlush     Kind = "flush"     // per node: nodetool snapshot -t TAG
	KindSnapshot  Kind = "snapshot"  // per volume, or per node for a multi-volume set
	KindClear     Kind = "clear"     // per node: nodetool clearsnapshot -t TAG
	KindAwait     Kind = "await"     // per job: wait until the job's volume snapshots complete
	KindRetention Kind = "retention" // per cluster: delete the snapshots of retired backups
	KindCleanup   Kind = "cleanup"   // per failed job: delete the snapshots it took, which are no backup
	KindHook      Kind = "hook"      // per hook and node (or per job): a policy's before/after/complete command
)

// Kinds lists every task kind, in the order a job uses them.
var Kinds = []Kind{KindFlush, KindSnapshot, KindClear, KindAwait, KindRetention, KindCleanup, KindHook,
	KindRestoreVolume, KindRestoreStop, KindRestorePrepare, KindRestoreStart, KindRestoreVerify}

// HookPoint is when in a job a hook runs.
type HookPoint string

// Hook points.
const (
	// HookBefore runs before the flush: a failure with on_error fail fails
	// the job before any node flushed.
	HookBefore HookPoint = "before"
	// HookAfter runs once every volume snapshot of the job is initiated (a
	// freeze may end), and on every node whose before hook was started,
	// whatever the job's outcome.
	HookAfter HookPoint = "after"
	// HookComplete runs once the job ended, with its outcome: after the
	// catalog is written for a backup.
	HookComplete HookPoint = "complete"
)

// HookScope is where a hook runs.
type HookScope string

// Hook scopes.
const (
	// ScopeNode runs the hook on every node, through the cluster's executor.
	ScopeNode HookScope = "node"
	// ScopeJob runs the hook once, on a worker.
	ScopeJob HookScope = "job"
)

// OnError says what a hook's failure does to its job.
type OnError string

// What a failed hook does.
const (
	OnErrorFail     OnError = "fail"
	OnErrorContinue OnError = "continue"
)

// Hook is a command a policy runs at one point of each job. The command is
// an argv (no shell unless it names one); the job's facts reach it as
// environment variables, never on its command line.
type Hook struct {
	Name    string    `json:"name"`
	Point   HookPoint `json:"point"`
	Scope   HookScope `json:"scope"`
	Command []string  `json:"command"`
	// TimeoutMS bounds each run; the command is stopped when it passes.
	TimeoutMS int64   `json:"timeout_ms"`
	OnError   OnError `json:"on_error"`
	// Retries is how many more times a failed run is tried.
	Retries int `json:"retries,omitempty"`
}

// Timeout is the hook's timeout.
func (h Hook) Timeout() time.Duration { return time.Duration(h.TimeoutMS) * time.Millisecond }

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

// JobRequest asks for one backup of one cluster. It is published as JSON on
// SubjectSubmit with the request ID as the Nats-Msg-Id header, so a request
// submitted twice makes one job.
type JobRequest struct {
	Schema    string `json:"schema"`
	RequestID string `json:"request_id"`
	Cluster   string `json:"cluster"`
	// Policy names a policy of the cluster; empty means the cluster's default.
	Policy string `json:"policy,omitempty"`
	// Mode defaults to ModeApplication.
	Mode Mode `json:"mode,omitempty"`
	// Tag overrides the Cassandra snapshot tag (default "quiesce-<job id>").
	Tag string `json:"tag,omitempty"`
	// Keyspaces limits the Cassandra snapshot to these keyspaces, and the
	// system keyspaces a restore of them needs (system_schema, system);
	// default all, the system ones included.
	Keyspaces   []string  `json:"keyspaces,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Deadline    time.Time `json:"deadline,omitzero"`
}

// JobID returns the job ID a request produces. It is derived from the cluster
// and the request ID alone, so every replica of the planner, and the CLI before
// it submits, computes the same ID for the same request.
func (r JobRequest) JobID() string {
	return JobIDFor(r.Cluster, r.RequestID)
}

// JobIDFor derives a job ID from a cluster name and a request ID.
func JobIDFor(cluster, requestID string) string {
	sum := sha256.Sum256([]byte(requestID))
	return cluster + "-" + hex.EncodeToString(sum[:6])
}

// Digest identifies what a request asks for: the SHA-256 of its canonical
// JSON (fields in a fixed order, keyspaces sorted, the deadline in UTC). Two
// requests with one digest ask for the same backup, however their JSON was
// spaced or ordered; a request ID names one request, and one digest.
func (r JobRequest) Digest() string {
	c := r
	c.Keyspaces = slices.Clone(r.Keyspaces)
	slices.Sort(c.Keyspaces)
	if !c.Deadline.IsZero() {
		c.Deadline = c.Deadline.UTC()
	}
	data, err := json.Marshal(c)
	if err != nil {
		// A JobRequest holds only strings and a time: it always marshals.
		panic(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// RequestClaim is kept in BucketRequests under RequestKey(request ID) once a
// request became a job: it is how a request ID used again for a different
// request is recognised, whichever cluster it names and however long after.
type RequestClaim struct {
	Schema    string    `json:"schema"`
	RequestID string    `json:"request_id"`
	JobID     string    `json:"job_id"`
	Digest    string    `json:"digest"`
	At        time.Time `json:"at"`
}

// Replica is one running quiesce process as it announces itself in
// BucketReplicas: what it runs and with which configuration. Replicas of a
// fleet should agree; during a rolling update they do not, and a replica
// leaves a cluster it does not know to one that does.
type Replica struct {
	Schema string `json:"schema"`
	// ID is the process's key in BucketReplicas.
	ID string `json:"id"`
	// Name is the process's name (a worker's name in its events).
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// Kinds are the task kinds a worker takes.
	Kinds []Kind `json:"kinds,omitempty"`
	// Clusters are the clusters in the process's configuration.
	Clusters []string `json:"clusters"`
	// Policies are its policies, each as "<cluster>/<policy>".
	Policies []string `json:"policies,omitempty"`
	// Config is a fingerprint of the clusters and policies of the
	// configuration: replicas with different fingerprints disagree.
	Config    string    `json:"config"`
	StartedAt time.Time `json:"started_at"`
}

// ReplicaSchema versions Replica.
const ReplicaSchema = "quiesce.replica/v1"

// Roles a Replica runs.
const (
	RolePlanner     = "planner"
	RoleCoordinator = "coordinator"
	RoleWorker      = "worker"
)

// Knows reports whether the replica runs role with cluster in its
// configuration.
func (r Replica) Knows(role, cluster string) bool {
	return slices.Contains(r.Roles, role) && slices.Contains(r.Clusters, cluster)
}

// KnowsPolicy reports whether the replica runs role with the named policy
// of cluster in its configuration.
func (r Replica) KnowsPolicy(role, cluster, policy string) bool {
	return r.Knows(role, cluster) && slices.Contains(r.Policies, cluster+"/"+policy)
}

// RequestClaimSchema versions RequestClaim.
const RequestClaimSchema = "quiesce.request-claim/v1"

// Node is one Cassandra host as the planner resolved it.
type Node struct {
	Name       string `json:"name"`
	Address    string `json:"address,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	AZ         string `json:"az,omitempty"`
	// DC is the node's Cassandra data centre, as the configuration places
	// it; Region the AWS region of that data centre, where the node's
	// volumes are snapshotted. Both are empty for a cluster configured
	// without data centres: its nodes are in the cluster's region.
	DC      string   `json:"dc,omitempty"`
	Region  string   `json:"region,omitempty"`
	Volumes []Volume `json:"volumes"`
	// Dirs are where Cassandra keeps its files on the node, when known
	// (configured, or found by an earlier backup). The flush syncs the file
	// systems holding Dirs.Data; a restore empties the others.
	Dirs *NodeDirs `json:"dirs,omitempty"`
}

// NodeDirs are a Cassandra node's directories, as its cassandra.yaml sets
// them: data_file_directories, commitlog_directory, hints_directory,
// saved_caches_directory and cdc_raw_directory. Every path is absolute.
type NodeDirs struct {
	Data        []string `json:"data,omitempty"`
	CommitLog   string   `json:"commitlog,omitempty"`
	Hints       string   `json:"hints,omitempty"`
	SavedCaches string   `json:"saved_caches,omitempty"`
	CDCRaw      string   `json:"cdc_raw,omitempty"`
}

// Volume is one data volume of a node.
type Volume struct {
	ID     string `json:"id"`
	Device string `json:"device,omitempty"`
	// Path is the volume's mount point or, for the fs driver, the directory
	// that is the volume.
	Path string            `json:"path,omitempty"`
	Tags map[string]string `json:"tags,omitempty"`
}

// Task is one unit of remote work. Its ID is deterministic,
// "<job>.<kind>.<target>", and is used as the Nats-Msg-Id when it is published
// and as a tag on anything it creates, so redelivery never repeats an effect.
type Task struct {
	Schema  string `json:"schema"`
	ID      string `json:"id"`
	Kind    Kind   `json:"kind"`
	JobID   string `json:"job_id"`
	Cluster string `json:"cluster"`
	Policy  string `json:"policy,omitempty"`
	// Target is the node name (flush, clear, per-node snapshot set), the volume
	// ID (per-volume snapshot), the job ID (await) or the cluster (retention).
	Target    string   `json:"target"`
	Tag       string   `json:"tag,omitempty"`
	Keyspaces []string `json:"keyspaces,omitempty"`
	// Node is set for node tasks and snapshot tasks.
	Node *Node `json:"node,omitempty"`
	// Volumes are the volumes a snapshot task covers: one for a per-volume
	// snapshot, several for a crash-consistent per-node set.
	Volumes []Volume `json:"volumes,omitempty"`
	// SnapshotTags are applied to every snapshot the task creates.
	SnapshotTags map[string]string `json:"snapshot_tags,omitempty"`
	// Retire lists the job IDs whose snapshots a retention or clean-up task
	// deletes: every one, the copies in other regions included.
	Retire []string `json:"retire,omitempty"`
	// Trim lists backups of which a retention task deletes only some
	// regions' snapshots, the others' rules still keeping them.
	Trim []Trim `json:"trim,omitempty"`
	// Expect is how many snapshots an await task waits for.
	Expect int  `json:"expect,omitempty"`
	DryRun bool `json:"dry_run,omitempty"`
	// Facts asks a clear task to gather the node's facts for the catalog
	// (NodeFacts) before it clears the tag: set on the clear that follows
	// a node's volume snapshots in a job that is still running.
	Facts bool `json:"facts,omitempty"`
	// Flushed tells a clear task that the node's flush reported success, or
	// that the job began under a release whose flushes recorded no intent
	// (IntentKey): the tag is to be cleared even when no intent is found.
	Flushed  bool      `json:"flushed,omitempty"`
	Deadline time.Time `json:"deadline,omitempty"`
	// FireAt is the instant a flush task's nodetool snapshot starts: the
	// worker gets the node ready (connected, authenticated, host key
	// verified) as soon as the task arrives, then waits for it, so every
	// node of the job starts at once. A task that arrives later starts on
	// arrival; zero starts on arrival too.
	FireAt time.Time `json:"fire_at,omitzero"`
	// Hook is the command a hook task runs; Outcome (complete hooks) is
	// how its job ended, and Listing the object naming its snapshots.
	Hook    *Hook  `json:"hook,omitempty"`
	Outcome Phase  `json:"outcome,omitempty"`
	Listing string `json:"listing,omitempty"`
	// Restore is set for the tasks of a restore (Kind.IsRestore); JobID is
	// then the restore's ID.
	Restore *RestoreTask `json:"restore,omitempty"`
}

// TaskID builds the deterministic ID of a task.
func TaskID(jobID string, kind Kind, target string) string {
	return jobID + "." + string(kind) + "." + target
}

// Outcome is how a task ended.
type Outcome string

// Task outcomes.
const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"
)

// ErrorClass says why a task failed, for operators and metrics.
type ErrorClass string

// Error classes.
const (
	// ClassPermanent: retrying cannot help (bad input, auth failure, nodetool error).
	ClassPermanent ErrorClass = "permanent"
	// ClassExhausted: a transient error that persisted through every delivery.
	ClassExhausted ErrorClass = "exhausted"
	// ClassDeadline: the task's deadline passed.
	ClassDeadline ErrorClass = "deadline"
	// ClassPanic: the task's handler panicked.
	ClassPanic ErrorClass = "panic"
)

// SnapshotRef is one volume snapshot a task created or found.
type SnapshotRef struct {
	SnapshotID string `json:"snapshot_id"`
	VolumeID   string `json:"volume_id"`
	// Region is where the snapshot is (empty: the cluster's region, or a
	// driver without regions).
	Region    string    `json:"region,omitempty"`
	Node      string    `json:"node,omitempty"`
	State     string    `json:"state,omitempty"`
	StartTime time.Time `json:"start_time,omitempty"`
}

// TaskResult is the event a worker publishes when a task ends, on
// SubjectTaskEvent(job, kind).
type TaskResult struct {
	Schema     string        `json:"schema"`
	TaskID     string        `json:"task_id"`
	JobID      string        `json:"job_id"`
	Kind       Kind          `json:"kind"`
	Cluster    string        `json:"cluster"`
	Target     string        `json:"target"`
	Outcome    Outcome       `json:"outcome"`
	Error      string        `json:"error,omitempty"`
	ErrorClass ErrorClass    `json:"error_class,omitempty"`
	Stderr     string        `json:"stderr,omitempty"`
	Attempt    int           `json:"attempt"`
	Worker     string        `json:"worker,omitempty"`
	StartedAt  time.Time     `json:"started_at"`
	FinishedAt time.Time     `json:"finished_at"`
	Snapshots  []SnapshotRef `json:"snapshots,omitempty"`
	// Deleted lists the snapshot IDs a retention task deleted (or, in a dry
	// run, would delete).
	Deleted []string `json:"deleted,omitempty"`
	// Retired lists the jobs whose every managed snapshot a retention task
	// deleted.
	Retired []string `json:"retired,omitempty"`
	// Retained lists the retired jobs a retention task could not fully
	// delete (a snapshot in use); their catalog records are kept.
	Retained []string `json:"retained,omitempty"`
	// Trimmed lists what a retention task deleted of the backups of its
	// task's Trim, every snapshot of each part named gone; a part with a
	// snapshot it could not delete is left out (and warned about).
	Trimmed []Trim `json:"trimmed,omitempty"`
	// Warnings are non-fatal notes (an in-use snapshot skipped, say).
	Warnings []string `json:"warnings,omitempty"`
	// Output is the tail of what a hook printed (stdout, then stderr),
	// bounded; ExitCode is its exit code.
	Output   string `json:"output,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
	// Listing names the object (in BucketPlans) where an await task stored
	// the job's snapshots as it last saw them, every one completed. It is
	// the catalog's source: a job of tens of thousands of volumes would not
	// fit in one event.
	Listing string `json:"listing,omitempty"`
	// Flush says what a flush did to make its snapshot trustworthy.
	Flush *FlushReport `json:"flush,omitempty"`
	// Clear says what a clear found on the node.
	Clear *ClearReport `json:"clear,omitempty"`
	// Restore says what a restore task did.
	Restore *RestoreReport `json:"restore,omitempty"`
}

// FlushReport is what a successful flush verified and made durable.
type FlushReport struct {
	// Tag is the snapshot tag nodetool reported it created ("Snapshot
	// directory: TAG").
	Tag string `json:"tag"`
	// Again is set when the tag was already on the node from an earlier
	// attempt of the same job (a redelivered flush), not created now.
	Again bool `json:"again,omitempty"`
	// Synced lists the directories whose file systems were synced (sync -f)
	// after the snapshot, so its hard links had reached the volumes before
	// the flush reported success. SyncedAll is set when every file system of
	// the node was synced instead (sync), its data directories being unknown.
	Synced    []string `json:"synced,omitempty"`
	SyncedAll bool     `json:"synced_all,omitempty"`
	// Started and Returned are when the worker started nodetool snapshot on
	// the node and when it returned, by the worker's clock: the starts of a
	// job's nodes are as far apart as its cut is wide.
	Started  time.Time `json:"started,omitzero"`
	Returned time.Time `json:"returned,omitzero"`
}

// ClearReport is what a clear task found and did on its node.
type ClearReport struct {
	// Cleared is false when the job never ran nodetool snapshot on the node
	// (its flush did not get that far), or found the tag there already and
	// left it alone as someone else's: there was nothing of the job's to
	// clear.
	Cleared bool   `json:"cleared"`
	Note    string `json:"note,omitempty"`
	// Facts names the key of the jobs bucket holding the node's facts
	// (NodeFactsKey) when the task gathered them.
	Facts string `json:"facts,omitempty"`
}

// TaskRetry is the event a worker publishes on SubjectTaskRetry(job, kind)
// when an attempt of a task failed with an error worth retrying and the task
// will be delivered again. It is progress, not a result: the task is still
// open, and no count or phase of its job changes for it.
type TaskRetry struct {
	Schema  string `json:"schema"`
	TaskID  string `json:"task_id"`
	JobID   string `json:"job_id"`
	Kind    Kind   `json:"kind"`
	Cluster string `json:"cluster"`
	Target  string `json:"target"`
	// Attempt is the attempt that failed; MaxAttempts the last one the
	// task gets (0: no limit).
	Attempt     int    `json:"attempt"`
	MaxAttempts int    `json:"max_attempts,omitempty"`
	Error       string `json:"error"`
	// Code classifies Error for operators and metrics ("connect",
	// "timeout", ...), when the driver said.
	Code     string    `json:"code,omitempty"`
	Worker   string    `json:"worker,omitempty"`
	FailedAt time.Time `json:"failed_at"`
	// NextAttemptAt is the earliest time of the next attempt.
	NextAttemptAt time.Time `json:"next_attempt_at"`
}

// Retry is a task of a job whose last attempt failed and that will be tried
// again, as recorded on the job.
type Retry struct {
	TaskID        string    `json:"task_id"`
	Kind          Kind      `json:"kind"`
	Target        string    `json:"target"`
	Attempt       int       `json:"attempt"`
	MaxAttempts   int       `json:"max_attempts,omitempty"`
	Error         string    `json:"error"`
	Code          string    `json:"code,omitempty"`
	FailedAt      time.Time `json:"failed_at"`
	NextAttemptAt time.Time `json:"next_attempt_at"`
}

// Failure is one failed task as recorded on its job.
type Failure struct {
	TaskID string     `json:"task_id"`
	Kind   Kind       `json:"kind"`
	Target string     `json:"target"`
	Error  string     `json:"error"`
	Class  ErrorClass `json:"class,omitempty"`
	Stderr string     `json:"stderr,omitempty"`
}

// Progress counts a job's tasks by kind. Every view of a job (quiesce
// status, watch, submit, jobs) shows these counts as they are.
type Progress struct {
	Nodes       int `json:"nodes"`
	Volumes     int `json:"volumes"`
	Flushed     int `json:"flushed"`
	FlushFailed int `json:"flush_failed"`
	// SnapshotTasks are the snapshot tasks released: none before the
	// barrier (a job that never reached it has none), then one per unit of
	// every node that flushed.
	SnapshotTasks int `json:"snapshot_tasks"`
	Snapshotted   int `json:"snapshotted"`
	SnapshotFail  int `json:"snapshot_failed"`
	// ClearTasks counts the nodes whose tag is to be cleared; Cleared and
	// ClearFailed those whose clear ended.
	ClearTasks  int `json:"clear_tasks"`
	Cleared     int `json:"cleared"`
	ClearFailed int `json:"clear_failed"`
	// CleanupTasks counts the tasks deleting the snapshots of a job that
	// ended without a backup; CleanupsDone those that ended.
	CleanupTasks int `json:"cleanup_tasks"`
	CleanupsDone int `json:"cleanups_done"`
	// CleanupPending counts the clean-up work queued and not yet ended:
	// clears (a node's first, and any repeated for a flush that landed
	// late) and snapshot clean-up tasks. A job that ended has finished for
	// good once this is zero.
	CleanupPending int `json:"cleanup_pending"`
	// Retrying counts the tasks whose last attempt failed and that will be
	// tried again (Job.Retrying lists them).
	Retrying int `json:"retrying"`
	// HookTasks counts the job's hook runs (a node-scoped hook once per
	// node); HooksDone and HooksFailed those that ended.
	HookTasks   int `json:"hook_tasks,omitempty"`
	HooksDone   int `json:"hooks_done,omitempty"`
	HooksFailed int `json:"hooks_failed,omitempty"`
}

// Job is a job's record in the jobs KV bucket, as status readers see it. The
// coordinator keeps further bookkeeping in the same record; readers ignore it.
type Job struct {
	Schema      string    `json:"schema"`
	ID          string    `json:"id"`
	RequestID   string    `json:"request_id"`
	Cluster     string    `json:"cluster"`
	Policy      string    `json:"policy"`
	Mode        Mode      `json:"mode"`
	Tag         string    `json:"tag"`
	Reason      string    `json:"reason,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Phase       Phase     `json:"phase"`
	Error       string    `json:"error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Deadline    time.Time `json:"deadline"`
	// PhaseDeadline bounds the current phase.
	PhaseDeadline time.Time `json:"phase_deadline,omitempty"`
	// PhaseTimes records when each phase was entered.
	PhaseTimes map[Phase]time.Time `json:"phase_times,omitempty"`
	Progress   Progress            `json:"progress"`
	Failures   []Failure           `json:"failures,omitempty"`
	// Retrying lists the open tasks whose last attempt failed and that will
	// be tried again, with when (at most 100; Progress.Retrying counts the
	// listed ones). A job that ended lists only its clean-up's.
	Retrying []Retry `json:"retrying,omitempty"`
	// FlushFirst and FlushLast are the earliest and latest flush completion
	// times reported by the nodes: their difference is the flush spread.
	FlushFirst time.Time `json:"flush_first,omitempty"`
	FlushLast  time.Time `json:"flush_last,omitempty"`
	// StartFirst and StartLast are the earliest and latest instants a node's
	// nodetool snapshot started (FlushReport.Started): their difference is
	// the width of the cluster's cut.
	StartFirst time.Time `json:"start_first,omitzero"`
	StartLast  time.Time `json:"start_last,omitzero"`
	// BarrierAt is when the coordinator released the snapshot tasks.
	BarrierAt time.Time `json:"barrier_at,omitempty"`
	// FireAt is the instant every node's flush was told to start
	// (Task.FireAt), fixed when the flush phase was released so that tasks
	// published again carry the same one.
	FireAt   time.Time `json:"fire_at,omitzero"`
	Retired  []string  `json:"retired,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

// PhaseEvent is published on SubjectPhaseEvent(job) at every phase change.
type PhaseEvent struct {
	Schema string    `json:"schema"`
	JobID  string    `json:"job_id"`
	From   Phase     `json:"from"`
	To     Phase     `json:"to"`
	At     time.Time `json:"at"`
	Error  string    `json:"error,omitempty"`
}

// Rejection is published on SubjectRejected(job) when a JobRequest is refused.
// Its values are bounded: a request ID or reason too long to echo is cut
// (Bound) and says how long it was.
type Rejection struct {
	Schema    string `json:"schema"`
	RequestID string `json:"request_id,omitempty"`
	JobID     string `json:"job_id,omitempty"`
	// Code is a short, stable class of the reason ("malformed", "invalid",
	// "unknown_cluster", "unknown_policy", "request_id_reused", ...).
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason"`
	// RequestDigest is the refused request's Digest, when it could be
	// decoded: a submitter tells the answer to its own request from the
	// answer to an earlier one of the same ID by it.
	RequestDigest string    `json:"request_digest,omitempty"`
	At            time.Time `json:"at"`
}

// MaxReasonBytes bounds a rejection's reason and a job's error message.
const MaxReasonBytes = 2048

// Backup is the catalog record of a successful job, in the catalog KV bucket
// under CatalogKey(cluster, job).
type Backup struct {
	Schema        string    `json:"schema"`
	JobID         string    `json:"job_id"`
	Cluster       string    `json:"cluster"`
	Policy        string    `json:"policy"`
	Mode          Mode      `json:"mode"`
	Tag           string    `json:"tag"`
	StartedAt     time.Time `json:"started_at"`
	FinishedAt    time.Time `json:"finished_at"`
	NodeCount     int       `json:"node_count"`
	SnapshotCount int       `json:"snapshot_count"`
	// Regions are the AWS regions the backup's snapshots are in (each
	// snapshot and node says its own): more than one for a cluster whose
	// data centres are in several. Kept inline for a large backup too.
	Regions []string `json:"regions,omitempty"`
	// CopyRegions are the regions the backup's snapshots were copied to
	// (the cluster's ebs.copy_regions when it was taken). A record written
	// before copies were recorded has none, and is taken to have copies in
	// every copy region.
	CopyRegions []string `json:"copy_regions,omitempty"`
	// Nodes and Snapshots are inline for a small backup. A large one keeps
	// them in the manifests object store under Manifest instead, since a KV
	// value is bounded by the server's message size.
	Nodes     []Node        `json:"nodes,omitempty"`
	Snapshots []SnapshotRef `json:"snapshots,omitempty"`
	Manifest  string        `json:"manifest,omitempty"`
	// Partial is set when the policy allowed a partial backup and some nodes
	// did not flush: MissingNodes are not in this backup, and restoring it
	// brings back only the nodes it has.
	Partial      bool     `json:"partial,omitempty"`
	MissingNodes []string `json:"missing_nodes,omitempty"`
	// Keyspaces are the keyspaces the Cassandra snapshot holds; empty for
	// every keyspace.
	Keyspaces []string `json:"keyspaces,omitempty"`
	// Topology is what a restore needs to rebuild the cluster without the
	// original: the cluster's settings and schema, each node's identity,
	// tokens and directories, each volume, and what each node's snapshot
	// holds. Like Nodes, it lives in the manifest of a large backup.
	Topology *Topology `json:"topology,omitempty"`
	// Warnings say what the record lacks (a node whose facts could not be
	// gathered, say).
	Warnings []string `json:"warnings,omitempty"`
	// SourceDeleted and DeletedCopies say which of the backup's snapshots
	// retention deleted while a copy region's own rules still keep it: its
	// own snapshots (in every region of Regions), and its copies in the copy
	// regions named. A restore takes none of them. The record leaves the
	// catalog once no region keeps the backup.
	SourceDeleted bool     `json:"source_deleted,omitempty"`
	DeletedCopies []string `json:"deleted_copies,omitempty"`
}

// Trim names some regions' snapshots of one backup: its own (Source, in
// every region they are in) and its copies in CopyRegions.
type Trim struct {
	JobID       string   `json:"job_id"`
	Source      bool     `json:"source,omitempty"`
	CopyRegions []string `json:"copy_regions,omitempty"`
}

// HookRun is the last result of one hook task, kept beside its job's record
// under HookRunKey so `quiesce status` can show every hook's output.
type HookRun struct {
	TaskID     string     `json:"task_id"`
	Hook       string     `json:"hook"`
	Point      HookPoint  `json:"point"`
	Node       string     `json:"node,omitempty"`
	Outcome    Outcome    `json:"outcome"`
	Error      string     `json:"error,omitempty"`
	Class      ErrorClass `json:"class,omitempty"`
	ExitCode   int        `json:"exit_code,omitempty"`
	Output     string     `json:"output,omitempty"`
	Attempt    int        `json:"attempt"`
	Worker     string     `json:"worker,omitempty"`
	FinishedAt time.Time  `json:"finished_at"`
}

// HookRunKey is where a hook task's HookRun is kept in the jobs bucket.
func HookRunKey(jobID, target string) string { return jobID + ".hook." + target }
