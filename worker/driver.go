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
	// What EC2 says of the snapshot's volume (the fs driver leaves them
	// zero): its size in GiB, and its encryption.
	VolumeSize int32
	Encrypted  bool
	KMSKeyID   string
}

// CreateRequest asks a driver to snapshot the volumes of one node. With more
// than one volume the driver takes them as one crash-consistent set where it
// can (EC2 CreateSnapshots).
type CreateRequest struct {
	Node    messages.Node
	Volumes []messages.Volume
	// Tags are applied at creation: a snapshot never exists untagged.
	Tags map[string]string
	// Fence, when set, is called by the driver immediately before it
	// creates anything, after its own look-up: an error (ErrLeaseLost) means
	// this execution of the task no longer holds its lease, another one may
	// be creating, and the driver must create nothing and return the error.
	Fence func(context.Context) error
	// Existing are the task's snapshots the caller found (none in error):
	// their volumes are not snapshotted again. A driver that can look more
	// cheaply than EC2, under a lock of its own (fs), may look again.
	Existing []Snapshot
}

// Snapshotter takes, finds and deletes volume snapshots. Implementations: the
// fs driver (worker/fs) and the EBS driver (worker/ebs).
//
// Snapshot calls take no idempotency token, so the runtime makes a snapshot
// task idempotent itself, and does it once: it looks for the task's earlier
// snapshots (Find by its messages.TagTask, and messages.TagDC when the task
// carries one) and hands them to Create, which takes only the volumes still
// missing. A driver need not look again; the EBS driver does not, since
// every look-up spends the account's EC2 request budget.
type Snapshotter interface {
	// Find returns the snapshots carrying every tag in filter.
	Find(ctx context.Context, filter map[string]string) ([]Snapshot, error)
	// Create snapshots the volumes of req.Volumes that have no snapshot in
	// req.Existing, tagged with req.Tags, and returns the task's snapshot
	// of every volume asked for once its point in time is fixed (EBS: the
	// call was accepted; fs: the copy is whole).
	Create(ctx context.Context, req CreateRequest) ([]Snapshot, error)
	// Delete deletes a snapshot carrying the managed tag. A snapshot already
	// gone is ErrSnapshotGone, which callers take as success (someone else
	// deleted it, so it is not counted again); one without the managed tag is
	// ErrNotManaged; one in use is ErrSnapshotInUse.
	Delete(ctx context.Context, snapshotID string) error
}

// RetakePacer is implemented by snapshotters whose provider asks for a pause
// between two snapshots of one volume. A snapshot task that finds its
// earlier snapshot in error deletes it and takes it again no sooner than
// this long after the failed one began.
type RetakePacer interface {
	RetakeAfter() time.Duration
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
	ErrSnapshotGone  = errors.New("snapshot already deleted")
)

// NodeTool runs Cassandra's nodetool on a node. worker/nodetool implements it
// over any command runner (local exec or SSH).
type NodeTool interface {
	// Snapshot flushes memtables and hard-links the SSTables under tag,
	// and returns nil only once the node reported the snapshot made. A tag
	// already on the node is an error wrapping ErrSnapshotExists: whether
	// it is the job's own, the flush task knows, not the driver.
	Snapshot(ctx context.Context, node messages.Node, tag string, keyspaces []string) error
	// ClearSnapshot removes the tag's hard links. A missing tag is success.
	ClearSnapshot(ctx context.Context, node messages.Node, tag string) error
}

// ErrUnknownCluster is wrapped by a Drivers' error for a cluster that is not
// in its configuration. The worker never fails such a task: during a rolling
// update another worker may have the cluster, so the task is handed back
// for it.
var ErrUnknownCluster = errors.New("cluster is not in this worker's configuration")

// ErrSnapshotExists is wrapped by NodeTool.Snapshot's error when the tag is
// already on the node.
var ErrSnapshotExists = errors.New("snapshot tag already exists on the node")

// Preparer is implemented by node tools whose executor can be made ready
// before anything runs on the node (an SSH connection made and its host key
// verified), so that connecting and running are separate steps and a node
// that cannot be reached fails before the flush records anything.
type Preparer interface {
	Prepare(ctx context.Context, node messages.Node) error
}

// SnapshotArmer is implemented by node tools that can start a node's
// snapshot command ahead of its fire time: ArmSnapshot returns once the
// command is ready to start on the node (over SSH: the session open and its
// shell started, holding before nodetool), and nothing has run yet. Fire
// then starts nodetool with one write; Wait returns what Snapshot would.
// Ending ctx before Fire withdraws the command, which never runs.
type SnapshotArmer interface {
	ArmSnapshot(ctx context.Context, node messages.Node, tag string, keyspaces []string) (ArmedSnapshot, error)
}

// ArmedSnapshot is a snapshot command made ready by SnapshotArmer.
type ArmedSnapshot interface {
	Fire()
	Wait() error
}

// Syncer is implemented by node tools that can make a snapshot durable:
// sync the file systems holding dirs (every file system of the node when
// dirs is empty), through the same executor.
type Syncer interface {
	Sync(ctx context.Context, node messages.Node, dirs []string) error
}

// FactGatherer is implemented by node tools that can describe a node and
// its snapshot for the catalog.
type FactGatherer interface {
	// DataDirs finds the node's data directories (nodetool datapaths).
	DataDirs(ctx context.Context, node messages.Node) ([]string, error)
	// SnapshotTables describes snapshots/<tag> in every table directory
	// under dirs: its SSTables, files, bytes and schema.
	SnapshotTables(ctx context.Context, node messages.Node, dirs []string, tag string) ([]messages.TableSnapshot, error)
	// Describe gathers what the node says about itself and its cluster
	// (nodetool info -T, status, describecluster); Node, Tables and
	// GatheredAt are left to the caller.
	Describe(ctx context.Context, node messages.Node) (messages.NodeFacts, error)
}

// VolumeDescriber is implemented by snapshotters that can say what the
// volumes of a job's snapshots are (EC2 DescribeVolumes), for the catalog.
type VolumeDescriber interface {
	DescribeVolumes(ctx context.Context, snaps []Snapshot) ([]messages.VolumeFacts, error)
}

// Drivers gives the drivers configured for a cluster. For a cluster it does
// not know, it returns an error wrapping ErrUnknownCluster.
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

// CopyTrimmer is implemented by Copiers that can delete a job's copies in
// one copy region only, for a copy region whose own retention rules retire
// a backup that others keep.
type CopyTrimmer interface {
	// DeleteCopiesIn deletes a job's copies in one copy region, with
	// DeleteCopies' guards.
	DeleteCopiesIn(ctx context.Context, jobID, region string) ([]string, error)
}

// HookCommand is a hook's command as a runner gets it: an argv (never a
// shell string), the job's facts as environment variables, and what it
// reads on its standard input.
type HookCommand struct {
	Argv  []string
	Env   map[string]string
	Stdin []byte
}

// HookOutput is what a hook printed, and how it exited.
type HookOutput struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// HookRunner runs policy hooks: on a node through the cluster's executor,
// or, with node nil, on this worker. A command that exits non-zero is an
// error; a cancelled ctx stops the command.
type HookRunner interface {
	RunHook(ctx context.Context, node *messages.Node, cmd HookCommand) (HookOutput, error)
}

// HookDrivers is implemented by drivers that can run hooks.
type HookDrivers interface {
	Hooks(cluster string) (HookRunner, error)
}
