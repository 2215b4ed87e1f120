// Package startstop is the one lifecycle of quiesce's long-running services
// (planner, coordinator, worker): stopped → starting → running → stopping →
// stopped, and back to starting on a later Start. Work is admitted only while
// running; Stop first closes admission, then waits for admitted work.
package startstop

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

type state int

const (
	stopped state = iota
	starting
	running
	stopping
)

func (s state) String() string {
	switch s {
	case starting:
		return "starting"
	case running:
		return "running"
	case stopping:
		return "stopping"
	}
	return "stopped"
}

// ErrNotRunning is what Ready returns, wrapped with the state, when the
// service does not take work.
var ErrNotRunning = errors.New("not running")

// Service holds one service's state. The zero value is a stopped service.
type Service struct {
	// Name prefixes errors ("planner not running: stopping").
	Name string

	// startStop is held through a whole start or stop, so the two never
	// interleave: a start still binding consumers when a stop began would
	// otherwise admit work into the next start's life.
	startStop sync.Mutex

	mu       sync.Mutex
	state    state
	inflight int
	// drained is made when a stop begins and closed once no admitted work
	// is left.
	drained chan struct{}
}

// Lock holds the service's start/stop lock. A service's Start and Stop each
// hold it from beginning to end.
func (s *Service) Lock() { s.startStop.Lock() }

// Unlock releases the start/stop lock.
func (s *Service) Unlock() { s.startStop.Unlock() }

// BeginStart moves a stopped service to starting. It fails when the service
// is starting, running or stopping: a second Start is an error, not a
// second set of consumers.
func (s *Service) BeginStart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stopped {
		return fmt.Errorf("%s already %s", s.name(), s.state)
	}
	s.state = starting
	return nil
}

// EndStart marks a started service running: Ready reports it. A start
// that failed is undone with BeginStop, Wait and EndStop instead, since
// work may have been admitted while it was starting.
func (s *Service) EndStart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == starting {
		s.state = running
	}
}

// Admit takes one unit of work if the service is starting or running (a
// consumer bound during the start may deliver before the start ends). The
// caller calls done when the work ends; Stop waits for every admitted unit.
func (s *Service) Admit() (done func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != starting && s.state != running {
		return nil, false
	}
	s.inflight++
	var once sync.Once
	return func() { once.Do(s.release) }, true
}

func (s *Service) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if s.inflight == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

// BeginStop closes admission. It reports false when the service is neither
// starting nor running (never started, or already stopping or stopped): the
// caller has nothing to stop.
func (s *Service) BeginStop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != starting && s.state != running {
		return false
	}
	s.state = stopping
	s.drained = make(chan struct{})
	if s.inflight == 0 {
		close(s.drained)
		s.drained = nil
	}
	return true
}

// Wait, after BeginStop, waits for admitted work to end, or for ctx. A
// caller whose ctx ended
// cancels the work, then waits again with a context that does not end.
func (s *Service) Wait(ctx context.Context) error {
	s.mu.Lock()
	drained := s.drained
	s.mu.Unlock()
	if drained == nil {
		return nil
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// EndStop marks the service stopped: Ready fails and Start may run again.
func (s *Service) EndStop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stopping {
		s.state = stopped
	}
}

// Ready returns nil while the service is running.
func (s *Service) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != running {
		return fmt.Errorf("%s %w: %s", s.name(), ErrNotRunning, s.state)
	}
	return nil
}

// Running reports whether the service takes work.
func (s *Service) Running() bool { return s.Ready() == nil }

func (s *Service) name() string {
	if s.Name == "" {
		return "service"
	}
	return s.Name
}
