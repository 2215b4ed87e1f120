package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAdmissionAdaptsItsLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newAdmission(4, 8)

	// Up to the limit admitted at once; the next waits.
	var held []ticket
	for range 4 {
		tk, err := a.acquire(ctx)
		require.NoError(t, err)
		held = append(held, tk)
	}
	full, cancel := context.WithCancelCause(ctx)
	stop := errors.New("task ended")
	cancel(stop)
	_, err := a.acquire(full)
	require.ErrorIs(t, err, stop, "a waiting handshake gives up with its context")

	// One more per handshake done, never above the maximum.
	for _, tk := range held {
		a.release(tk, handshakeDone)
	}
	limit, inFlight := a.current()
	require.Equal(t, 8, limit)
	require.Zero(t, inFlight)
	held = held[:0]
	for range 8 {
		tk, err := a.acquire(ctx)
		require.NoError(t, err)
		held = append(held, tk)
	}
	// Every one of a burst admitted before the overload fails: halved once.
	for _, tk := range held[:4] {
		a.release(tk, handshakeOverload)
	}
	limit, inFlight = a.current()
	require.Equal(t, 4, limit, "one overload, one decrease")
	require.Equal(t, 4, inFlight)
	// Neither does a neutral end move it.
	for _, tk := range held[4:] {
		a.release(tk, handshakeNeutral)
	}
	limit, _ = a.current()
	require.Equal(t, 4, limit)

	// Each overload seen by handshakes admitted after the last decrease
	// halves it again, down to one.
	for _, want := range []int{2, 1, 1} {
		tk, err := a.acquire(ctx)
		require.NoError(t, err)
		a.release(tk, handshakeOverload)
		limit, _ = a.current()
		require.Equal(t, want, limit)
	}
}

// A handshake waiting for a slot gets it when one is released.
func TestAdmissionWakesAWaiter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newAdmission(1, 4)
	first, err := a.acquire(ctx)
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		tk, err := a.acquire(ctx)
		if err == nil {
			a.release(tk, handshakeDone)
		}
		got <- err
	}()
	a.release(first, handshakeNeutral)
	require.NoError(t, <-got)
	limit, inFlight := a.current()
	require.Equal(t, 2, limit)
	require.Zero(t, inFlight)
}

func TestAdmissionDefaults(t *testing.T) {
	t.Parallel()
	limit, _ := newAdmission(0, 0).current()
	require.Equal(t, DefaultHandshakesStart, limit)
	limit, _ = newAdmission(100, 10).current()
	require.Equal(t, 10, limit, "never starts above its maximum")
}

// What a failed connect or handshake says of the load: only a timeout of
// its own and a connection dropped during the handshake lower the limit.
func TestHandshakeOutcome(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ended, cancel := context.WithCancel(ctx)
	cancel()
	cases := []struct {
		desc string
		ctx  context.Context
		err  error
		want handshakeOutcome
	}{
		{"connected", ctx, nil, handshakeDone},
		{"dropped during the handshake (MaxStartups)", ctx, classify(ctx, "handshake", "n1", fmt.Errorf("ssh: handshake failed: %w", io.EOF)), handshakeOverload},
		{"reset during the handshake", ctx, classify(ctx, "handshake", "n1", syscall.ECONNRESET), handshakeOverload},
		{"handshake timed out", ctx, classify(ctx, "handshake", "n1", os.ErrDeadlineExceeded), handshakeOverload},
		{"connection refused", ctx, classify(ctx, "dial", "n1", syscall.ECONNREFUSED), handshakeNeutral},
		{"credentials refused", ctx, classify(ctx, "handshake", "n1", errors.New("ssh: unable to authenticate")), handshakeNeutral},
		{"no common algorithm", ctx, classify(ctx, "handshake", "n1", errors.New("ssh: no common algorithm for key exchange")), handshakeNeutral},
		{"the caller gave up", ended, classify(ended, "handshake", "n1", io.EOF), handshakeNeutral},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, outcomeOf(tc.ctx, tc.err), tc.desc)
	}
}
