package cassandra

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLockFileWaitsForTheHolder(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "leases", "127.0.0.1.lock")
	unlock, err := lockFile(t.Context(), path, nil)
	require.NoError(t, err)

	// flock locks belong to the open file, so a second open in the same
	// process waits like another process would.
	ctx, cancel := context.WithTimeout(t.Context(), 600*time.Millisecond)
	defer cancel()
	waited := false
	_, err = lockFile(ctx, path, func() { waited = true })
	require.ErrorContains(t, err, "held by another process")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.True(t, waited)

	got := make(chan error, 1)
	go func() {
		unlock2, err := lockFile(t.Context(), path, nil)
		if err == nil {
			unlock2()
		}
		got <- err
	}()
	time.Sleep(300 * time.Millisecond)
	unlock()
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the lock was not taken after its release")
	}
}
