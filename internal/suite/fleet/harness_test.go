package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/quiesce/quiesce/internal/testkit/ec2sim"
	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/stack"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/planner"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
)

const (
	account = ec2sim.DefaultAccount
	region  = "us-east-1"
)

// AWS's default buckets, which the simulator enforces and the pacers use.
var (
	snapshotLimit = ebs.DefaultLimit("CreateSnapshots")
	deleteLimit   = ebs.DefaultLimit("DeleteSnapshot")
)

// epoch is where simulated time starts.
var epoch = time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)

// scale is simulated seconds per real second: QUIESCE_FLEET_SCALE, or
// def. The faster time runs, the more a stall of the machine (a busy core,
// a pause) costs in simulated time: 10 ms at 100× is a second of EC2
// budget, and a loaded two-core machine stalls for that long.
func scale(def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv("QUIESCE_FLEET_SCALE"), 64); err == nil && v > 0 {
		return v
	}
	return def
}

// shape is one simulated fleet.
type shape struct {
	clusters, nodes, volumes int
	// perInstance takes one CreateSnapshots per node, else one
	// CreateSnapshot per volume.
	perInstance bool
	// workers are worker processes, each with its own connection and its
	// own pacer; concurrency is each one's snapshot tasks at once.
	workers, concurrency int
	// sizes, when set, gives each cluster its own node count.
	sizes []int
	// scale is the default speed of simulated time (see scale).
	scale float64
}

func (s shape) nodesOf(c int) int {
	if len(s.sizes) > 0 {
		return s.sizes[c]
	}
	return s.nodes
}

// fleet is an embedded JetStream server, a simulated EC2 on a scaled clock,
// and quiesce's roles with real EBS drivers and pacers.
type fleet struct {
	tb    testing.TB
	shape shape
	env   *testenv.Env
	clock *ec2sim.Clock
	sim   *ec2sim.Sim
	inv   planner.Inventory
	obs   *taskObserver
	pace  *paceObserver
}

func clusterName(c int) string { return fmt.Sprintf("c%03d", c) }

// newFleet starts the server and the simulator and fills EC2 with the
// shape's instances; roles start with startRoles.
func newFleet(tb testing.TB, sh shape) *fleet {
	tb.Helper()
	clock := ec2sim.NewClock(epoch, scale(cmp.Or(sh.scale, 20)))
	f := &fleet{tb: tb, shape: sh, clock: clock, obs: newTaskObserver(), pace: &paceObserver{}}
	// Snapshot tasks in flight are the production default (1000): the
	// pacer holds them back, the consumer only bounds how many wait.
	// Flushes and clears are not what is measured: no bound of theirs
	// should be.
	f.env = testenv.New(tb, topology.Options{MaxAckPending: map[messages.Kind]int{
		messages.KindFlush: 20000, messages.KindClear: 20000,
	}})
	// Snapshots complete a minute after they start, so the finishing
	// phase (waiting for completion) stays short.
	f.sim = ec2sim.Start(tb, clock, ec2sim.Config{CompleteAfter: time.Minute})
	for c := range sh.clusters {
		name := clusterName(c)
		cl := planner.Cluster{Name: name, PerInstance: sh.perInstance}
		for i := range sh.nodesOf(c) {
			id := fmt.Sprintf("i-%s-%05d", name, i)
			vols := f.sim.AddInstance(account, region, id, "us-east-1a", sh.volumes)
			n := messages.Node{Name: fmt.Sprintf("n%05d", i), InstanceID: id, AZ: "us-east-1a", Region: region}
			for k, v := range vols {
				n.Volumes = append(n.Volumes, messages.Volume{ID: v, Device: fmt.Sprintf("/dev/sd%c", 'f'+k)})
			}
			cl.Nodes = append(cl.Nodes, n)
		}
		f.inv.Clusters = append(f.inv.Clusters, cl)
	}
	return f
}

