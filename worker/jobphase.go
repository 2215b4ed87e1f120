package worker

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// recordGetter reads a job's record; jetstream.KeyValue is one.
type recordGetter interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
}

// phaseReads shares reads of job records among the tasks of one job that
// ask for its phase at once: a job of thousands of nodes has as many tasks
// in flight, each asking, and its record is large. A task never takes an
// answer older than its question: it takes only the answer of a read that
// began after it asked, so what it learns is as current as a read of its
// own would be. At most one read per job is under way at a time; the tasks
// that ask meanwhile share the next one.
type phaseReads struct {
	mu   sync.Mutex
	jobs map[string]*jobReads
}

// jobReads is the state of one job's reads, kept while a task asks.
type jobReads struct {
	waiting int
	// started numbers the reads begun; the one under way, if any, is
	// number started.
	started uint64
	running *phaseRead
	// last is the newest finished read with an answer to share.
	last *phaseRead
}

type phaseRead struct {
	seq   uint64
	done  chan struct{}
	phase messages.Phase
	// shared is set when the read ended with an answer any task may take:
	// the phase, or "" for a record that is missing, unreadable or whose
	// read the server refused. A read cut short by its own task's context
	// is no answer for the others, which then read again.
	shared bool
}

// phase returns the phase of the job's record, from a read that began
// after the call; "" when it cannot be read or ctx ends first.
func (p *phaseReads) phase(ctx context.Context, kv recordGetter, jobID string) messages.Phase {
	p.mu.Lock()
	if p.jobs == nil {
		p.jobs = map[string]*jobReads{}
	}
	st := p.jobs[jobID]
	if st == nil {
		st = &jobReads{}
		p.jobs[jobID] = st
	}
	st.waiting++
	// Only a read numbered above this one began after the question.
	after := st.started
	defer func() {
		p.mu.Lock()
		st.waiting--
		if st.waiting == 0 {
			delete(p.jobs, jobID)
		}
		p.mu.Unlock()
	}()
	for {
		if st.last != nil && st.last.seq > after {
			ph := st.last.phase
			p.mu.Unlock()
			return ph
		}
		if r := st.running; r != nil {
			p.mu.Unlock()
			select {
			case <-r.done:
			case <-ctx.Done():
				return ""
			}
			p.mu.Lock()
			continue
		}
		st.started++
		r := &phaseRead{seq: st.started, done: make(chan struct{})}
		st.running = r
		p.mu.Unlock()

		r.phase, r.shared = readPhase(ctx, kv, jobID)

		p.mu.Lock()
		st.running = nil
		if r.shared && (st.last == nil || r.seq > st.last.seq) {
			st.last = r
		}
		close(r.done)
		p.mu.Unlock()
		return r.phase
	}
}

// readPhase reads the job's record and decodes its phase. shared is false
// when ctx ended the read: the caller's own limit, not the record's state.
func readPhase(ctx context.Context, kv recordGetter, jobID string) (phase messages.Phase, shared bool) {
	e, err := kv.Get(ctx, jobID)
	if err != nil {
		return "", ctx.Err() == nil
	}
	// Only the phase is needed; decoding the whole record (failures,
	// progress, phase times) for every task showed in profiles.
	var j struct {
		Phase messages.Phase `json:"phase"`
	}
	if json.Unmarshal(e.Value(), &j) != nil {
		return "", true
	}
	return j.Phase, true
}
