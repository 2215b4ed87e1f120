package topology

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// Consumer names.
const (
	ConsumerPlanner     = "planner"
	ConsumerCoordinator = "coordinator"
	// ConsumerRestores is the planner replicas' consumer of restore
	// requests.
	ConsumerRestores = "restore-planner"
	// ConsumerDrills is the worker processes' consumer of drill requests.
	// One drill is in hand at a time across the fleet: the scratch
	// clusters drills restore into are shared.
	ConsumerDrills = "drill-runner"
)

// DrillRunnerMaxDeliver is the drill-runner consumer's delivery limit: a
// drill interrupted with its process runs again from the start, a few
// times, never for ever.
const DrillRunnerMaxDeliver = 3

// AgentConsumer is the durable consumer of one node's agent. The cluster's
// length comes first, so no two (cluster, node) pairs share a name.
func AgentConsumer(cluster, node string) string {
	return "agent-" + strconv.Itoa(len(cluster)) + "-" + cluster + "-" + node
}

// EnsureAgent creates or updates the consumer of one node's agent: the only
// consumer of the node's flush, clear and hook tasks. An agent calls it at
// start; its NATS user may create exactly this consumer.
func EnsureAgent(ctx context.Context, js jetstream.JetStream, cluster, node string, o Options) (jetstream.Consumer, error) {
	o = o.withDefaults()
	name := AgentConsumer(cluster, node)
	c, err := js.CreateOrUpdateConsumer(ctx, messages.StreamTasks, jetstream.ConsumerConfig{
		Durable: name, Description: "the agent of node " + node + " of cluster " + cluster,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: o.MaxDeliverFor(messages.KindFlush),
		MaxAckPending: 64, FilterSubject: messages.SubjectAgentTasks(cluster, node), Replicas: o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	return c, nil
}

// TaskConsumer is the durable consumer name for tasks of kind.
func TaskConsumer(kind messages.Kind) string { return "tasks-" + string(kind) }

// Options shape the topology. Zero values take the defaults in comments.
type Options struct {
	// Replicas of every stream and bucket: 1 in development, 3 in production.
	Replicas int
	// Memory stores streams in memory (benchmarks only; never for real jobs).
	Memory bool
	// SubmitDuplicates is the JOBS dedupe window for request IDs (default 1h).
	SubmitDuplicates time.Duration
	// TaskDuplicates is the TASKS dedupe window for task IDs (default 2h).
	TaskDuplicates time.Duration
	// EventsMaxAge bounds how long events are kept (default 7 days).
	EventsMaxAge time.Duration
	// JobsTTL bounds how long job records live (default 30 days), and how
	// long a request ID is remembered with the request it named.
	JobsTTL time.Duration
	// ReplicaTTL is how long a process's entry in the replicas bucket lives
	// without a refresh (default 30s); processes refresh theirs three times
	// as often.
	ReplicaTTL time.Duration
	// AckWait before an unacknowledged task is redelivered (default 30s);
	// workers send InProgress well within it.
	AckWait time.Duration
	// LeaseTTL is the lifetime of a task lease not renewed (default
	// AckWait): a stalled worker's lease lapses about when its task is
	// redelivered.
	LeaseTTL time.Duration
	// MaxDeliver per task kind (default 5; await 3; retention 5).
	MaxDeliver map[messages.Kind]int
	// MaxAckPending per task kind bounds fleet-wide concurrency (default
	// 10000 flush, 1000 snapshot, 1000 clear, 100 await, 10 retention,
	// 100 cleanup).
	MaxAckPending map[messages.Kind]int
}

func (o Options) withDefaults() Options {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.SubmitDuplicates == 0 {
		o.SubmitDuplicates = time.Hour
	}
	if o.TaskDuplicates == 0 {
		o.TaskDuplicates = 2 * time.Hour
	}
	if o.EventsMaxAge == 0 {
		o.EventsMaxAge = 7 * 24 * time.Hour
	}
	if o.JobsTTL == 0 {
		o.JobsTTL = 30 * 24 * time.Hour
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = o.AckWait
	}
	if o.ReplicaTTL == 0 {
		o.ReplicaTTL = DefaultReplicaTTL
	}
	return o
}

// PlannerMaxDeliver is the planner consumer's delivery limit.
const PlannerMaxDeliver = 5

// RestorePlannerMaxDeliver is the restore-planner consumer's delivery limit.
const RestorePlannerMaxDeliver = 5

// DefaultReplicaTTL is the replicas bucket's TTL when Options leave it unset.
const DefaultReplicaTTL = 30 * time.Second

// MaxDeliverFor returns the delivery limit of a kind's consumer.
func (o Options) MaxDeliverFor(kind messages.Kind) int {
	if n, ok := o.MaxDeliver[kind]; ok && n > 0 {
		return n
	}
	if kind == messages.KindAwait {
		return 3
	}
	return 5
}

func (o Options) maxAckPending(kind messages.Kind) int {
	if n, ok := o.MaxAckPending[kind]; ok && n > 0 {
		return n
	}
	switch kind {
	case messages.KindFlush:
		return 10000
	case messages.KindAwait:
		return 100
	case messages.KindRetention:
		return 10
	case messages.KindCleanup:
		return 100
	}
	return 1000
}

// Handles are the topology's streams and buckets, ready to use.
type Handles struct {
	Jobs      jetstream.KeyValue
	Catalog   jetstream.KeyValue
	Holds     jetstream.KeyValue
	Plans     jetstream.ObjectStore
	Manifests jetstream.ObjectStore
	// Leases is the bucket of task leases; Bind leaves it nil when it does
	// not exist yet (no process of this release has run).
	Leases jetstream.KeyValue
	// Requests holds a RequestClaim per request ID that became a job.
	// Bind leaves it nil on a server whose topology predates it.
	Requests jetstream.KeyValue
	// Replicas holds one messages.Replica per running process, each
	// refreshed within ReplicaTTL (Presence). Bind leaves it nil on a
	// server whose topology predates it.
	Replicas jetstream.KeyValue
	// Pace is the shared EC2 request budget (package pace).
	Pace jetstream.KeyValue
	// Restores holds each restore's record.
	Restores jetstream.KeyValue
}

// Ensure creates or updates every stream, bucket and consumer.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) (*Handles, error) {
	o = o.withDefaults()
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	streams := []jetstream.StreamConfig{
		{
			Name:        messages.StreamJobs,
			Description: "quiesce job requests, deduplicated by request id",
			Subjects: []string{messages.SubjectSubmit, messages.SubjectSchedulesAll, messages.SubjectRestoreSubmit,
				messages.SubjectDrillSubmit, messages.SubjectDrillSchedulesAll},
			Retention:  jetstream.WorkQueuePolicy,
			Duplicates: o.SubmitDuplicates,
			// Policies' and drills' schedules are JetStream message
			// schedules kept in this stream; each firing lands on the
			// submit subject of jobs or drills.
			AllowMsgSchedules: true,
			AllowRollup:       true,
			MaxAge:            o.EventsMaxAge,
			Replicas:          o.Replicas,
			Storage:           storage,
			MaxMsgSize:        messages.MaxJobRequestBytes + 4096,
		},
		{
			Name:        messages.StreamTasks,
			Description: "quiesce tasks, one durable consumer per kind",
			Subjects:    []string{messages.SubjectTasksAll, messages.SubjectAgentTasksAll},
			Retention:   jetstream.WorkQueuePolicy,
			Duplicates:  o.TaskDuplicates,
			Replicas:    o.Replicas,
			Storage:     storage,
		},
		{
			Name:        messages.StreamEvents,
			Description: "quiesce task results, phase changes and rejections",
			Subjects:    []string{messages.SubjectEventsAll},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      o.EventsMaxAge,
			Duplicates:  10 * time.Minute,
			Replicas:    o.Replicas,
			Storage:     storage,
		},
	}
	for _, sc := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	jobs, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: messages.BucketJobs, Description: "quiesce job records and task results",
		History: 1, TTL: o.JobsTTL, Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketJobs, err)
	}
	catalog, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: messages.BucketCatalog, Description: "quiesce backups",
		History: 1, Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketCatalog, err)
	}
	restores, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: messages.BucketRestores, Description: "quiesce restore records",
		History: 1, TTL: o.JobsTTL, Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketRestores, err)
	}
	holds, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: messages.BucketHolds, Description: "quiesce backups retention must keep",
		History: 5, Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketHolds, err)
	}
	plans, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: messages.BucketPlans, Description: "quiesce job plans",
		TTL: o.JobsTTL, Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", messages.BucketPlans, err)
	}

	manifests, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: messages.BucketManifests, Description: "quiesce catalog records of large backups",
		Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", messages.BucketManifests, err)
	}
	// A lease is a key its holder keeps rewriting; one not rewritten within
	// the bucket's TTL is gone, and its task free for another execution.
	leases, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: messages.BucketLeases, Description: "quiesce task leases",
		History: 1, TTL: o.LeaseTTL, Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketLeases, err)
	}
	requests, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: messages.BucketRequests, Description: "quiesce request IDs and the request each named",
		History: 1, TTL: o.JobsTTL, Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketRequests, err)
	}
	replicas, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: messages.BucketReplicas, Description: "quiesce processes running now, their roles and configuration",
		History: 1, TTL: o.ReplicaTTL, Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketReplicas, err)
	}

	// The budget's state is small and changes several times a second; it
	// needs no history, and losing it costs one burst, not a backup.
	pace, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: messages.BucketPace, Description: "quiesce EC2 request budget per account, region and operation",
		History: 1, Replicas: o.Replicas, Storage: jetstream.StorageType(storage),
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketPace, err)
	}

	consumers := []struct {
		stream string
		cfg    jetstream.ConsumerConfig
	}{
		{messages.StreamJobs, jetstream.ConsumerConfig{
			Durable: ConsumerPlanner, Description: "planner replicas share this consumer",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: PlannerMaxDeliver,
			MaxAckPending: 256, FilterSubject: messages.SubjectSubmit, Replicas: o.Replicas,
		}},
		{messages.StreamJobs, jetstream.ConsumerConfig{
			Durable: ConsumerRestores, Description: "planner replicas share this consumer of restore requests",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: RestorePlannerMaxDeliver,
			MaxAckPending: 64, FilterSubject: messages.SubjectRestoreSubmit, Replicas: o.Replicas,
		}},
		{messages.StreamJobs, jetstream.ConsumerConfig{
			Durable: ConsumerDrills, Description: "worker processes run drill requests, one at a time",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: DrillRunnerMaxDeliver,
			MaxAckPending: 1, FilterSubject: messages.SubjectDrillSubmit, Replicas: o.Replicas,
		}},
		{messages.StreamEvents, jetstream.ConsumerConfig{
			Durable: ConsumerCoordinator, Description: "coordinator replicas share this consumer",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: -1,
			MaxAckPending: 20000, Replicas: o.Replicas,
			FilterSubjects: []string{messages.SubjectTaskEventsAll, messages.SubjectControlAll},
			DeliverPolicy:  jetstream.DeliverNewPolicy,
		}},
	}
	for _, k := range messages.Kinds {
		consumers = append(consumers, struct {
			stream string
			cfg    jetstream.ConsumerConfig
		}{messages.StreamTasks, jetstream.ConsumerConfig{
			Durable: TaskConsumer(k), Description: "workers executing " + string(k) + " tasks",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: o.MaxDeliverFor(k),
			MaxAckPending: o.maxAckPending(k), FilterSubject: messages.SubjectTaskKind(k), Replicas: o.Replicas,
		}})
	}
	for _, c := range consumers {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.stream, c.cfg); err != nil {
			// DeliverPolicy cannot change on an existing consumer; keep it.
			if errors.Is(err, jetstream.ErrConsumerExists) {
				continue
			}
			return nil, fmt.Errorf("consumer %s on %s: %w", c.cfg.Durable, c.stream, err)
		}
	}
	return &Handles{Jobs: jobs, Catalog: catalog, Holds: holds, Plans: plans, Manifests: manifests, Leases: leases, Requests: requests, Replicas: replicas, Pace: pace, Restores: restores}, nil
}

