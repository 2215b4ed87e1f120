package pace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Key names one shared bucket: an account's budget for one operation in one
// region.
type Key struct {
	// Account is the AWS account ID, or a name standing for the account of
	// the default credentials.
	Account string
	Region  string
	// Op is the API operation ("CreateSnapshots").
	Op string
}

// String is the key's name in the key-value bucket: account.region.op.
func (k Key) String() string { return k.Account + "." + k.Region + "." + k.Op }

var keyPart = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate reports a key that cannot name a bucket: every part is required,
// of letters, digits, '-' and '_'.
func (k Key) Validate() error {
	for _, p := range []struct{ name, v string }{{"account", k.Account}, {"region", k.Region}, {"operation", k.Op}} {
		if !keyPart.MatchString(p.v) {
			return fmt.Errorf("pace: %s %q: want 1 to 64 letters, digits, '-' or '_'", p.name, p.v)
		}
	}
	return nil
}

// Limit is a provider's token bucket for one key.
type Limit struct {
	// Rate is how many tokens the bucket gains per second: the sustained
	// calls per second. Zero or less leaves the key unpaced.
	Rate float64
	// Burst is the bucket's size: the most calls at once after a pause.
	Burst int
}

// Clock is the time a Pacer reads and sleeps on.
type Clock interface {
	Now() time.Time
	// Sleep waits for d of this clock's time, or until ctx ends (then it
	// returns ctx's cause).
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// Sleep waits for d or until ctx ends.
func (SystemClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Store is what a Pacer needs of a JetStream key-value bucket.
type Store interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

var _ Store = jetstream.KeyValue(nil)

// State is a shared bucket as one process last saw it.
type State struct {
	// Tokens in the bucket now; below zero, as many calls hold slots
	// reserved ahead.
	Tokens float64
	// Rate is the calls per second allowed now: the limit's rate, or less
	// after throttles.
	Rate  float64
	Limit Limit
}

// Observer receives a Pacer's measurements; observability implements it
// with Prometheus. Keys are bounded: accounts and regions of the
// configuration, operations of the API.
type Observer interface {
	// Waited: a call was let through d after it asked.
	Waited(key Key, d time.Duration)
	// Throttled: the provider refused a call for its rate anyway.
	Throttled(key Key)
	// Changed: the shared bucket after this process changed it.
	Changed(key Key, s State)
}

// NopObserver discards every measurement.
type NopObserver struct{}

var _ Observer = NopObserver{}

func (NopObserver) Waited(Key, time.Duration) {}
func (NopObserver) Throttled(Key)             {}
func (NopObserver) Changed(Key, State)        {}

// Options tune a Pacer. Zero values take the defaults in comments.
type Options struct {
	// Limit gives each key's limit. Required.
	Limit func(Key) Limit
	// Clock is the time paced by (default the system clock).
	Clock    Clock
	Observer Observer
	// MaxBatch is the most slots one compare-and-set reserves for a
	// process's waiting calls (default 16).
	MaxBatch int
	// MaxAhead is how far ahead of now a slot may be reserved (default
	// 10s): it bounds what a process that dies holding reservations
	// strands, and how long a call waits before it holds a slot.
	MaxAhead time.Duration
	// Headroom is the part of the burst left unused (default 0.1), so
	// that calls reaching the provider late do not overrun its bucket
	// together with punctual ones.
	Headroom float64
	// Decrease multiplies the rate on a throttle (default 0.7).
	Decrease float64
	// Cooldown is the least time between two decreases (default 2s):
	// throttles of calls already under way when the rate was cut do not
	// cut it again.
	Cooldown time.Duration
	// Increase is the part of the limit's rate the rate grows by (default
	// 0.1) every IncreaseEvery (default 5s) without a throttle.
	Increase      float64
	IncreaseEvery time.Duration
	// MinRate is the lowest rate, as a part of the limit's (default 0.05).
	MinRate float64
	// StoreTimeout bounds one read or compare-and-set of the shared state
	// (default 5s of real time).
	StoreTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 16
	}
	if o.MaxAhead <= 0 {
		o.MaxAhead = 10 * time.Second
	}
	if o.Headroom <= 0 || o.Headroom >= 1 {
		o.Headroom = 0.1
	}
	if o.Decrease <= 0 || o.Decrease >= 1 {
		o.Decrease = 0.7
	}
	if o.Cooldown <= 0 {
		o.Cooldown = 2 * time.Second
	}
	if o.Increase <= 0 {
		o.Increase = 0.1
	}
	if o.IncreaseEvery <= 0 {
		o.IncreaseEvery = 5 * time.Second
	}
	if o.MinRate <= 0 || o.MinRate > 1 {
		o.MinRate = 0.05
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 5 * time.Second
	}
	return o
}

// Pacer paces calls by shared buckets. It is safe for concurrent use; one
// per process is enough, and any number of processes may share a Store.
type Pacer struct {
	store Store
	opts  Options

	mu      sync.Mutex
	buckets map[Key]*bucket
}

// New returns a Pacer over store (messages.BucketPace in production).
func New(store Store, opts Options) (*Pacer, error) {
	if store == nil {
		return nil, errors.New("pace: no store")
	}
	if opts.Limit == nil {
		return nil, errors.New("pace: no limits")
	}
	return &Pacer{store: store, opts: opts.withDefaults(), buckets: map[Key]*bucket{}}, nil
}

// bucket is one key's local side: the calls of this process waiting for a
// slot, and the shared state as last seen.
type bucket struct {
	key Key

	mu sync.Mutex
	// queue holds this process's calls waiting for a slot, the earliest
	// deadline first, then the oldest.
	queue []*waiter
	seq   uint64
	// busy is set while one of them, the lead, reserves slots for the
	// queue; the others sleep until they are given a slot or the lead.
	busy bool
	// st and rev are the shared state and its revision as last read or
	// written; rev 0 means unknown.
	st  state
	rev uint64
}

type waiter struct {
	// deadline is the call's context deadline (math.MaxInt64 for none),
	// seq its arrival: the queue is ordered by both.
	deadline int64
	seq      uint64
	slot     int64
	assigned bool
	// lead is set on the one waiter that reserves for the queue.
	lead bool
	// ready is closed when the waiter is first assigned or made lead:
	// each wake-up is one waiter's, never the whole queue's.
	ready    chan struct{}
	signaled bool
}

func (w *waiter) signal() {
	if !w.signaled {
		w.signaled = true
		close(w.ready)
	}
}

// handOff makes the oldest waiting call the lead, or leaves the bucket
// idle. The caller holds b.mu.
func (b *bucket) handOff() {
	if len(b.queue) == 0 {
		b.busy = false
		return
	}
	b.queue[0].lead = true
	b.queue[0].signal()
}

func (p *Pacer) bucket(k Key) *bucket {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.buckets[k]
	if !ok {
		b = &bucket{key: k}
		p.buckets[k] = b
	}
	return b
}

// Wait returns when a call of key may go: at once while the shared bucket
// has tokens, else at the slot it reserved. It returns ctx's cause if ctx
// ends first (a slot it held is given back), and an error if the shared
// state cannot be read or written.
func (p *Pacer) Wait(ctx context.Context, key Key) error {
	if err := key.Validate(); err != nil {
		return err
	}
	if lim := p.opts.Limit(key); lim.Rate <= 0 {
		return nil
	}
	b := p.bucket(key)
	start := p.opts.Clock.Now()
	for attempt := 1; ; attempt++ {
		slot, err := p.slot(ctx, b)
		if err != nil {
			return err
		}
		if d := time.Duration(slot - p.opts.Clock.Now().UnixNano()); d > 0 {
			if err := p.opts.Clock.Sleep(ctx, d); err != nil {
				p.refund(ctx, b, 1)
				return err
			}
		}
		// A call that goes much later than its slot (its process stalled)
		// would reach the provider together with the calls of the slots
		// after it: it takes a new slot instead, behind them, at most
		// twice.
		if late := p.opts.Clock.Now().UnixNano() - slot; late <= p.lateness(key) || attempt == 3 {
			break
		}
	}
	p.opts.Observer.Waited(key, p.opts.Clock.Now().Sub(start))
	return nil
}

// lateness is how long after its slot a call may still go: the time the
// headroom's tokens take to refill.
func (p *Pacer) lateness(key Key) int64 {
	lim := p.opts.Limit(key)
	interval, _ := p.shape(lim, lim.Rate)
	return int64(max(1, math.Ceil(float64(lim.Burst)*p.opts.Headroom)) * interval)
}

// slot queues the call and returns the slot it was given.
func (p *Pacer) slot(ctx context.Context, b *bucket) (int64, error) {
	w := &waiter{ready: make(chan struct{}), deadline: math.MaxInt64}
	if d, ok := ctx.Deadline(); ok {
		w.deadline = d.UnixNano()
	}
	b.mu.Lock()
	b.seq++
	w.seq = b.seq
	b.insert(w)
	if !b.busy {
		b.busy, w.lead = true, true
	}
	for !w.assigned {
		if !w.lead {
			b.mu.Unlock()
			select {
			case <-w.ready:
			case <-ctx.Done():
			}
			b.mu.Lock()
			if !w.assigned && !w.lead && ctx.Err() != nil {
				b.remove(w)
				b.mu.Unlock()
				return 0, context.Cause(ctx)
			}
			continue
		}
		n := min(len(b.queue), p.opts.MaxBatch)
		b.mu.Unlock()
		err := p.fill(ctx, b, n)
		b.mu.Lock()
		if err != nil && !w.assigned {
			b.remove(w)
			w.lead = false
			b.handOff()
			b.mu.Unlock()
			return 0, err
		}
	}
	if w.lead {
		w.lead = false
		b.handOff()
	}
	b.mu.Unlock()
	return w.slot, nil
}

// insert queues w before every call due later: the calls of a process go
// earliest deadline first (a task's deadline is its job's phase deadline,
// so the jobs whose barrier opened first go first, and a job with less time
// left goes before them), the same deadline in arrival order. The caller
// holds b.mu.
func (b *bucket) insert(w *waiter) {
	i := sort.Search(len(b.queue), func(i int) bool {
		q := b.queue[i]
		return q.deadline > w.deadline || (q.deadline == w.deadline && q.seq > w.seq)
	})
	b.queue = slices.Insert(b.queue, i, w)
}

func (b *bucket) remove(w *waiter) {
	for i, x := range b.queue {
		if x == w {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			return
		}
	}
}

// fill reserves up to n slots and hands them to the oldest waiting calls.
// When none can be reserved within MaxAhead it sleeps until one can, unless
// every call left meanwhile.
func (p *Pacer) fill(ctx context.Context, b *bucket, n int) error {
	for {
		slots, retryAt, err := p.reserve(ctx, b, n)
		if err != nil {
			return err
		}
		if len(slots) > 0 {
			b.mu.Lock()
			k := min(len(slots), len(b.queue))
			for i, w := range b.queue[:k] {
				w.slot, w.assigned = slots[i], true
				w.signal()
			}
			b.queue = append(b.queue[:0], b.queue[k:]...)
			b.mu.Unlock()
			if surplus := len(slots) - k; surplus > 0 {
				// Calls left while their slots were reserved.
				p.refund(ctx, b, surplus)
			}
			return nil
		}
		b.mu.Lock()
		waiting := len(b.queue)
		b.mu.Unlock()
		if waiting == 0 {
			return nil
		}
		if err := p.opts.Clock.Sleep(ctx, time.Duration(retryAt-p.opts.Clock.Now().UnixNano())); err != nil {
			return err
		}
	}
}

// state is the shared bucket as stored, times in Unix nanoseconds.
type state struct {
	// TAT is the theoretical arrival time of the next call (GCRA).
	TAT int64 `json:"tat"`
	// Rate is the calls per second allowed while below the limit's rate;
	// zero means the limit's.
	Rate float64 `json:"rate,omitempty"`
	// Cut is when the rate was last decreased, Up when it last grew back.
	Cut int64 `json:"cut,omitempty"`
	Up  int64 `json:"up,omitempty"`
}

// rate is the calls per second allowed now under lim, after growing back
// for the time without throttles since it was last changed.
func (p *Pacer) rate(s *state, lim Limit, now int64) float64 {
	if s.Rate <= 0 || s.Rate >= lim.Rate {
		s.Rate = 0
		return lim.Rate
	}
	every := int64(p.opts.IncreaseEvery)
	since := max(s.Cut, s.Up)
	if steps := (now - since) / every; steps > 0 {
		s.Rate += float64(steps) * lim.Rate * p.opts.Increase
		s.Up = since + steps*every
		if s.Rate >= lim.Rate {
			s.Rate = 0
			return lim.Rate
		}
	}
	return s.Rate
}

// shape returns the emission interval and the burst tolerance, in
// nanoseconds, of rate under lim.
func (p *Pacer) shape(lim Limit, rate float64) (interval, tolerance float64) {
	interval = 1e9 / rate
	burst := math.Floor(float64(lim.Burst) * (1 - p.opts.Headroom))
	return interval, max(burst-1, 0) * interval
}

// take reserves up to n slots on s at now, the earliest first. With none
// reservable within MaxAhead it returns when to try again.
func (p *Pacer) take(s *state, lim Limit, now int64, n int) (slots []int64, retryAt int64) {
	interval, tolerance := p.shape(lim, p.rate(s, lim, now))
	ahead := now + int64(p.opts.MaxAhead)
	for range n {
		slot := max(now, s.TAT-int64(tolerance))
		if slot > ahead {
			if len(slots) == 0 {
				retryAt = slot - int64(p.opts.MaxAhead)
			}
			break
		}
		slots = append(slots, slot)
		s.TAT = max(s.TAT, now) + int64(interval)
	}
	return slots, retryAt
}

// view is what an Observer and Peek see of s at now.
func (p *Pacer) view(s state, lim Limit, now int64) State {
	rate := p.rate(&s, lim, now)
	interval, tolerance := p.shape(lim, rate)
	burst := tolerance/interval + 1
	return State{Tokens: min(burst, (float64(now-s.TAT)+tolerance)/interval+1), Rate: rate, Limit: lim}
}

// reserve takes up to n slots by compare-and-set.
func (p *Pacer) reserve(ctx context.Context, b *bucket, n int) (slots []int64, retryAt int64, err error) {
	lim := p.opts.Limit(b.key)
	err = p.change(ctx, b, func(s *state, now int64) bool {
		slots, retryAt = p.take(s, lim, now, n)
		return len(slots) > 0
	})
	return slots, retryAt, err
}

// Throttled reports that the provider refused a call of key for its rate
// although the pacer let it go: the shared rate is cut (at most once per
// Cooldown) and the bucket counted empty. An error reaching the shared
// state is returned; the call's own error matters more to the caller.
func (p *Pacer) Throttled(ctx context.Context, key Key) error {
	if err := key.Validate(); err != nil {
		return err
	}
	p.opts.Observer.Throttled(key)
	lim := p.opts.Limit(key)
	if lim.Rate <= 0 {
		return nil
	}
	return p.change(ctx, p.bucket(key), func(s *state, now int64) bool {
		if s.Cut != 0 && now-s.Cut < int64(p.opts.Cooldown) {
			return false
		}
		rate := max(p.rate(s, lim, now)*p.opts.Decrease, lim.Rate*p.opts.MinRate)
		s.Rate, s.Cut = rate, now
		interval, tolerance := p.shape(lim, rate)
		s.TAT = max(s.TAT, now+int64(tolerance+interval))
		return true
	})
}

// refund gives back n slots reserved but not used, so that later calls may
// take them. It is best effort: a slot already past is not given back.
func (p *Pacer) refund(ctx context.Context, b *bucket, n int) {
	lim := p.opts.Limit(b.key)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.StoreTimeout)
	defer cancel()
	_ = p.change(ctx, b, func(s *state, now int64) bool {
		if s.TAT <= now {
			return false
		}
		interval, _ := p.shape(lim, p.rate(s, lim, now))
		s.TAT = max(now, s.TAT-int64(float64(n)*interval))
		return true
	})
}

