package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// heldRecords answers each Get with the phase the record had when the Get
// began, once the test releases it.
type heldRecords struct {
	mu    sync.Mutex
	phase messages.Phase
	begun chan chan struct{} // one per Get: close it to answer
	gets  int
}

func newHeldRecords(p messages.Phase) *heldRecords {
	return &heldRecords{phase: p, begun: make(chan chan struct{}, 100)}
}

func (h *heldRecords) set(p messages.Phase) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.phase = p
}

func (h *heldRecords) Get(ctx context.Context, _ string) (jetstream.KeyValueEntry, error) {
	h.mu.Lock()
	p := h.phase
	h.gets++
	h.mu.Unlock()
	release := make(chan struct{})
	h.begun <- release
	select {
	case <-release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return phaseEntry(`{"id":"j","phase":"` + string(p) + `"}`), nil
}

func (h *heldRecords) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gets
}

type phaseEntry string

func (e phaseEntry) Bucket() string                  { return "jobs" }
func (e phaseEntry) Key() string                     { return "j" }
func (e phaseEntry) Value() []byte                   { return []byte(e) }
func (e phaseEntry) Revision() uint64                { return 1 }
func (e phaseEntry) Created() time.Time              { return time.Time{} }
func (e phaseEntry) Delta() uint64                   { return 0 }
func (e phaseEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// ask starts a phase question and returns where its answer arrives.
func ask(ctx context.Context, p *phaseReads, kv recordGetter) <-chan messages.Phase {
	out := make(chan messages.Phase, 1)
	go func() { out <- p.phase(ctx, kv, "j") }()
	return out
}

// waitBegun returns the release of the next Get to begin.
func waitBegun(t *testing.T, h *heldRecords) chan struct{} {
	t.Helper()
	select {
	case r := <-h.begun:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no read of the job record began")
		return nil
	}
}

// waiting reports how many questions about job "j" are open.
func waiting(p *phaseReads) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.jobs["j"]; st != nil {
		return st.waiting
	}
	return 0
}

// A task that asks while a read of the record is under way never takes that
// read's answer: the job may have ended after the read began. It takes the
// next read's, which the tasks asking meanwhile share.
func TestPhaseReadsNeverAnswerWithAnOlderRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHeldRecords(messages.PhaseFlushing)
	var p phaseReads

	first := ask(ctx, &p, h)
	r1 := waitBegun(t, h)
	// The job fails while the first read is under way.
	h.set(messages.PhaseFailed)
	later := []<-chan messages.Phase{ask(ctx, &p, h), ask(ctx, &p, h), ask(ctx, &p, h)}
	require.Eventually(t, func() bool { return waiting(&p) == 4 }, 5*time.Second, time.Millisecond)

	close(r1)
	require.Equal(t, messages.PhaseFlushing, <-first)
	r2 := waitBegun(t, h)
	close(r2)
	for _, c := range later {
		require.Equal(t, messages.PhaseFailed, <-c, "a question asked after the job failed")
	}
	require.Equal(t, 2, h.count(), "the three later questions share one read")
	require.Equal(t, 0, waiting(&p))
	require.Empty(t, p.jobs, "nothing is kept once no one asks")
}

// A read cut short by its own task's context answers no one else: the tasks
// sharing it read again.
func TestPhaseReadsAbandonedReadIsReadAgain(t *testing.T) {
	t.Parallel()
	h := newHeldRecords(messages.PhaseSnapshotting)
	var p phaseReads

	firstCtx, cancelFirst := context.WithCancel(context.Background())
	defer cancelFirst()
	first := ask(firstCtx, &p, h)
	r1 := waitBegun(t, h)
	// The first read (its answer older than the next question) runs; the
	// second question waits behind it, then begins a read of its own,
	// which the third question shares.
	second := ask(context.Background(), &p, h)
	require.Eventually(t, func() bool { return waiting(&p) == 2 }, 5*time.Second, time.Millisecond)
	close(r1)
	require.Equal(t, messages.PhaseSnapshotting, <-first)
	r2 := waitBegun(t, h)

	cutCtx, cut := context.WithCancel(context.Background())
	third := ask(cutCtx, &p, h)
	fourth := ask(context.Background(), &p, h)
	require.Eventually(t, func() bool { return waiting(&p) == 3 }, 5*time.Second, time.Millisecond)
	close(r2)
	require.Equal(t, messages.PhaseSnapshotting, <-second)
	// The third and fourth questions came after read 2 began; whichever
	// starts read 3, cutting the third's context must not leave the fourth
	// with "".
	r3 := waitBegun(t, h)
	cut()
	select {
	case got := <-third:
		require.Equal(t, messages.Phase(""), got)
	case <-time.After(5 * time.Second):
		t.Fatal("a question whose context ended still waits")
	}
	h.set(messages.PhaseFinishing)
	select {
	case r4 := <-h.begun:
		// The third began read 3 and abandoned it; the fourth reads again.
		close(r4)
		close(r3)
	case <-time.After(200 * time.Millisecond):
		// The fourth began read 3; the third only stopped waiting.
		close(r3)
	}
	got := <-fourth
	require.Contains(t, []messages.Phase{messages.PhaseSnapshotting, messages.PhaseFinishing}, got)
	require.Eventually(t, func() bool { return waiting(&p) == 0 }, 5*time.Second, time.Millisecond)
}