// Bind opens the topology's buckets without creating anything: for
// commands that only read (status, jobs, backups).
func Bind(ctx context.Context, js jetstream.JetStream) (*Handles, error) {
	jobs, err := js.KeyValue(ctx, messages.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w (has quiesce run against this server yet?)", messages.BucketJobs, err)
	}
	cat, err := js.KeyValue(ctx, messages.BucketCatalog)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketCatalog, err)
	}
	holds, err := js.KeyValue(ctx, messages.BucketHolds)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketHolds, err)
	}
	plans, err := js.ObjectStore(ctx, messages.BucketPlans)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", messages.BucketPlans, err)
	}
	manifests, err := js.ObjectStore(ctx, messages.BucketManifests)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", messages.BucketManifests, err)
	}
	restores, err := js.KeyValue(ctx, messages.BucketRestores)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketRestores, err)
	}
	h := &Handles{Jobs: jobs, Catalog: cat, Holds: holds, Plans: plans, Manifests: manifests, Restores: restores}
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{{messages.BucketLeases, &h.Leases}, {messages.BucketRequests, &h.Requests}, {messages.BucketReplicas, &h.Replicas}, {messages.BucketPace, &h.Pace}} {
		kv, err := js.KeyValue(ctx, b.name)
		switch {
		case err == nil:
			*b.kv = kv
		case !errors.Is(err, jetstream.ErrBucketNotFound):
			return nil, fmt.Errorf("bucket %s: %w", b.name, err)
		}
	}
	return h, nil
}

