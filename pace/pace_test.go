package pace_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/topology"
)

var key = pace.Key{Account: "123456789012", Region: "us-east-1", Op: "CreateSnapshots"}

// manualClock stands still unless the test moves it. With skip set, a
// Sleep moves it forward by what was asked; without, a Sleep lasts until
// its context ends.
type manualClock struct {
	mu   sync.Mutex
	now  time.Time
	skip bool
	// stall is added to the next skipped sleep: the process was not
	// scheduled for that long after its wake-up.
	stall time.Duration
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *manualClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.skip {
		c.mu.Lock()
		d, c.stall = d+c.stall, 0
		c.mu.Unlock()
		c.Advance(d)
		return nil
	}
	<-ctx.Done()
	return context.Cause(ctx)
}

func newClock(skip bool) *manualClock {
	return &manualClock{now: time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC), skip: skip}
}

// bundle is one embedded JetStream server with the topology, and pacers
// on connections of their own, as processes of a fleet would have.
type bundle struct {
	env *testenv.Env
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return &bundle{env: testenv.New(t, topology.Options{})}
}

func (b *bundle) pacer(t *testing.T, opts pace.Options) *pace.Pacer {
	t.Helper()
	_, js := b.env.Connect(t)
	kv, err := js.KeyValue(t.Context(), messages.BucketPace)
	require.NoError(t, err)
	if opts.Limit == nil {
		opts.Limit = func(pace.Key) pace.Limit { return pace.Limit{Rate: 5, Burst: 100} }
	}
	p, err := pace.New(kv, opts)
	require.NoError(t, err)
	return p
}

// A call sequence on a pacer whose sleeps skip ahead lands exactly on the
// bucket's slots: the burst (less the headroom) at once, then the rate.
func TestWaitLetsTheBurstThenTheRate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clock := newClock(true)
	start := clock.Now()
	p := b.pacer(t, pace.Options{Clock: clock})
	for i := range 95 {
		require.NoError(t, p.Wait(t.Context(), key))
		want := time.Duration(0)
		if i >= 90 {
			want = time.Duration(i-89) * 200 * time.Millisecond
		}
		require.Equal(t, want, clock.Now().Sub(start), "call %d", i)
	}
	s, err := p.Peek(t.Context(), key)
	require.NoError(t, err)
	require.InDelta(t, 0, s.Tokens, 1e-9)
	require.InDelta(t, 5, s.Rate, 1e-9)
}

