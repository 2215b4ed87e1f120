// Package errclass classifies task errors. Drivers wrap what they return with
// Permanent or RetryAfter; the worker runtime reads the class in one place and
// decides between terminating the task and redelivering it later. An error
// with no class is transient: retried with backoff until MaxDeliver.
package errclass

import (
	"errors"
	"time"
)

type permanent struct{ err error }

func (e *permanent) Error() string { return e.err.Error() }
func (e *permanent) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, is permanent.
func IsPermanent(err error) bool {
	var p *permanent
	return errors.As(err, &p)
}

type retryAfter struct {
	err   error
	delay time.Duration
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

// RetryAfter marks err as transient with a minimum delay before the next
// attempt (an EC2 per-volume rate limit asks for 15 s, say).
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfter{err, d}
}

// Delay returns the minimum delay err asks for, if any.
func Delay(err error) (time.Duration, bool) {
	var r *retryAfter
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}

// Stderrer is implemented by errors that carry a remote command's stderr, so
// the failure event can show each node's own words.
type Stderrer interface {
	Stderr() string
}

// Stderr returns the stderr carried by err, if any.
func Stderr(err error) string {
	var s Stderrer
	if errors.As(err, &s) {
		return s.Stderr()
	}
	return ""
}

// Coder is implemented by errors with a stable code (an EC2 error code, an
// SSH failure class) suitable for a bounded metric label.
type Coder interface {
	Code() string
}

// Code returns the code carried by err, or "".
func Code(err error) string {
	var c Coder
	if errors.As(err, &c) {
		return c.Code()
	}
	return ""
}

type notRun struct{ err error }

func (e *notRun) Error() string { return e.err.Error() }
func (e *notRun) Unwrap() error { return e.err }

// NotRun marks err as a failure that left the node as it was: the command
// never ran (the program or the node could not be reached) or was refused
// before it did anything (a bad argument). It says nothing about retrying;
// combine it with Permanent where that applies.
func NotRun(err error) error {
	if err == nil {
		return nil
	}
	return &notRun{err}
}

// IsNotRun reports whether err, or an error it wraps, is marked NotRun.
func IsNotRun(err error) bool {
	var n *notRun
	return errors.As(err, &n)
}