// AgentInboxPrefix is the reply inbox an agent's connection uses
// (nats.CustomInboxPrefix), so its NATS user may subscribe to its own
// replies only.
func AgentInboxPrefix(cluster, node string) string {
	return "_INBOX_" + AgentConsumer(cluster, node)
}

// AgentPermissions are the subjects the NATS user of one node's agent may
// publish and subscribe to: its own consumer (create, fetch, acknowledge),
// its own results and retries (messages.AgentSubject), the job records it
// reads, and the keys of the jobs bucket its node's tasks write: the flush
// intents (messages.IntentKey) and the facts a clear gathers for the catalog
// (messages.NodeFactsKey, and NodeFactsPartKey for facts in parts); the job
// listings a node-scoped complete hook reads, and its own inbox. Nothing
// else: another node's tasks, results, intents or facts are refused by the
// server.
func AgentPermissions(cluster, node string) (publish, subscribe []string) {
	consumer := AgentConsumer(cluster, node)
	jobs := "KV_" + messages.BucketJobs
	plans := "OBJ_" + messages.BucketPlans
	publish = []string{
		"$JS.API.INFO",
		"$JS.API.CONSUMER.CREATE." + messages.StreamTasks + "." + consumer + "." + messages.SubjectAgentTasks(cluster, node),
		"$JS.API.CONSUMER.CREATE." + messages.StreamTasks + "." + consumer,
		"$JS.API.CONSUMER.INFO." + messages.StreamTasks + "." + consumer,
		"$JS.API.CONSUMER.MSG.NEXT." + messages.StreamTasks + "." + consumer,
		"$JS.ACK." + messages.StreamTasks + "." + consumer + ".>",
		messages.AgentSubject("quiesce.events.*.task.*", node),
		messages.AgentSubject("quiesce.events.*.task.*.retry", node),
		"$JS.API.STREAM.INFO." + jobs,
		"$JS.API.DIRECT.GET." + jobs + ".$KV." + messages.BucketJobs + ".>",
		"$KV." + messages.BucketJobs + ".*.intent." + node,
		"$KV." + messages.BucketJobs + ".*.facts." + node,
		"$KV." + messages.BucketJobs + ".*.facts." + node + ".*",
		"$JS.API.STREAM.INFO." + plans,
		"$JS.API.CONSUMER.CREATE." + plans + ".>",
		"$JS.API.DIRECT.GET." + plans + ".>",
	}
	subscribe = []string{AgentInboxPrefix(cluster, node) + ".>"}
	return publish, subscribe
}
