package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/worker/errclass"
)

func TestAwaitFire(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	w := &Worker{cfg: Config{Now: func() time.Time { return now }}}
	done, cancel := context.WithCancel(context.Background())
	cancel()

	// No fire time, or one already past: no wait at all, whatever the
	// context (a cancelled one would end any wait at once, with an error).
	for _, at := range []time.Time{{}, now.Add(-time.Hour), now} {
		waited, err := w.awaitFire(done, at)
		require.NoError(t, err, at)
		require.False(t, waited, at)
	}

	// A fire time ahead: the wait ends with the context, as nothing run.
	stop := errors.New("worker shutting down")
	ctx, cancelCause := context.WithCancelCause(context.Background())
	cancelCause(stop)
	waited, err := w.awaitFire(ctx, now.Add(time.Hour))
	require.True(t, waited)
	require.ErrorIs(t, err, stop)
	require.True(t, errclass.IsNotRun(err))

	// And otherwise at the fire time.
	w.cfg.Now = time.Now
	waited, err = w.awaitFire(context.Background(), time.Now().Add(20*time.Millisecond))
	require.True(t, waited)
	require.NoError(t, err)
}
