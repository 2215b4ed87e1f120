package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker/errclass"
)

const leaseTTL = time.Second

func newLeaser(t *testing.T, holder string) (*leaser, *testenv.Env) {
	t.Helper()
	env := testenv.New(t, topology.Options{AckWait: leaseTTL})
	return leaserOn(t, env, holder), env
}

func leaserOn(t *testing.T, env *testenv.Env, holder string) *leaser {
	t.Helper()
	st, err := env.H.Leases.Status(t.Context())
	require.NoError(t, err)
	require.Equal(t, leaseTTL, st.TTL(), "the bucket's TTL is the lease's lifetime, AckWait by default")
	return &leaser{store: env.H.Leases, ttl: st.TTL(), holder: holder, now: time.Now}
}

// A lease given back is free at once for the next execution.
func TestLeaseReleasedIsFreeAtOnce(t *testing.T) {
	t.Parallel()
	a, env := newLeaser(t, "a")
	b := leaserOn(t, env, "b")
	ctx := t.Context()
	la, err := a.acquire(ctx, "j.snapshot.v1", 1)
	require.NoError(t, err)
	require.NoError(t, la.Fence(ctx))
	la.release(ctx)
	_, err = env.H.Leases.Get(ctx, "j.snapshot.v1")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "given back, not left to lapse")
	lb, err := b.acquire(ctx, "j.snapshot.v1", 2)
	require.NoError(t, err)
	lb.release(ctx)
}

// A lease its holder keeps renewing is never taken: the other execution
// gives up after a little more than the TTL, with a delay to retry after.
func TestLeaseHeldByALiveExecution(t *testing.T) {
	t.Parallel()
	a, env := newLeaser(t, "a")
	b := leaserOn(t, env, "b")
	ctx := t.Context()
	la, err := a.acquire(ctx, "j.snapshot.v1", 1)
	require.NoError(t, err)
	defer la.release(ctx)
	_, err = b.acquire(ctx, "j.snapshot.v1", 2)
	require.ErrorIs(t, err, errLeaseHeld)
	require.Contains(t, err.Error(), "worker a")
	d, ok := errclass.Delay(err)
	require.True(t, ok, "retried later, not failed")
	require.Equal(t, leaseTTL, d)
	require.NoError(t, la.Fence(ctx), "the holder still holds it")
}

// An execution that stalls (its renewals stop) loses the lease: another
// takes it once it lapsed, and the stalled one's fence then fails, whether
// or not its network works again.
func TestLeaseOfAStalledExecutionLapses(t *testing.T) {
	t.Parallel()
	a, env := newLeaser(t, "a")
	b := leaserOn(t, env, "b")
	ctx := t.Context()
	la, err := a.acquire(ctx, "j.snapshot.v1", 1)
	require.NoError(t, err)
	// The stall: no renewal from here on.
	close(la.stop)
	<-la.done
	lb, err := b.acquire(ctx, "j.snapshot.v1", 2)
	require.NoError(t, err, "taken once the stalled holder's lease lapsed")
	require.ErrorIs(t, la.Fence(ctx), ErrLeaseLost)
	require.NoError(t, lb.Fence(ctx))

	// Even with no one holding it any more, a lapsed lease stays lost.
	lb.release(ctx)
	require.ErrorIs(t, la.Fence(ctx), ErrLeaseLost)
}

// A holder whose own clock says its time ran out renews before it creates;
// when the server still has its revision (nobody took the lease meanwhile)
// that renewal succeeds and the lease holds again.
func TestLeaseFenceRenewsWhenItsTimeIsShort(t *testing.T) {
	t.Parallel()
	a, _ := newLeaser(t, "a")
	ctx := t.Context()
	la, err := a.acquire(ctx, "j.snapshot.v1", 1)
	require.NoError(t, err)
	defer la.release(ctx)
	la.mu.Lock()
	la.validUntil = time.Now().Add(-time.Millisecond)
	rev := la.rev
	la.mu.Unlock()
	require.NoError(t, la.Fence(ctx))
	la.mu.Lock()
	defer la.mu.Unlock()
	require.Greater(t, la.rev, rev, "renewed on the revision it last wrote")
	require.True(t, la.validUntil.After(time.Now()))
}

// A lease whose key someone else rewrote is lost at the next renewal.
func TestLeaseLostToAnotherWriter(t *testing.T) {
	t.Parallel()
	a, env := newLeaser(t, "a")
	ctx := t.Context()
	la, err := a.acquire(ctx, "j.snapshot.v1", 1)
	require.NoError(t, err)
	_, err = env.H.Leases.Put(ctx, "j.snapshot.v1", []byte(`{"worker":"intruder"}`))
	require.NoError(t, err)
	err = la.extend(ctx)
	require.True(t, errors.Is(err, ErrLeaseLost), "got %v", err)
	require.ErrorIs(t, la.Fence(ctx), ErrLeaseLost)
	la.release(ctx)
	e, err := env.H.Leases.Get(context.Background(), "j.snapshot.v1")
	require.NoError(t, err)
	require.Contains(t, string(e.Value()), "intruder", "a lost lease is not given back over its new holder")
}
