// Package fs is the volume snapshot driver of the embedded default and of the
// tests: a volume is a directory, and a snapshot is a point-in-time copy of it
// in a snapshot store, with EBS-like IDs, states and tags.
//
// Store layout: <store>/<snap-id>/meta.json (written atomically) and
// <store>/<snap-id>/data/ (the copy). Several drivers, in several processes,
// may share one store: an flock on <store>/.lock makes "find by task tag,
// else create" atomic, so concurrent deliveries of one task make one
// snapshot per volume, and an flock held on <snap-id>/.copying while the copy
// runs lets any reader tell a copy in progress from one whose process died.
//
// A process killed part-way leaves debris that is never counted as a
// snapshot and is removed by the next operation on the store: a snapshot
// directory without meta.json (killed between making the directory and
// recording it, which happens under the store lock, so under that lock such
// a directory is always debris), and a .deleting-* directory (a delete
// renames a snapshot away first, then removes it).
package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

const (
	metaFile    = "meta.json"
	dataDir     = "data"
	copyingFile = ".copying"
	storeLock   = ".lock"
	// deletingPrefix starts the name a snapshot directory is renamed to
	// before it is removed.
	deletingPrefix = ".deleting-"
)

var idPattern = regexp.MustCompile(`^snap-[0-9a-f]{17}$`)

// Options adjust a Driver, for tests. The zero value is the production driver.
type Options struct {
	// Clock gives the time recorded as a snapshot's StartTime (default time.Now).
	Clock func() time.Time
	// CompleteAfter makes a snapshot report "pending" until its StartTime plus
	// this much by Clock, though its copy is already whole: EBS's lag between
	// the point in time and completion, for tests that wait on it.
	CompleteAfter time.Duration
	// BeforeCreate runs at the start of every Create, before anything is
	// recorded; an error it returns is Create's. Use it to inject a failure
	// or a delay (honouring ctx).
	BeforeCreate func(ctx context.Context, req worker.CreateRequest) error
	// BeforeCopy runs after the new snapshots are recorded as pending and
	// before their data is copied; an error rolls them back and is Create's.
	// Use it to hold a snapshot pending, or to fail a copy part-way.
	BeforeCopy func(ctx context.Context, snapshots []worker.Snapshot) error
}

// Driver is the fs snapshot driver.
type Driver struct {
	store   string
	opts    Options
	creates atomic.Int64
	copies  atomic.Int64
	swept   atomic.Int64
}

var _ worker.Snapshotter = (*Driver)(nil)

// New returns a driver keeping its snapshots in store, created if missing.
func New(store string) (*Driver, error) {
	return NewWithOptions(store, Options{})
}

