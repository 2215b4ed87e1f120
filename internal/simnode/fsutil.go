package simnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lock takes the node's exclusive flock. With a non-nil done it polls, so a
// caller whose context ends stops waiting; with nil it blocks.
func (n *Node) lock(done <-chan struct{}) (func(), error) {
	f, err := os.OpenFile(filepath.Join(n.root, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("simnode: lock: %w", err)
	}
	// Work under the lock is finished before a stop signal ends a process
	// that asked for it (FinishWorkOnSignals).
	unlock := func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		workEnds()
	}
	if done == nil {
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
			if err != syscall.EINTR {
				break
			}
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("simnode: lock: %w", err)
		}
		workBegins()
		return unlock, nil
	}
	wait := 200 * time.Microsecond
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			workBegins()
			return unlock, nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			_ = f.Close()
			return nil, fmt.Errorf("simnode: lock: %w", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-done:
			t.Stop()
			_ = f.Close()
			return nil, errCancelled
		case <-t.C:
		}
		if wait < 10*time.Millisecond {
			wait *= 2
		}
	}
}

var errCancelled = errors.New("simnode: cancelled")

func sleep(done <-chan struct{}, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-done:
		return errCancelled
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}
