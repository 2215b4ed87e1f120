package ebs

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker/errclass"
)

// paceBundle is an embedded JetStream server holding the fleet's budget,
// and a fake EC2 endpoint.
type paceBundle struct {
	env *testenv.Env
	ec2 *fakeEC2
}

func setupPace(t *testing.T) *paceBundle {
	t.Helper()
	return &paceBundle{env: testenv.New(t, topology.Options{}), ec2: newFakeEC2(t)}
}

// pacer is one process's pacer, on a connection of its own.
func (b *paceBundle) pacer(t *testing.T, limit func(pace.Key) pace.Limit) *pace.Pacer {
	t.Helper()
	_, js := b.env.Connect(t)
	kv, err := js.KeyValue(t.Context(), messages.BucketPace)
	require.NoError(t, err)
	p, err := pace.New(kv, pace.Options{Limit: limit})
	require.NoError(t, err)
	return p
}

func (b *paceBundle) driver(t *testing.T, cfg Config, p *pace.Pacer) *Driver {
	t.Helper()
	cfg.Endpoint = b.ec2.srv.URL
	opts := fastOptions()
	opts.Pacer = p
	d, err := New(t.Context(), cfg, opts)
	require.NoError(t, err)
	return d
}

const createAnswer = "<snapshotId>snap-1</snapshotId><volumeId>vol-1</volumeId><status>pending</status>"

// Two worker processes snapshotting one account's volumes share its
// CreateSnapshot budget: together they take as long as the budget allows
// all of their calls, not half of it.
func TestPacedCallsShareTheAccountBudget(t *testing.T) {
	t.Parallel()
	b := setupPace(t)
	b.ec2.on("CreateSnapshot", fakeAnswer{body: createAnswer})
	limit := func(k pace.Key) pace.Limit {
		if k.Op == "CreateSnapshot" {
			return pace.Limit{Rate: 20, Burst: 3}
		}
		return DefaultLimit(k.Op)
	}
	cfg := Config{Cluster: "c1", Region: "us-east-1", Account: "123456789012"}
	cfg2 := cfg
	cfg2.Cluster = "c2"
	drivers := []*Driver{b.driver(t, cfg, b.pacer(t, limit)), b.driver(t, cfg2, b.pacer(t, limit))}
	const calls = 24
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, calls)
	for i := range calls {
		wg.Go(func() {
			_, errs[i] = drivers[i%2].Create(t.Context(), createRequest(fmt.Sprintf("c1-000000000001.snapshot.vol-%d", i), "vol-1"))
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, calls, b.ec2.count("CreateSnapshot"))
	// A bucket of 2 (3 less the headroom) refilled at 20 a second lets 24
	// calls through in no less than 1.1 s; two budgets would take half.
	require.GreaterOrEqual(t, time.Since(start), 1100*time.Millisecond)

	// The calls were charged to the cluster's account in its region, under
	// their own operation, and nothing else: Create looked nothing up.
	_, js := b.env.Connect(t)
	kv, err := js.KeyValue(t.Context(), messages.BucketPace)
	require.NoError(t, err)
	keys, err := kv.Keys(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"123456789012.us-east-1.CreateSnapshot"}, keys)
}

// EC2 throttling a paced call cuts the rate for the whole fleet, and the
// call is still retried by the SDK and then by the task.
func TestThrottleCutsTheFleetRate(t *testing.T) {
	t.Parallel()
	b := setupPace(t)
	b.ec2.on("CreateSnapshot", fakeAnswer{status: 503, code: CodeRequestLimitExceeded})
	limit := func(k pace.Key) pace.Limit { return DefaultLimit(k.Op) }
	d := b.driver(t, Config{Cluster: "c1", Region: "us-east-1", Account: "210987654321"}, b.pacer(t, limit))
	_, err := d.Create(t.Context(), createRequest("c1-000000000001.snapshot.vol-1", "vol-1"))
	require.Error(t, err)
	require.Equal(t, CodeRequestLimitExceeded, errclass.Code(err))
	require.Equal(t, 3, b.ec2.count("CreateSnapshot"), "every attempt paced, none dropped")
	other := b.pacer(t, limit) // another process
	s, err := other.Peek(t.Context(), pace.Key{Account: "210987654321", Region: "us-east-1", Op: "CreateSnapshot"})
	require.NoError(t, err)
	require.Less(t, s.Rate, 5.0, "the shared rate was cut")
}

// A pacer that cannot reach JetStream fails the call before it reaches
// EC2, as a transient error the task retries.
func TestPaceUnavailableIsTransient(t *testing.T) {
	t.Parallel()
	b := setupPace(t)
	b.ec2.on("CreateSnapshot", fakeAnswer{body: createAnswer})
	nc, js := b.env.Connect(t)
	kv, err := js.KeyValue(t.Context(), messages.BucketPace)
	require.NoError(t, err)
	p, err := pace.New(kv, pace.Options{StoreTimeout: 200 * time.Millisecond,
		Limit: func(k pace.Key) pace.Limit { return DefaultLimit(k.Op) }})
	require.NoError(t, err)
	d := b.driver(t, Config{Cluster: "c1", Region: "us-east-1"}, p)
	nc.Close()
	_, err = d.Create(t.Context(), createRequest("c1-000000000001.snapshot.vol-1", "vol-1"))
	require.Error(t, err)
	require.Equal(t, CodePaceUnavailable, errclass.Code(err))
	require.False(t, errclass.IsPermanent(err))
	require.Zero(t, b.ec2.count("CreateSnapshot"))
}

func TestDefaultLimits(t *testing.T) {
	t.Parallel()
	for _, op := range Operations {
		lim := DefaultLimit(op)
		require.Positive(t, lim.Rate, op)
		require.Equal(t, 100, lim.Burst, op)
	}
	require.Equal(t, pace.Limit{Rate: 5, Burst: 100}, DefaultLimit("CreateSnapshots"))
	require.Equal(t, pace.Limit{Rate: 20, Burst: 100}, DefaultLimit("DescribeSnapshots"))
}

func TestAccountOf(t *testing.T) {
	t.Parallel()
	require.Equal(t, "111122223333", accountOf("111122223333", "arn:aws:iam::123456789012:role/quiesce"))
	require.Equal(t, "123456789012", accountOf("", "arn:aws:iam::123456789012:role/quiesce"))
	require.Equal(t, "123456789012", accountOf("", "arn:aws-cn:iam::123456789012:role/path/quiesce"))
	require.Equal(t, DefaultAccount, accountOf("", ""))
	require.Equal(t, DefaultAccount, accountOf("", "not-an-arn"))
}
