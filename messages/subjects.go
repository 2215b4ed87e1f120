package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Streams, buckets and subjects of the JetStream topology.
const (
	StreamJobs   = "QUIESCE_JOBS"
	StreamTasks  = "QUIESCE_TASKS"
	StreamEvents = "QUIESCE_EVENTS"

	BucketJobs    = "quiesce_jobs"
	BucketCatalog = "quiesce_catalog"
	// BucketHolds holds the backups retention must keep, under the same key
	// as their catalog record.
	BucketHolds = "quiesce_holds"
	// BucketPlans is an object store holding each job's plan (nodes and
	// volumes), which can exceed a single message for large clusters.
	BucketPlans = "quiesce_plans"
	// BucketManifests is an object store holding the full catalog record of
	// backups too large to keep inline in the catalog bucket.
	BucketManifests = "quiesce_manifests"
	// BucketLeases holds one key per task being executed under a lease (a
	// snapshot task), keyed by task ID; its TTL is the lease's lifetime.
	BucketLeases = "quiesce_leases"
	// BucketRequests is a KV bucket of RequestClaims: which job each request
	// ID made, and the digest of the request.
	BucketRequests = "quiesce_requests"
	// BucketReplicas is a KV bucket of Replicas: every running quiesce
	// process keeps its entry alive there, so replicas see one another's
	// roles and configuration.
	BucketReplicas = "quiesce_replicas"
	// BucketPace holds the EC2 request budget every process of the fleet
	// shares: one key per account, region and operation (package pace).
	BucketPace = "quiesce_pace"

	// SubjectSubmit carries JobRequests.
	SubjectSubmit = "quiesce.jobs.submit"
	// SubjectSchedulesAll holds one schedule message per policy with a
	// schedule: JetStream fires its JobRequest onto SubjectSubmit.
	SubjectSchedulesAll = "quiesce.schedules.>"
	// SubjectTasksAll matches every task subject.
	SubjectTasksAll = "quiesce.tasks.>"
	// SubjectEventsAll matches every event subject.
	SubjectEventsAll = "quiesce.events.>"
	// SubjectTaskEventsAll matches every task result event, and every task
	// retry event.
	SubjectTaskEventsAll = "quiesce.events.*.task.>"

	// InvalidJobID names the event subject token for requests too malformed
	// to derive a job ID from. Job IDs start with a cluster name, which cannot
	// start with an underscore.
	InvalidJobID = "_invalid"
)

// SubjectSchedule is where a policy's schedule message is kept.
func SubjectSchedule(cluster, policy string) string {
	return "quiesce.schedules." + cluster + "." + policy
}

// SubjectTask is where tasks of kind for cluster are published.
func SubjectTask(kind Kind, cluster string) string {
	return "quiesce.tasks." + string(kind) + "." + cluster
}

// SubjectAgentTasksAll matches every task published for a node's agent.
const SubjectAgentTasksAll = "quiesce.agent.>"

// SubjectAgentTask is where a node task (flush, clear, a node-scoped hook)
// of a cluster whose executor is agent is published: only that node's agent
// consumes it.
func SubjectAgentTask(cluster, node string, kind Kind) string {
	return "quiesce.agent." + cluster + "." + node + "." + string(kind)
}

// SubjectAgentTasks matches every task of one node's agent.
func SubjectAgentTasks(cluster, node string) string {
	return "quiesce.agent." + cluster + "." + node + ".>"
}

// AgentSubject is subject with the publishing agent's node appended. An
// agent publishes its results and retries so; its NATS permissions allow
// only its own node there, and the coordinator takes a node task's result
// from an agent only when the node matches the task's.
func AgentSubject(subject, node string) string { return subject + ".node." + node }

// SplitAgentSubject undoes AgentSubject: the subject without the node, and
// the node, when the subject carries one.
func SplitAgentSubject(subject string) (base, node string, ok bool) {
	i := strings.LastIndex(subject, ".node.")
	if i < 0 || strings.Contains(subject[i+len(".node."):], ".") {
		return subject, "", false
	}
	return subject[:i], subject[i+len(".node."):], true
}

