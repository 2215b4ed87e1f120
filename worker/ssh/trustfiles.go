package ssh

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
)

// fileStamp is what os.Stat says about a file: enough to notice an edit in
// place (size, modification and change times), a replacement (another
// inode) and a swapped symlink (a Kubernetes secret mount), since Stat
// follows the link.
type fileStamp struct {
	exists     bool
	dev, ino   uint64
	size       int64
	mtime      int64
	ctime      int64
	statFailed string
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileStamp{}
	}
	if err != nil {
		return fileStamp{statFailed: err.Error()}
	}
	st := fileStamp{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), sys.Ino
		st.ctime = sys.Ctim.Nano()
	}
	return st
}

// watchedFiles holds what was read from a set of files (the known_hosts
// files, or the identity files with their certificates) and reads them again
// when they change, so an operator's correction reaches running workers
// without a restart. Every use stats the files, which costs microseconds
// beside the handshake it precedes; reread reads their content too, for a
// change that stat cannot see.
type watchedFiles[T any] struct {
	paths []string
	// load reads the files into a value; an error is kept until the files
	// change again.
	load func() (T, error)

	mu     sync.Mutex
	loaded bool
	stamps []fileStamp
	sum    [sha256.Size]byte
	val    T
	err    error
}

func newWatchedFiles[T any](paths []string, load func() (T, error)) *watchedFiles[T] {
	return &watchedFiles[T]{paths: paths, load: load}
}

// get returns the value read from the files as they are now.
func (w *watchedFiles[T]) get() (T, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	stamps := w.stampAll()
	if w.loaded && slices.Equal(stamps, w.stamps) {
		return w.val, w.err
	}
	w.reload(stamps)
	return w.val, w.err
}

// reread reads the files' content whatever their metadata says, and loads
// them again if it differs from what was loaded. changed reports whether it
// did.
func (w *watchedFiles[T]) reread() (val T, changed bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	stamps := w.stampAll()
	sum, serr := w.contentSum()
	if w.loaded && serr == nil && sum == w.sum && slices.Equal(stamps, w.stamps) {
		return w.val, false, w.err
	}
	w.reload(stamps)
	return w.val, true, w.err
}

// reload reads the files; the stamps were taken before, so a change made
// while they are read is seen by the next get.
func (w *watchedFiles[T]) reload(stamps []fileStamp) {
	w.stamps = stamps
	w.sum, _ = w.contentSum()
	w.val, w.err = w.load()
	w.loaded = true
}

func (w *watchedFiles[T]) stampAll() []fileStamp {
	stamps := make([]fileStamp, len(w.paths))
	for i, p := range w.paths {
		stamps[i] = stampOf(p)
	}
	return stamps
}

// contentSum hashes every file's path, presence and content.
func (w *watchedFiles[T]) contentSum() ([sha256.Size]byte, error) {
	h := sha256.New()
	var firstErr error
	for _, p := range w.paths {
		fmt.Fprintf(h, "%d:%s\x00", len(p), p)
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			h.Write([]byte{0})
			continue
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		h.Write([]byte{1})
		_, err = io.Copy(h, f)
		_ = f.Close()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum, firstErr
}
