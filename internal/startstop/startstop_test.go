package startstop

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLifecycle(t *testing.T) {
	t.Parallel()
	s := &Service{Name: "worker"}
	require.ErrorIs(t, s.Ready(), ErrNotRunning)
	_, ok := s.Admit()
	require.False(t, ok, "nothing is admitted before the start")
	require.False(t, s.BeginStop(), "nothing to stop")

	require.NoError(t, s.BeginStart())
	require.EqualError(t, s.BeginStart(), "worker already starting")
	require.EqualError(t, s.Ready(), "worker not running: starting")
	early, ok := s.Admit()
	require.True(t, ok, "a consumer bound during the start may deliver")
	// The start fails: undone like a stop, waiting for what was admitted.
	require.True(t, s.BeginStop())
	go early()
	require.NoError(t, s.Wait(context.Background()))
	s.EndStop()
	require.NoError(t, s.BeginStart(), "a failed start can be retried")
	s.EndStart()
	require.NoError(t, s.Ready())
	require.EqualError(t, s.BeginStart(), "worker already running")

	done, ok := s.Admit()
	require.True(t, ok)
	require.True(t, s.BeginStop())
	_, ok = s.Admit()
	require.False(t, ok, "admission closes when the stop begins")
	require.EqualError(t, s.Ready(), "worker not running: stopping")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Wait(ctx), context.DeadlineExceeded, "the admitted work is still running")
	done()
	require.NoError(t, s.Wait(context.Background()))
	s.EndStop()
	require.EqualError(t, s.Ready(), "worker not running: stopped")
	require.NoError(t, s.BeginStart(), "a stopped service starts again")
	s.EndStart()
	require.NoError(t, s.Ready())
}

// Start, Stop, Ready and Admit from many goroutines at once: admitted work
// never runs after its Stop returned, and every state is one of the four.
func TestLifecycleUnderConcurrency(t *testing.T) {
	t.Parallel()
	s := &Service{Name: "svc"}
	var (
		wg        sync.WaitGroup
		running   atomic.Int64 // admitted work in progress
		violation atomic.Bool
		stopMu    sync.Mutex // one Stop at a time, as a service's own Stop does
	)
	deadline := time.Now().Add(300 * time.Millisecond)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := s.BeginStart(); err == nil {
					s.EndStart()
				}
				_ = s.Ready()
			}
		}()
	}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if done, ok := s.Admit(); ok {
					running.Add(1)
					time.Sleep(50 * time.Microsecond)
					running.Add(-1)
					done()
				}
			}
		}()
	}
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				stopMu.Lock()
				if s.BeginStop() {
					require.NoError(t, s.Wait(context.Background()))
					if running.Load() != 0 {
						violation.Store(true)
					}
					s.EndStop()
				}
				stopMu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.False(t, violation.Load(), "work admitted before a stop was still running after its Wait")
}
