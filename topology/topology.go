package topology

import (
	"context"
	"errors"
	"fmt"
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
)

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
	// JobsTTL bounds how long job records live (default 30 days).
	JobsTTL time.Duration
	// AckWait before an unacknowledged task is redelivered (default 30s);
	// workers send InProgress well within it.
	AckWait time.Duration
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
	return o
}

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
	Plans     jetstream.ObjectStore
	Manifests jetstream.ObjectStore
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
			Subjects:    []string{messages.SubjectSubmit, messages.SubjectSchedulesAll, messages.SubjectRestoreSubmit},
			Retention:   jetstream.WorkQueuePolicy,
			Duplicates:  o.SubmitDuplicates,
			// Policies' schedules are JetStream message schedules kept in
			// this stream; each firing lands on the submit subject.
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
			Subjects:    []string{messages.SubjectTasksAll},
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

	consumers := []struct {
		stream string
		cfg    jetstream.ConsumerConfig
	}{
		{messages.StreamJobs, jetstream.ConsumerConfig{
			Durable: ConsumerPlanner, Description: "planner replicas share this consumer",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: 5,
			MaxAckPending: 256, FilterSubject: messages.SubjectSubmit, Replicas: o.Replicas,
		}},
		{messages.StreamJobs, jetstream.ConsumerConfig{
			Durable: ConsumerRestores, Description: "planner replicas share this consumer of restore requests",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.AckWait, MaxDeliver: 5,
			MaxAckPending: 64, FilterSubject: messages.SubjectRestoreSubmit, Replicas: o.Replicas,
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
	return &Handles{Jobs: jobs, Catalog: catalog, Plans: plans, Manifests: manifests, Restores: restores}, nil
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
	return &Handles{Jobs: jobs, Catalog: cat, Plans: plans, Manifests: manifests, Restores: restores}, nil
}