// startRoles starts a planner, a coordinator (unless workersOnly) and the
// shape's workers.
func (f *fleet) startRoles(workersOnly bool) {
	tb := f.tb
	opts := planner.Options{Logger: zerolog.Nop()}
	st := stack.New(tb, f.env, stack.Config{
		Planner:     planner.PlannerConfig{Options: opts, Inventory: f.inv},
		Coordinator: planner.CoordinatorConfig{Options: opts},
		Worker: worker.Config{
			Logger: zerolog.Nop(), Observer: f.obs,
			// The await task polls every 10 s of simulated time.
			AwaitPoll: f.clock.Real(10 * time.Second),
			Concurrency: map[messages.Kind]int{
				messages.KindFlush: 256, messages.KindClear: 256, messages.KindSnapshot: f.shape.concurrency,
				messages.KindAwait: 8, messages.KindRetention: 4,
			},
		},
	})
	if !workersOnly {
		if _, err := st.StartPlanner(); err != nil {
			tb.Fatalf("%v", err)
		}
		if _, err := st.StartCoordinator(); err != nil {
			tb.Fatalf("%v", err)
		}
	}
	tool := fakes.NewNodeTool()
	for range f.shape.workers {
		if _, err := st.StartWorker(fakes.Drivers{Tool: tool, Snap: f.driver()}); err != nil {
			tb.Fatalf("%v", err)
		}
	}
}

// driver is one worker process's EBS driver: its own NATS connection and
// pacer, the simulator's clock, retries scaled to it.
func (f *fleet) driver() *ebs.Driver {
	tb := f.tb
	_, js := f.env.Connect(tb)
	kv, err := js.KeyValue(tb.Context(), messages.BucketPace)
	if err != nil {
		tb.Fatalf("pace bucket: %v", err)
	}
	p, err := pace.New(kv, pace.Options{Limit: func(k pace.Key) pace.Limit { return ebs.DefaultLimit(k.Op) },
		Clock: f.clock, Observer: f.pace})
	if err != nil {
		tb.Fatalf("pacer: %v", err)
	}
	d, err := ebs.New(tb.Context(), ebs.Config{Cluster: "fleet", Region: region, Account: account,
		Endpoint: f.sim.URL, PerInstance: f.shape.perInstance}, ebs.Options{
		Credentials:    credentials.NewStaticCredentialsProvider("AKIDFLEET", "secret", ""),
		RetryBaseDelay: f.clock.Real(time.Second), MaxBackoff: f.clock.Real(20 * time.Second),
		Pacer: p,
	})
	if err != nil {
		tb.Fatalf("ebs driver: %v", err)
	}
	return d
}

// run submits one request per cluster at once and waits for every job.
func (f *fleet) run(timeout time.Duration) []messages.Job {
	tb := f.tb
	ids := make([]string, 0, f.shape.clusters)
	for c := range f.shape.clusters {
		ids = append(ids, f.env.Submit(tb, testenv.Request(clusterName(c), "fleet-"+clusterName(c))))
	}
	jobs := make([]messages.Job, len(ids))
	for i, id := range ids {
		jobs[i] = f.env.WaitTerminal(tb, id, timeout)
		if jobs[i].Phase != messages.PhaseSucceeded {
			tb.Fatalf("job %s %s: %s", id, jobs[i].Phase, jobs[i].Error)
		}
	}
	return jobs
}

// phase is a job's snapshot phase in simulated time: from the barrier to
// the last snapshot task's result.
func (f *fleet) phase(j messages.Job) (start, end time.Time) {
	return f.clock.SimTime(j.BarrierAt), f.clock.SimTime(j.PhaseTimes[messages.PhaseFinishing])
}

// budget is what the simulator saw of one operation over a window: calls
// that went through, calls throttled, and the share of the budget used,
// against a bucket full at the window's start.
type budget struct {
	ok, throttled int
	used          float64
}

func (f *fleet) budget(op string, lim pace.Limit, from, to time.Time) budget {
	var b budget
	for _, c := range f.sim.Calls(account, region, op) {
		if c.At.Before(from) || c.At.After(to) {
			continue
		}
		if c.Throttled {
			b.throttled++
		} else {
			b.ok++
		}
	}
	capacity := float64(lim.Burst) + lim.Rate*to.Sub(from).Seconds()
	b.used = float64(b.ok) / capacity
	return b
}

