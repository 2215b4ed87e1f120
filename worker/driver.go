package worker

import (
	"context"
	"errors"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// Snapshot states, as EC2 reports them.
const (
	StatePending   = "pending"
	StateCompleted = "completed"
	StateError     = "error"
)

// Snapshot is one volume snapshot as a driver reports it.
type Snapshot struct {
	ID           string
	VolumeID     string
	State        string
	StateMessage string
	Progress     string
	StartTime    time.Time
	Tags         map[string]string
	// Region is where the snapshot is, for drivers whose snapshots live in
	// several regions (EBS); empty otherwise.
	Region string
}

// CreateRequest asks a driver to snapshot the volumes of one node. With more
// than one volume the driver takes them as one crash-consistent set where it
// can (EC2 CreateSnapshots).
type CreateRequest struct {
	Node    messages.Node
	Volumes []messages.Volume
	// Tags are applied at creation: a snapshot never exists untagged.
	Tags map[string]string
}

// Snapshotter takes, finds and deletes volume snapshots. Implementations: the
// fs driver (worker/fs) and the EBS driver (worker/ebs).
//
// Snapshot calls take no idempotency token, so the runtime makes a snapshot
// task idempotent itself, and does it once: it looks for the task's earlier
// snapshots (Find by its messages.TagTask, and messages.TagDC when the task
// carries one) and asks Create only for the volumes still missing. A driver
// need not look again; the EBS driver does not, since every look-up spends
// the account's EC2 request budget.
type Snapshotter interface {
	// Find returns the snapshots carrying every tag in filter.
	Find(ctx context.Context, filter map[string]string) ([]Snapshot, error)
	// Create snapshots req.Volumes, tagged with req.Tags: every volume
	// asked for, which the caller found without a snapshot of the task.
	Create(ctx context.Context, req CreateRequest) ([]Snapshot, error)
	// Delete deletes a snapshot carrying the managed tag. A snapshot already
	// gone is success; one without the managed tag is ErrNotManaged; one in
	// use is ErrSnapshotInUse.
	Delete(ctx context.Context, snapshotID string) error
}

// RegionalDeleter is implemented by snapshotters whose snapshots live in
// several regions: it deletes a snapshot Find reported, in its Region, with
// Delete's guards.
type RegionalDeleter interface {
	DeleteIn(ctx context.Context, region, snapshotID string) error
}

// Errors a Snapshotter's Delete returns.
var (
	ErrNotManaged    = errors.New("snapshot does not carry the quiesce:managed tag")
	ErrSnapshotInUse = errors.New("snapshot is in use")
)

// NodeTool runs Cassandra's nodetool on a node. worker/nodetool implements it
// over any command runner (local exec or SSH).
type NodeTool interface {
	// Snapshot flushes memtables and hard-links the SSTables under tag. A tag
	// that already exists is success: the task is a redelivery.
	Snapshot(ctx context.Context, node messages.Node, tag string, keyspaces []string) error
	// ClearSnapshot removes the tag's hard links. A missing tag is success.
	ClearSnapshot(ctx context.Context, node messages.Node, tag string) error
}

// Drivers gives the drivers configured for a cluster.
type Drivers interface {
	NodeTool(cluster string) (NodeTool, error)
	Snapshotter(cluster string) (Snapshotter, error)
}

// Copier is implemented by snapshotters that keep copies of a job's
// snapshots in other regions (EBS CopySnapshot). The await task makes the
// copies once the job's snapshots complete; retention deletes them with
// their originals.
type Copier interface {
	// CopyJob copies every completed snapshot of a job; idempotent.
	CopyJob(ctx context.Context, jobID string) ([]Snapshot, error)
	// DeleteCopies deletes a job's copies, with Delete's guards.
	DeleteCopies(ctx context.Context, jobID string) ([]string, error)
}