// SubjectTaskKind matches every task of one kind.
func SubjectTaskKind(kind Kind) string {
	return "quiesce.tasks." + string(kind) + ".>"
}

// SubjectTaskEvent is where results of a job's tasks of kind are published.
func SubjectTaskEvent(jobID string, kind Kind) string {
	return "quiesce.events." + jobID + ".task." + string(kind)
}

// SubjectTaskRetry is where a worker reports that an attempt of a job's task
// of kind failed and will be retried. It is inside SubjectTaskEventsAll, so
// the coordinators' consumer receives it; a coordinator that does not know
// TaskRetrySchema terminates it, unapplied.
func SubjectTaskRetry(jobID string, kind Kind) string {
	return SubjectTaskEvent(jobID, kind) + ".retry"
}

// SubjectPhaseEvent is where a job's phase changes are published.
func SubjectPhaseEvent(jobID string) string {
	return "quiesce.events." + jobID + ".phase"
}

// SubjectRejected is where the rejection of a request for jobID is published.
func SubjectRejected(jobID string) string {
	return "quiesce.events." + jobID + ".rejected"
}

// SubjectJobEvents matches every event of one job.
func SubjectJobEvents(jobID string) string {
	return "quiesce.events." + jobID + ".>"
}

// SnapshotListing names the object in BucketPlans holding the snapshots of
// a job as its await task last saw them.
func SnapshotListing(jobID string) string {
	return jobID + ".snapshots"
}

// RequestKey is a request ID's key in BucketRequests. Request IDs may hold
// characters a KV key may not, so the key is a digest of the ID.
func RequestKey(requestID string) string {
	sum := sha256.Sum256([]byte(requestID))
	return "r" + hex.EncodeToString(sum[:20])
}

// CatalogKey is a backup's key in the catalog bucket.
func CatalogKey(cluster, jobID string) string {
	return cluster + "." + jobID
}

// Snapshot tags quiesce applies at creation. TagManaged marks a snapshot as
// quiesce's: retention and delete never touch a snapshot without it.
const (
	TagManaged = "quiesce:managed"
	TagCluster = "quiesce:cluster"
	TagJob     = "quiesce:job"
	TagNode    = "quiesce:node"
	TagTask    = "quiesce:task"
	TagPolicy  = "quiesce:policy"
	// TagDC names the Cassandra data centre of the node a snapshot is of,
	// on clusters configured with data centres.
	TagDC   = "quiesce:dc"
	TagName = "Name"
)

// SubjectControl is where operator commands for a job (cancel) are published.
func SubjectControl(jobID string) string {
	return "quiesce.events." + jobID + ".control"
}

// SubjectControlAll matches every job's control subject.
const SubjectControlAll = "quiesce.events.*.control"

// Control is an operator command for a job, published on SubjectControl.
type Control struct {
	Schema string `json:"schema"`
	JobID  string `json:"job_id"`
	// Action is "cancel".
	Action string `json:"action"`
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ControlSchema versions Control.
const ControlSchema = "quiesce.control/v1"

// IntentKey is where, in the jobs bucket, a flush records that it is about
// to run nodetool snapshot on a node: the proof that a tag found on the node
// later is the job's own, and what tells the clean-up there is a tag to
// clear.
func IntentKey(jobID, node string) string {
	return jobID + ".intent." + node
}

// NodeFactsKey is where, in the jobs bucket, a node's facts (NodeFacts),
// gathered by its clear task for the catalog, are kept. Facts too large for
// one value are split over NodeFactsPartKey 1..n, and the key holds a
// NodeFacts that says how many parts there are (Parts) and their digest.
// Node names and job IDs have no dots: <job>.facts.* matches every node's
// key and no part's.
func NodeFactsKey(jobID, node string) string {
	return jobID + ".facts." + node
}

// NodeFactsPartKey is the key of part i (from 1) of a node's facts too
// large for one value of the jobs bucket.
func NodeFactsPartKey(jobID, node string, i int) string {
	return NodeFactsKey(jobID, node) + "." + strconv.Itoa(i)
}
