package topology

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// Presence keeps one process's entry in the replicas bucket alive: it puts
// the entry at start, refreshes it well within the bucket's TTL, and deletes
// it at Stop, so the entries in the bucket are the processes running now. A
// process that dies leaves an entry that expires within the TTL.
type Presence struct {
	kv       jetstream.KeyValue
	replica  messages.Replica
	data     []byte
	interval time.Duration

	mu      sync.Mutex
	lastErr error
	stop    context.CancelFunc
	done    chan struct{}
}

var keyUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// NewReplicaID returns a key for a process named name: its name made safe
// for a KV key, and a random suffix, so two processes given one name (a
// configuration copied to two hosts) keep two entries.
func NewReplicaID(name string) string {
	base := keyUnsafe.ReplaceAllString(name, "_")
	if len(base) > 64 {
		base = base[:64]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return base + "-" + hex.EncodeToString(b[:])
}

// StartPresence puts r (its ID set by NewReplicaID when empty) in the
// replicas bucket and refreshes it every ttl/3 until Stop. The first put
// happens before StartPresence returns, so a planner started next already
// counts this process among the replicas; its error is returned, and the
// refreshes go on retrying (LastError).
func StartPresence(ctx context.Context, kv jetstream.KeyValue, r messages.Replica, ttl time.Duration) (*Presence, error) {
	if kv == nil {
		return nil, errors.New("replicas bucket missing: run `quiesce topology` with this release")
	}
	if ttl <= 0 {
		ttl = DefaultReplicaTTL
	}
	r.Schema = messages.ReplicaSchema
	if r.ID == "" {
		r.ID = NewReplicaID(r.Name)
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now().UTC()
	}
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	p := &Presence{kv: kv, replica: r, data: data, interval: ttl / 3, done: make(chan struct{})}
	err = p.put(ctx)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.stop = cancel
	go p.loop(runCtx)
	return p, err
}

// Replica is the entry this presence keeps.
func (p *Presence) Replica() messages.Replica { return p.replica }

// LastError is the error of the latest refresh, nil when it succeeded.
func (p *Presence) LastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

func (p *Presence) put(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, p.interval)
	defer cancel()
	_, err := p.kv.Put(pctx, p.replica.ID, p.data)
	if err != nil {
		err = fmt.Errorf("announce replica %s: %w", p.replica.ID, err)
	}
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
	return err
}

func (p *Presence) loop(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = p.put(ctx)
		}
	}
}

// Stop ends the refreshes and deletes the entry, so the other replicas stop
// counting this process at once rather than when its entry expires.
func (p *Presence) Stop(ctx context.Context) error {
	p.stop()
	<-p.done
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return p.kv.Delete(dctx, p.replica.ID)
}

// LiveReplicas lists the replicas whose entries are alive, by ID. An entry
// that cannot be read as a Replica is skipped: a later release may write
// more than this one reads.
func LiveReplicas(ctx context.Context, kv jetstream.KeyValue) ([]messages.Replica, error) {
	if kv == nil {
		return nil, errors.New("replicas bucket missing: run `quiesce topology` with this release")
	}
	keys, err := replicaKeys(ctx, kv)
	if err != nil {
		return nil, err
	}
	var out []messages.Replica
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var r messages.Replica
		if json.Unmarshal(e.Value(), &r) != nil || r.Schema != messages.ReplicaSchema {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// listAttempt bounds one listing of the replicas' keys.
const listAttempt = 2 * time.Second

// replicaKeys lists the bucket's keys. A key listing is a watch that ends
// when every entry present at its start was delivered; an entry that expires
// (its TTL) before delivery is never delivered, and the listing would wait
// for ever. So each attempt is bounded, and one cut short is tried again.
func replicaKeys(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	var lastErr error
	for range 3 {
		lctx, cancel := context.WithTimeout(ctx, listAttempt)
		lister, err := kv.ListKeys(lctx)
		if err != nil {
			cancel()
			if errors.Is(err, jetstream.ErrNoKeysFound) {
				return nil, nil
			}
			return nil, err
		}
		var keys []string
		for k := range lister.Keys() {
			keys = append(keys, k)
		}
		cut := lctx.Err()
		_ = lister.Stop()
		cancel()
		if cut == nil {
			sort.Strings(keys)
			return keys, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		lastErr = fmt.Errorf("list the replicas: %w", cut)
	}
	return nil, lastErr
}