// NewWithOptions is New with test options.
func NewWithOptions(store string, opts Options) (*Driver, error) {
	if store == "" {
		return nil, errors.New("fs: no snapshot store directory configured")
	}
	abs, err := filepath.Abs(store)
	if err != nil {
		return nil, fmt.Errorf("fs: store %s: %w", store, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("fs: store: %w", err)
	}
	// Resolved, so a volume that contains the store can skip it reliably.
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Driver{store: abs, opts: opts}, nil
}

// Store returns the store directory.
func (d *Driver) Store() string { return d.store }

// CreateCalls counts the calls of Create, for idempotency tests.
func (d *Driver) CreateCalls() int { return int(d.creates.Load()) }

// Copies counts the volumes this driver has copied into new snapshots.
func (d *Driver) Copies() int { return int(d.copies.Load()) }

// DataDir returns the directory holding the copy of snapshot id's volume.
func (d *Driver) DataDir(id string) string { return filepath.Join(d.store, id, dataDir) }

// meta is a snapshot's meta.json.
type meta struct {
	ID           string            `json:"id"`
	VolumeID     string            `json:"volume_id"`
	VolumePath   string            `json:"volume_path"`
	Node         string            `json:"node"`
	State        string            `json:"state"`
	StateMessage string            `json:"state_message,omitempty"`
	StartTime    time.Time         `json:"start_time"`
	Tags         map[string]string `json:"tags"`
	Size         int64             `json:"size"`
}

func (d *Driver) snapshot(m meta) worker.Snapshot {
	s := worker.Snapshot{
		ID: m.ID, VolumeID: m.VolumeID, State: m.State, StateMessage: m.StateMessage,
		StartTime: m.StartTime, Tags: cloneTags(m.Tags),
	}
	switch m.State {
	case worker.StateCompleted:
		s.Progress = "100%"
		if d.opts.CompleteAfter > 0 {
			elapsed := d.opts.Clock().Sub(m.StartTime)
			if elapsed < d.opts.CompleteAfter {
				s.State = worker.StatePending
				s.Progress = fmt.Sprintf("%d%%", max(0, 100*elapsed/d.opts.CompleteAfter))
			}
		}
	case worker.StatePending:
		s.Progress = "0%"
	}
	return s
}

// Find returns the snapshots carrying every tag in filter, oldest first. A
// snapshot whose copying process died is reported, and recorded, in state
// "error". Debris of interrupted operations is removed on the way.
func (d *Driver) Find(ctx context.Context, filter map[string]string) ([]worker.Snapshot, error) {
	metas, debris, err := d.scan(ctx, filter)
	if err != nil {
		return nil, err
	}
	if len(debris) > 0 {
		d.sweepUnlocked(debris)
	}
	out := make([]worker.Snapshot, 0, len(metas))
	for _, m := range metas {
		out = append(out, d.snapshot(m))
	}
	return out, nil
}

// scan reads the snapshots matching filter, and names the debris it saw:
// .deleting-* directories, and snapshot directories without meta.json.
func (d *Driver) scan(ctx context.Context, filter map[string]string) ([]meta, []string, error) {
	ents, err := os.ReadDir(d.store)
	if err != nil {
		return nil, nil, fmt.Errorf("fs: read store: %w", err)
	}
	var out []meta
	var debris []string
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if e.IsDir() && strings.HasPrefix(e.Name(), deletingPrefix) {
			debris = append(debris, e.Name())
			continue
		}
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		m, err := d.readMeta(e.Name())
		if errors.Is(err, iofs.ErrNotExist) {
			// Being recorded right now, being renamed away by a delete, or
			// left by a process killed while recording it.
			debris = append(debris, e.Name())
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if !matches(m.Tags, filter) {
			continue
		}
		if m.State == worker.StatePending {
			if m, err = d.checkOrphan(m); err != nil {
				return nil, nil, err
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartTime.Equal(out[j].StartTime) {
			return out[i].StartTime.Before(out[j].StartTime)
		}
		return out[i].ID < out[j].ID
	})
	return out, debris, nil
}

// sweepLocked removes debris; the caller holds the store lock, so a snapshot
// directory without meta.json is no snapshot being recorded.
func (d *Driver) sweepLocked(debris []string) {
	for _, name := range debris {
		p := filepath.Join(d.store, name)
		if idPattern.MatchString(name) {
			if _, err := os.Stat(filepath.Join(p, metaFile)); !errors.Is(err, iofs.ErrNotExist) {
				continue // recorded meanwhile, or unreadable: not ours to judge
			}
			if err := d.remove(name); err == nil {
				d.swept.Add(1)
			}
			continue
		}
		if err := os.RemoveAll(p); err == nil {
			d.swept.Add(1)
		}
	}
}

// sweepUnlocked removes debris when the store lock is free at once: a
// reader does not wait for a writer to clean up.
func (d *Driver) sweepUnlocked(debris []string) {
	f, err := os.OpenFile(filepath.Join(d.store, storeLock), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return
	}
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
	d.sweepLocked(debris)
}

// Swept counts the debris directories this driver removed.
func (d *Driver) Swept() int { return int(d.swept.Load()) }

func matches(tags, filter map[string]string) bool {
	for k, v := range filter {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// checkOrphan turns a pending snapshot whose copier is gone into an errored one.
func (d *Driver) checkOrphan(m meta) (meta, error) {
	f, err := os.OpenFile(filepath.Join(d.store, m.ID, copyingFile), os.O_RDWR, 0)
	if errors.Is(err, iofs.ErrNotExist) {
		return m, nil // recorded before its lock file: a copy just starting
	}
	if err != nil {
		return m, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return m, nil // the copier holds it: still copying
	}
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
	// The copier may have finished between the read and the lock.
	cur, err := d.readMeta(m.ID)
	if err != nil || cur.State != worker.StatePending {
		return cur, err
	}
	cur.State = worker.StateError
	cur.StateMessage = "copy interrupted: the process copying the volume stopped"
	return cur, d.writeMeta(cur)
}

func (d *Driver) readMeta(id string) (meta, error) {
	var m meta
	data, err := os.ReadFile(filepath.Join(d.store, id, metaFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("fs: %s: %w", filepath.Join(d.store, id, metaFile), err)
	}
	return m, nil
}

func (d *Driver) writeMeta(m meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Join(d.store, m.ID)
	tmp, err := os.CreateTemp(dir, "."+metaFile+".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, metaFile)); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}

// Create snapshots req.Volumes, each volume's directory copied to its own
// snapshot, all recorded with one StartTime: the point in time of the set.
// Like the EBS driver it is idempotent on the task tag: volumes that already
// have a snapshot carrying req.Tags[quiesce:task] are not copied again, and
// their snapshots are returned with the new ones. Every snapshot carries
// req.Tags and quiesce:managed=true from the moment it is recorded.
//
// It returns only once every copy is whole: a snapshot of the task another
// process is still copying (a delivery that stalled past its ack wait) is
// waited for, not returned pending, since the node's hard links are cleared
// once the task reports success. A copy whose process died is in error; it
// is removed and the volume copied again.
func (d *Driver) Create(ctx context.Context, req worker.CreateRequest) ([]worker.Snapshot, error) {
	d.creates.Add(1)
	task := req.Tags[messages.TagTask]
	if task == "" {
		return nil, errclass.Permanent(fmt.Errorf("fs: request carries no %s tag: refusing an untraceable snapshot", messages.TagTask))
	}
	if len(req.Volumes) == 0 {
		return nil, errclass.Permanent(fmt.Errorf("fs: task %s: no volumes to snapshot", task))
	}
	seen := map[string]bool{}
	for _, v := range req.Volumes {
		if err := messages.ValidateTarget("volume", v.ID); err != nil {
			return nil, errclass.Permanent(fmt.Errorf("fs: %w", err))
		}
		if seen[v.ID] {
			return nil, errclass.Permanent(fmt.Errorf("fs: volume %s listed twice", v.ID))
		}
		seen[v.ID] = true
		if v.Path == "" || !filepath.IsAbs(v.Path) {
			return nil, errclass.Permanent(fmt.Errorf("fs: volume %s: path %q is not an absolute directory", v.ID, v.Path))
		}
		st, err := os.Stat(v.Path)
		if err != nil {
			return nil, errclass.Permanent(fmt.Errorf("fs: volume %s: %w", v.ID, err))
		}
		if !st.IsDir() {
			return nil, errclass.Permanent(fmt.Errorf("fs: volume %s: %s is not a directory", v.ID, v.Path))
		}
	}
	if d.opts.BeforeCreate != nil {
		if err := d.opts.BeforeCreate(ctx, req); err != nil {
			return nil, err
		}
	}

	var (
		existing []worker.Snapshot
		created  []meta
		locks    []*os.File
	)
	for {
		var copying []string
		var err error
		existing, created, locks, copying, err = d.record(ctx, req)
		if err != nil {
			return nil, err
		}
		if len(copying) == 0 {
			break
		}
		for _, id := range copying {
			if err := d.waitCopy(ctx, id); err != nil {
				return nil, err
			}
		}
	}
	if len(created) == 0 {
		return existing, nil
	}
	defer func() {
		for _, f := range locks {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			_ = f.Close()
		}
	}()
	rollback := func(cause error) ([]worker.Snapshot, error) {
		for _, m := range created {
			_ = d.remove(m.ID)
		}
		return nil, cause
	}
	if d.opts.BeforeCopy != nil {
		snaps := make([]worker.Snapshot, len(created))
		for i, m := range created {
			snaps[i] = d.snapshot(m)
		}
		if err := d.opts.BeforeCopy(ctx, snaps); err != nil {
			return rollback(err)
		}
	}
	for i, m := range created {
		size, err := copyTree(ctx.Err, m.VolumePath, filepath.Join(d.store, m.ID, dataDir), d.store)
		if err != nil {
			return rollback(fmt.Errorf("fs: snapshot of volume %s: %w", m.VolumeID, err))
		}
		created[i].Size = size
	}
	out := existing
	for _, m := range created {
		m.State = worker.StateCompleted
		if err := d.writeMeta(m); err != nil {
			return rollback(err)
		}
		d.copies.Add(1)
		out = append(out, d.snapshot(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VolumeID < out[j].VolumeID })
	return out, nil
}

// record, under the store lock, finds the task's snapshots and records a
// pending snapshot for every volume without one, holding each one's copy
// lock. Errored snapshots of the task (a copier that died) are replaced.
// When another process is still copying one of the task's snapshots it
// records nothing and names those snapshots in copying, to be waited for.
// req.Fence is asked right before anything is recorded.
func (d *Driver) record(ctx context.Context, req worker.CreateRequest) (existing []worker.Snapshot, created []meta, locks []*os.File, copying []string, err error) {
	unlock, err := lockFile(ctx, filepath.Join(d.store, storeLock))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer unlock()
	found, debris, err := d.scan(ctx, map[string]string{messages.TagTask: req.Tags[messages.TagTask]})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	d.sweepLocked(debris)
	have := map[string]bool{}
	for _, m := range found {
		switch m.State {
		case worker.StateError:
			if err := d.remove(m.ID); err != nil {
				return nil, nil, nil, nil, err
			}
			continue
		case worker.StatePending:
			// scan checked its copier: alive, or it would be in error. A
			// pending snapshot without a copy lock file cannot be one being
			// recorded (that happens under this lock), so it is debris.
			if _, err := os.Stat(filepath.Join(d.store, m.ID, copyingFile)); errors.Is(err, iofs.ErrNotExist) {
				if err := d.remove(m.ID); err != nil {
					return nil, nil, nil, nil, err
				}
				continue
			}
			copying = append(copying, m.ID)
		}
		have[m.VolumeID] = true
		existing = append(existing, d.snapshot(m))
	}
	if len(copying) > 0 {
		return nil, nil, nil, copying, nil
	}
	var missing []messages.Volume
	for _, v := range req.Volumes {
		if !have[v.ID] {
			missing = append(missing, v)
		}
	}
	if len(missing) == 0 {
		return existing, nil, nil, nil, nil
	}
	if req.Fence != nil {
		if err := req.Fence(ctx); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	tags := cloneTags(req.Tags)
	tags[messages.TagManaged] = "true"
	start := d.opts.Clock().UTC()
	fail := func(err error) ([]worker.Snapshot, []meta, []*os.File, []string, error) {
		for _, f := range locks {
			_ = f.Close()
		}
		for _, m := range created {
			_ = d.remove(m.ID)
		}
		return nil, nil, nil, nil, err
	}
	for _, v := range missing {
		id, err := d.newID()
		if err != nil {
			return fail(err)
		}
		m := meta{
			ID: id, VolumeID: v.ID, VolumePath: v.Path, Node: req.Node.Name,
			State: worker.StatePending, StartTime: start, Tags: tags,
		}
		created = append(created, m)
		f, err := os.OpenFile(filepath.Join(d.store, id, copyingFile), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return fail(err)
		}
		locks = append(locks, f)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			return fail(err)
		}
		if err := d.writeMeta(m); err != nil {
			return fail(err)
		}
	}
	return existing, created, locks, nil, nil
}

// waitCopy waits until no process holds snapshot id's copy lock: its copy
// finished, failed, or its process died.
func (d *Driver) waitCopy(ctx context.Context, id string) error {
	wait := time.Millisecond
	for {
		f, err := os.OpenFile(filepath.Join(d.store, id, copyingFile), os.O_RDWR, 0)
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // removed: rolled back or deleted
		}
		if err != nil {
			return err
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		}
		_ = f.Close()
		if err == nil {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// newID makes a fresh snapshot directory under a new random ID.
func (d *Driver) newID() (string, error) {
	for range 10 {
		b := make([]byte, 9)
		if _, err := io.ReadFull(rand.Reader, b); err != nil {
			return "", err
		}
		id := "snap-" + hex.EncodeToString(b)[:17]
		err := os.Mkdir(filepath.Join(d.store, id), 0o755)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, iofs.ErrExist) {
			return "", err
		}
	}
	return "", errors.New("fs: could not draw an unused snapshot ID")
}

// remove deletes a snapshot directory, first renaming it so no reader sees a
// half-removed snapshot.
func (d *Driver) remove(id string) error {
	trash := filepath.Join(d.store, deletingPrefix+id+"-"+randomHex(4))
	if err := os.Rename(filepath.Join(d.store, id), trash); err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(trash)
}

// Delete deletes a snapshot carrying quiesce:managed=true. A snapshot already
// gone is success; one without the tag is worker.ErrNotManaged; one still
// being copied is worker.ErrSnapshotInUse.
func (d *Driver) Delete(ctx context.Context, snapshotID string) error {
	if !idPattern.MatchString(snapshotID) {
		return errclass.Permanent(fmt.Errorf("fs: %q is not a snapshot ID", snapshotID))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m, err := d.readMeta(snapshotID)
	if errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("fs: delete %s: %w", snapshotID, worker.ErrSnapshotGone)
	}
	if err != nil {
		return err
	}
	if m.Tags[messages.TagManaged] != "true" {
		return errclass.Permanent(fmt.Errorf("fs: delete %s: %w", snapshotID, worker.ErrNotManaged))
	}
	if m.State == worker.StatePending {
		if m, err = d.checkOrphan(m); err != nil {
			return err
		}
		if m.State == worker.StatePending {
			return fmt.Errorf("fs: delete %s: %w: its copy is in progress", snapshotID, worker.ErrSnapshotInUse)
		}
	}
	if err := d.remove(snapshotID); err != nil {
		return fmt.Errorf("fs: delete %s: %w", snapshotID, err)
	}
	return nil
}

// Get returns one snapshot; a missing one is an error wrapping os.ErrNotExist.
func (d *Driver) Get(ctx context.Context, snapshotID string) (worker.Snapshot, error) {
	if !idPattern.MatchString(snapshotID) {
		return worker.Snapshot{}, errclass.Permanent(fmt.Errorf("fs: %q is not a snapshot ID", snapshotID))
	}
	if err := ctx.Err(); err != nil {
		return worker.Snapshot{}, err
	}
	m, err := d.readMeta(snapshotID)
	if err != nil {
		return worker.Snapshot{}, fmt.Errorf("fs: snapshot %s: %w", snapshotID, err)
	}
	if m.State == worker.StatePending {
		if m, err = d.checkOrphan(m); err != nil {
			return worker.Snapshot{}, err
		}
	}
	return d.snapshot(m), nil
}

// Restore copies completed snapshot snapshotID's volume into dst, which must
// not exist or be empty: what restoring an EBS snapshot to a new volume is.
func (d *Driver) Restore(snapshotID, dst string) error {
	return d.restore(func() error { return nil }, snapshotID, dst)
}

// RestoreContext is Restore that stops when ctx ends.
func (d *Driver) RestoreContext(ctx context.Context, snapshotID, dst string) error {
	return d.restore(ctx.Err, snapshotID, dst)
}

func (d *Driver) restore(alive func() error, snapshotID, dst string) error {
	if !idPattern.MatchString(snapshotID) {
		return fmt.Errorf("fs: %q is not a snapshot ID", snapshotID)
	}
	m, err := d.readMeta(snapshotID)
	if err != nil {
		return fmt.Errorf("fs: restore %s: %w", snapshotID, err)
	}
	if m.State != worker.StateCompleted {
		return fmt.Errorf("fs: restore %s: snapshot is %s", snapshotID, m.State)
	}
	if ents, err := os.ReadDir(dst); err == nil && len(ents) > 0 {
		return fmt.Errorf("fs: restore %s: %s is not empty", snapshotID, dst)
	} else if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("fs: restore %s: %w", snapshotID, err)
	}
	if _, err := copyTree(alive, filepath.Join(d.store, snapshotID, dataDir), dst, ""); err != nil {
		return fmt.Errorf("fs: restore %s: %w", snapshotID, err)
	}
	return nil
}

// copyTree copies the directories, regular files and symbolic links under src
// to dst, which it creates. Files hard-linked together in src become
// independent copies; sockets, devices and pipes are skipped, and so is skip
// (the store, when a volume contains it). It stops with alive's error once
// alive returns one. It returns the bytes copied.
func copyTree(alive func() error, src, dst, skip string) (int64, error) {
	root, err := filepath.EvalSymlinks(src)
	if err != nil {
		return 0, err
	}
	var total int64
	err = filepath.WalkDir(root, func(p string, e iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := alive(); err != nil {
			return err
		}
		if skip != "" && p == skip {
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil // removed while we walked (a cleared snapshot, a compaction)
			}
			return err
		}
		switch {
		case info.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode().IsRegular():
			n, err := copyFile(p, target, info)
			if errors.Is(err, iofs.ErrNotExist) {
				return nil
			}
			total += n
			return err
		case info.Mode()&iofs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			return nil
		}
	})
	if err != nil {
		return total, err
	}
	// Directory times last: writing into a directory changes its mtime.
	err = filepath.WalkDir(dst, func(p string, e iofs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		if st, err := os.Stat(filepath.Join(root, rel)); err == nil {
			_ = os.Chtimes(p, st.ModTime(), st.ModTime())
		}
		return nil
	})
	return total, err
}

func copyFile(src, dst string, info iofs.FileInfo) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm()|0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	_ = os.Chmod(dst, info.Mode().Perm())
	_ = os.Chtimes(dst, info.ModTime(), info.ModTime())
	return n, nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can stop the wait.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	wait := 200 * time.Microsecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			_ = f.Close()
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = f.Close()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
		wait = min(2*wait, 10*time.Millisecond)
	}
}

func cloneTags(in map[string]string) map[string]string {
	out := make(map[string]string, len(in)+1)
	for k, v := range in {
		out[k] = v
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}
