package ssh

import (
	"context"
	"sync"
)

// Defaults of the handshake admission (Options.Handshakes).
const (
	DefaultHandshakesStart = 16
	DefaultHandshakesMax   = 512
)

// handshakeOutcome is what one admitted handshake tells the limit.
type handshakeOutcome int

const (
	// handshakeDone: connected and through the handshake; one more may run.
	handshakeDone handshakeOutcome = iota
	// handshakeOverload: timed out, reset or closed by the server during
	// the handshake (sshd's MaxStartups drops connections this way): the
	// servers or this process take fewer at once than are running.
	handshakeOverload
	// handshakeNeutral: ended for a reason that says nothing about load
	// (refused, a credential or host key refused, the caller gave up).
	handshakeNeutral
)

// admission bounds the handshakes in progress with a limit that adapts as
// TCP's window does (additive increase, multiplicative decrease): one more
// per handshake completed, up to max; halved, down to one, when handshakes
// time out or are dropped. The handshakes failed by one overload halve it
// once: only a handshake admitted after the last decrease decreases it again.
type admission struct {
	mu       sync.Mutex
	limit    int
	max      int
	inFlight int
	// epoch counts decreases; a ticket remembers the one it was admitted in.
	epoch int
	// wake is closed, and replaced, whenever a slot may have opened.
	wake chan struct{}
}

// ticket is one admitted handshake.
type ticket struct{ epoch int }

func newAdmission(start, max int) *admission {
	if max <= 0 {
		max = DefaultHandshakesMax
	}
	if start <= 0 {
		start = DefaultHandshakesStart
	}
	start = min(start, max)
	return &admission{limit: start, max: max, wake: make(chan struct{})}
}

// acquire waits for a slot, or for ctx to end (returning its cause).
func (a *admission) acquire(ctx context.Context) (ticket, error) {
	for {
		a.mu.Lock()
		if a.inFlight < a.limit {
			a.inFlight++
			t := ticket{epoch: a.epoch}
			a.mu.Unlock()
			return t, nil
		}
		wake := a.wake
		a.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ticket{}, context.Cause(ctx)
		}
	}
}

// release ends an admitted handshake and adapts the limit to its outcome.
func (a *admission) release(t ticket, o handshakeOutcome) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inFlight--
	switch o {
	case handshakeDone:
		a.limit = min(a.limit+1, a.max)
	case handshakeOverload:
		if t.epoch == a.epoch {
			a.limit = max(a.limit/2, 1)
			a.epoch++
		}
	}
	close(a.wake)
	a.wake = make(chan struct{})
}

// current returns the limit and the handshakes in progress.
func (a *admission) current() (limit, inFlight int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limit, a.inFlight
}