// Peek returns key's shared bucket as it is now, without changing it.
func (p *Pacer) Peek(ctx context.Context, key Key) (State, error) {
	if err := key.Validate(); err != nil {
		return State{}, err
	}
	lim := p.opts.Limit(key)
	s, _, err := p.load(ctx, key)
	if err != nil {
		return State{}, err
	}
	return p.view(s, lim, p.opts.Clock.Now().UnixNano()), nil
}

// errConflict is a compare-and-set that lost to another process.
var errConflict = errors.New("pace: revision conflict")

// change applies f to the shared state by compare-and-set until it wins or
// f declines. It starts from the state this process last saw, which saves
// a read whenever no other process changed it since.
func (p *Pacer) change(ctx context.Context, b *bucket, f func(s *state, now int64) bool) error {
	lim := p.opts.Limit(b.key)
	for {
		b.mu.Lock()
		s, rev := b.st, b.rev
		b.mu.Unlock()
		if rev == 0 {
			var err error
			if s, rev, err = p.load(ctx, b.key); err != nil {
				return err
			}
		}
		now := p.opts.Clock.Now().UnixNano()
		if !f(&s, now) {
			b.mu.Lock()
			b.st, b.rev = s, rev
			b.mu.Unlock()
			return nil
		}
		next, err := p.store1(ctx, b.key, s, rev)
		if errors.Is(err, errConflict) {
			b.mu.Lock()
			b.rev = 0
			b.mu.Unlock()
			// Another process changed the state: read it again after a
			// moment, so that processes colliding do not collide again.
			if err := (SystemClock{}).Sleep(ctx, time.Duration(rand.Int64N(int64(time.Millisecond)))); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		b.mu.Lock()
		b.st, b.rev = s, next
		b.mu.Unlock()
		p.opts.Observer.Changed(b.key, p.view(s, lim, now))
		return nil
	}
}

// load reads key's state; a key never written is a full bucket, revision 0.
func (p *Pacer) load(ctx context.Context, key Key) (state, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.StoreTimeout)
	defer cancel()
	e, err := p.store.Get(ctx, key.String())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return state{}, 0, nil
	}
	if err != nil {
		return state{}, 0, fmt.Errorf("pace: read %s: %w", key, err)
	}
	var s state
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		// A value this release cannot read is replaced, not obeyed: a full
		// bucket costs at most one burst of throttles.
		return state{}, e.Revision(), nil
	}
	return s, e.Revision(), nil
}

// store1 writes s over revision rev (0: the key must not exist yet).
func (p *Pacer) store1(ctx context.Context, key Key, s state, rev uint64) (uint64, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.StoreTimeout)
	defer cancel()
	var next uint64
	if rev == 0 {
		next, err = p.store.Create(ctx, key.String(), data)
	} else {
		next, err = p.store.Update(ctx, key.String(), data, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, errConflict
	case err != nil:
		return 0, fmt.Errorf("pace: write %s: %w", key, err)
	}
	return next, nil
}
