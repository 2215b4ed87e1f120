package pace

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// steppedClock moves only when the test advances it; a Sleep lasts until
// then, or until its context ends.
type steppedClock struct {
	mu    sync.Mutex
	now   time.Time
	moved chan struct{}
}

func (c *steppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *steppedClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	close(c.moved)
	c.moved = make(chan struct{})
}

func (c *steppedClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	until := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		now, moved := c.now, c.moved
		c.mu.Unlock()
		if !now.Before(until) {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Calls of a process waiting for the budget go earliest deadline first,
// whatever order they came in.
func TestWaitersGoEarliestDeadlineFirst(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, topology.Options{})
	kv, err := env.JS.KeyValue(t.Context(), messages.BucketPace)
	require.NoError(t, err)
	clock := &steppedClock{now: time.Unix(t0/1e9, 0), moved: make(chan struct{})}
	// One call a second, one at a time, no slot reserved ahead: every call
	// after the first waits for the clock.
	p, err := New(kv, Options{Clock: clock, MaxAhead: time.Millisecond,
		Limit: func(Key) Limit { return Limit{Rate: 1, Burst: 1} }})
	require.NoError(t, err)
	key := Key{Account: "123456789012", Region: "us-east-1", Op: "CreateSnapshots"}
	require.NoError(t, p.Wait(t.Context(), key))

	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	call := func(name string, d time.Duration) {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		wg.Go(func() {
			defer cancel()
			require.NoError(t, p.Wait(ctx, key))
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
		})
	}
	queued := func(n int) {
		require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
			b := p.bucket(key)
			b.mu.Lock()
			defer b.mu.Unlock()
			return len(b.queue) == n
		}))
	}
	call("due in 2h", 2*time.Hour)
	queued(1)
	call("due in 1h", time.Hour)
	call("due in 3h", 3*time.Hour)
	call("no hurry", 4*time.Hour)
	queued(4)
	for range 4 {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		clock.Advance(time.Second)
		require.NoError(t, testenv.Eventually(10*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(order) > n
		}))
	}
	wg.Wait()
	require.Equal(t, []string{"due in 1h", "due in 2h", "due in 3h", "no hurry"}, order)
}
