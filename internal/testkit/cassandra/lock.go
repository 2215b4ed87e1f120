package cassandra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock(2) on path, creating it, and polls until
// it has it or ctx ends (a blocking flock could not be cancelled). The lock
// goes with the process: a test binary that dies releases it.
func lockFile(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		return nil, err
	}
	// Read-only is enough for flock, and lets another user lock a file
	// this user created.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o666)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: held by another process: %w", path, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// leaseDir holds one lock file per address. It is machine-wide on purpose
// (not under a user's cache), as the addresses are, and open to every user
// like /tmp itself.
func leaseDir() string {
	dir := filepath.Join(os.TempDir(), "quiesce-cassandra-leases")
	if err := os.Mkdir(dir, 0o755); err == nil {
		_ = os.Chmod(dir, 0o777|os.ModeSticky)
	}
	return dir
}