// Two processes share one budget: together they take as long as one
// process making every call would, not half as long.
func TestProcessesShareOneBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const rate, burst, perProcess, processes = 50.0, 10, 60, 3
	limit := func(pace.Key) pace.Limit { return pace.Limit{Rate: rate, Burst: burst} }
	var pacers []*pace.Pacer
	for range processes {
		pacers = append(pacers, b.pacer(t, pace.Options{Limit: limit}))
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, processes*perProcess)
	for _, p := range pacers {
		for range perProcess {
			wg.Go(func() { errs <- p.Wait(t.Context(), key) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// 180 calls through a bucket of 9 (10 less the headroom) refilled at 50
	// a second cannot end sooner than (180-9)/50 = 3.42 s. Three unshared
	// buckets would let them through in (60-9)/50 = 1.02 s. A loaded
	// machine only makes it slower.
	floor := time.Duration(float64(processes*perProcess-9) / rate * float64(time.Second))
	require.GreaterOrEqual(t, time.Since(start), floor)
}

// A call that wakes long after its slot (its process stalled) takes a new
// slot instead of going with the calls of the slots after it: it is
// charged again at the time it really goes.
func TestLateCallTakesANewSlot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clock := newClock(true)
	start := clock.Now()
	p := b.pacer(t, pace.Options{Clock: clock})
	for range 90 {
		require.NoError(t, p.Wait(t.Context(), key))
	}
	clock.mu.Lock()
	clock.stall = 5 * time.Second // beyond the 2 s the headroom's 10 tokens take
	clock.mu.Unlock()
	require.NoError(t, p.Wait(t.Context(), key))
	require.Equal(t, 5200*time.Millisecond, clock.Now().Sub(start))
	s, err := p.Peek(t.Context(), key)
	require.NoError(t, err)
	// 91 calls' worth of a full bucket, refilled for 5.2 s (26 tokens),
	// less the one slot the late call left unused: 90 - 92 + 26.
	require.InDelta(t, 24, s.Tokens, 1e-6)
}

// A call that gives up before its slot gives the slot back.
func TestCancelledWaitGivesItsSlotBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clock := newClock(false)
	p := b.pacer(t, pace.Options{Clock: clock})
	for range 90 {
		require.NoError(t, p.Wait(t.Context(), key))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := p.Wait(ctx, key)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	s, err := p.Peek(t.Context(), key)
	require.NoError(t, err)
	require.InDelta(t, 0, s.Tokens, 1e-9, "the slot 200 ms ahead was given back")
}

// A throttle cuts the rate once for every process, empties the bucket, and
// the rate grows back while no throttle follows.
func TestThrottleCutsTheSharedRate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clock := newClock(true)
	one, two := b.pacer(t, pace.Options{Clock: clock}), b.pacer(t, pace.Options{Clock: clock})
	require.NoError(t, one.Wait(t.Context(), key))
	require.NoError(t, one.Throttled(t.Context(), key))
	require.NoError(t, two.Throttled(t.Context(), key), "a second report within the cooldown")
	for _, p := range []*pace.Pacer{one, two} {
		s, err := p.Peek(t.Context(), key)
		require.NoError(t, err)
		require.InDelta(t, 3.5, s.Rate, 1e-9, "cut once by 0.7, not twice")
		require.InDelta(t, 0, s.Tokens, 1e-6, "the bucket counts as empty")
	}
	// The next call waits for one token at the lower rate.
	before := clock.Now()
	require.NoError(t, two.Wait(t.Context(), key))
	require.InDelta(t, float64(time.Second)/3.5, float64(clock.Now().Sub(before)), float64(time.Microsecond))

	clock.Advance(2 * time.Second)
	require.NoError(t, two.Throttled(t.Context(), key), "after the cooldown")
	s, err := one.Peek(t.Context(), key)
	require.NoError(t, err)
	require.InDelta(t, 3.5*0.7, s.Rate, 1e-9)

	clock.Advance(11 * time.Second)
	s, err = one.Peek(t.Context(), key)
	require.NoError(t, err)
	require.InDelta(t, 3.5*0.7+2*0.5, s.Rate, 1e-9, "two steps of a tenth of the limit")
	clock.Advance(time.Minute)
	s, err = one.Peek(t.Context(), key)
	require.NoError(t, err)
	require.InDelta(t, 5, s.Rate, 1e-9)
}

// A limit of zero leaves a key unpaced, without touching the store.
func TestZeroLimitIsUnpaced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clock := newClock(false)
	p := b.pacer(t, pace.Options{Clock: clock, Limit: func(pace.Key) pace.Limit { return pace.Limit{} }})
	for range 1000 {
		require.NoError(t, p.Wait(t.Context(), key))
	}
	_, js := b.env.Connect(t)
	kv, err := js.KeyValue(t.Context(), messages.BucketPace)
	require.NoError(t, err)
	_, err = kv.Get(t.Context(), key.String())
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
}

// A key that cannot name a bucket is refused with the part that is wrong.
func TestBadKeyRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.pacer(t, pace.Options{})
	err := p.Wait(t.Context(), pace.Key{Account: "123456789012", Region: "us east 1", Op: "CreateSnapshot"})
	require.ErrorContains(t, err, `region "us east 1"`)
}

// The store unreachable is an error of the call, not a hang.
func TestStoreGoneIsAnError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	nc, js := b.env.Connect(t)
	kv, err := js.KeyValue(t.Context(), messages.BucketPace)
	require.NoError(t, err)
	p, err := pace.New(kv, pace.Options{StoreTimeout: 200 * time.Millisecond,
		Limit: func(pace.Key) pace.Limit { return pace.Limit{Rate: 5, Burst: 100} }})
	require.NoError(t, err)
	nc.Close()
	err = p.Wait(t.Context(), key)
	require.Error(t, err)
	require.False(t, errors.Is(err, context.Canceled))
	require.ErrorContains(t, err, key.String())
}

func TestNewNeedsStoreAndLimits(t *testing.T) {
	t.Parallel()
	_, err := pace.New(nil, pace.Options{Limit: func(pace.Key) pace.Limit { return pace.Limit{} }})
	require.Error(t, err)
	b := setup(t)
	_, js := b.env.Connect(t)
	kv, err := js.KeyValue(t.Context(), messages.BucketPace)
	require.NoError(t, err)
	_, err = pace.New(kv, pace.Options{})
	require.Error(t, err)
}