// callTotals counts every call the simulator answered, and those
// throttled, over all operations.
func (f *fleet) callTotals(ops ...string) (calls, throttled int) {
	for _, op := range ops {
		for _, c := range f.sim.Calls(account, region, op) {
			calls++
			if c.Throttled {
				throttled++
			}
		}
	}
	return calls, throttled
}

var allOps = []string{"CreateSnapshot", "CreateSnapshots", "DescribeSnapshots", "DescribeInstances", "DeleteSnapshot"}

// taskObserver counts task deliveries by kind, outcome and code.
type taskObserver struct {
	worker.NopObserver
	mu     sync.Mutex
	counts map[string]int
}

func newTaskObserver() *taskObserver { return &taskObserver{counts: map[string]int{}} }

func (o *taskObserver) TaskFinished(kind messages.Kind, outcome string, _ time.Duration, code string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[string(kind)+" "+outcome+" "+code]++
}

// failedOrRetried counts deliveries of kind that did not succeed at once:
// tasks failed, and task-level retries (each a delay of at least 15 s).
func (o *taskObserver) failedOrRetried(kind messages.Kind) (failed, retried int, codes []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, n := range o.counts {
		var kd, outcome, code string
		fmt.Sscan(k, &kd, &outcome, &code)
		if kd != string(kind) {
			continue
		}
		switch outcome {
		case "failed":
			failed += n
		case "retry":
			retried += n
		default:
			continue
		}
		codes = append(codes, fmt.Sprintf("%s %s ×%d", outcome, code, n))
	}
	slices.Sort(codes)
	return failed, retried, codes
}

// paceObserver keeps the waits and throttles every pacer saw.
type paceObserver struct {
	mu        sync.Mutex
	waits     map[string][]time.Duration
	throttles map[string]int
}

func (o *paceObserver) Waited(k pace.Key, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.waits == nil {
		o.waits = map[string][]time.Duration{}
	}
	o.waits[k.Op] = append(o.waits[k.Op], d)
}

func (o *paceObserver) Throttled(k pace.Key) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.throttles == nil {
		o.throttles = map[string]int{}
	}
	o.throttles[k.Op]++
}

func (o *paceObserver) Changed(pace.Key, pace.State) {}

// maxWait is the longest any call of op waited for the budget.
func (o *paceObserver) maxWait(op string) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	var m time.Duration
	for _, d := range o.waits[op] {
		m = max(m, d)
	}
	return m
}

// retention publishes a retention task deleting the snapshots of retired
// jobs, and waits for its result.
func (f *fleet) retention(cluster string, retire []string, timeout time.Duration) messages.TaskResult {
	tb := f.tb
	job := messages.JobIDFor(cluster, "retention")
	results := make(chan *nats.Msg, 4)
	sub, err := f.env.NC.ChanSubscribe(messages.SubjectTaskEvent(job, messages.KindRetention), results)
	if err != nil {
		tb.Fatalf("subscribe: %v", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	task := messages.Task{Schema: messages.TaskSchema, ID: messages.TaskID(job, messages.KindRetention, cluster),
		Kind: messages.KindRetention, JobID: job, Cluster: cluster, Target: cluster, Retire: retire,
		Deadline: time.Now().Add(timeout)}
	data, err := json.Marshal(task)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	if _, err := f.env.JS.Publish(ctx, messages.SubjectTask(messages.KindRetention, cluster), data); err != nil {
		tb.Fatalf("publish retention: %v", err)
	}
	select {
	case m := <-results:
		var r messages.TaskResult
		if err := json.Unmarshal(m.Data, &r); err != nil {
			tb.Fatalf("%v", err)
		}
		return r
	case <-time.After(timeout):
		tb.Fatalf("retention: no result in %s", timeout)
	}
	return messages.TaskResult{}
}
