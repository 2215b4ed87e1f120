package mototest

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Throttle is an HTTP proxy in front of an EC2 endpoint that answers
// RequestLimitExceeded, as EC2 does (HTTP 503, EC2's XML error body), to the
// requests a rule selects, and counts what it saw. On demand it also makes
// DescribeSnapshots report every snapshot in the error state, which moto's
// snapshots (completed at once) never reach by themselves.
type Throttle struct {
	// URL is the proxy's endpoint; point the SDK's base endpoint at it.
	URL string

	proxy *httputil.ReverseProxy
	now   func() time.Time

	mu        sync.Mutex
	actions   []string
	first     int           // throttle this many matching requests
	window    time.Duration // or throttle matching requests for this long
	windowEnd time.Time     // set by the first matching request
	forever   bool
	snapErr   string // when set, DescribeSnapshots reports this error state

	requests  atomic.Int64
	throttled atomic.Int64
	byAction  sync.Map // action -> *atomic.Int64 of requests seen
}

// NewThrottle starts a throttling proxy to target on a loopback port, closed
// when the test ends. It passes everything through until a rule is set.
func NewThrottle(t testing.TB, target string) *Throttle {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("mototest: target %q: %v", target, err)
	}
	th := &Throttle{proxy: httputil.NewSingleHostReverseProxy(u), now: time.Now}
	srv := httptest.NewServer(th)
	t.Cleanup(srv.Close)
	th.URL = srv.URL
	return th
}

// Handler returns the throttling middleware in front of next, for tests that
// fake EC2 in-process. Its counters are those of the returned Throttle.
func Handler(next http.Handler) (*Throttle, http.Handler) {
	th := &Throttle{now: time.Now}
	return th, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { th.serve(w, r, next) })
}

// Only limits throttling to these EC2 actions (CreateSnapshot, say); none
// means every action.
func (th *Throttle) Only(actions ...string) *Throttle {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.actions = slices.Clone(actions)
	return th
}

// First throttles the next n matching requests, then lets them through.
func (th *Throttle) First(n int) *Throttle {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.first, th.window, th.windowEnd, th.forever = n, 0, time.Time{}, false
	return th
}

// For throttles matching requests for d from the first one it sees.
func (th *Throttle) For(d time.Duration) *Throttle {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.first, th.window, th.windowEnd, th.forever = 0, d, time.Time{}, false
	return th
}

// Always throttles every matching request until another rule is set.
func (th *Throttle) Always() *Throttle {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.first, th.window, th.windowEnd, th.forever = 0, 0, time.Time{}, true
	return th
}

// Off lets everything through.
func (th *Throttle) Off() *Throttle { return th.First(0) }

// SnapshotsInError makes every DescribeSnapshots answer report each snapshot
// in the error state with message as its status message, as EC2 does for a
// snapshot that failed; an empty message ends it. It is independent of the
// throttling rule.
func (th *Throttle) SnapshotsInError(message string) *Throttle {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.snapErr = message
	return th
}

// SetClock replaces time.Now, for tests of the time window.
func (th *Throttle) SetClock(now func() time.Time) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.now = now
}

// Requests is how many requests reached the proxy.
func (th *Throttle) Requests() int { return int(th.requests.Load()) }

// Throttled is how many requests it answered with RequestLimitExceeded.
func (th *Throttle) Throttled() int { return int(th.throttled.Load()) }

// Seen is how many requests for one action reached the proxy.
func (th *Throttle) Seen(action string) int {
	if v, ok := th.byAction.Load(action); ok {
		return int(v.(*atomic.Int64).Load())
	}
	return 0
}

func (th *Throttle) ServeHTTP(w http.ResponseWriter, r *http.Request) { th.serve(w, r, th.proxy) }

func (th *Throttle) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	th.requests.Add(1)
	action, err := actionOf(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	v, _ := th.byAction.LoadOrStore(action, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	if th.decide(action) {
		th.throttled.Add(1)
		WriteEC2Error(w, http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded.")
		return
	}
	th.mu.Lock()
	snapErr := th.snapErr
	th.mu.Unlock()
	if action == "DescribeSnapshots" && snapErr != "" {
		errorStates(w, r, next, snapErr)
		return
	}
	next.ServeHTTP(w, r)
}

var snapshotStatus = regexp.MustCompile(`<status>[a-z]+</status>`)

// errorStates passes r to next and rewrites every snapshot's status in the
// answer to error, with message.
func errorStates(w http.ResponseWriter, r *http.Request, next http.Handler, message string) {
	// Uncompressed, so the body can be rewritten.
	r.Header.Del("Accept-Encoding")
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		var m bytes.Buffer
		_ = xml.EscapeText(&m, []byte(message))
		body = snapshotStatus.ReplaceAll(body, []byte("<status>error</status><statusMessage>"+m.String()+"</statusMessage>"))
	}
	for k, vs := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

func (th *Throttle) decide(action string) bool {
	th.mu.Lock()
	defer th.mu.Unlock()
	if len(th.actions) > 0 && !slices.Contains(th.actions, action) {
		return false
	}
	switch {
	case th.forever:
		return true
	case th.first > 0:
		th.first--
		return true
	case th.window > 0:
		now := th.now()
		if th.windowEnd.IsZero() {
			th.windowEnd = now.Add(th.window)
		}
		return now.Before(th.windowEnd)
	}
	return false
}

// actionOf reads the EC2 query-protocol Action from the form body (or the
// query string) and leaves the body readable for the next handler.
func actionOf(r *http.Request) (string, error) {
	if a := r.URL.Query().Get("Action"); a != "" {
		return a, nil
	}
	if r.Body == nil {
		return "", nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return "", fmt.Errorf("reading request: %w", err)
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", nil
	}
	return form.Get("Action"), nil
}

// WriteEC2Error answers as EC2 does: HTTP status and a Response/Errors/Error
// XML document. In-process EC2 fakes use it too.
func WriteEC2Error(w http.ResponseWriter, status int, code, message string) {
	var c, m bytes.Buffer
	_ = xml.EscapeText(&c, []byte(code))
	_ = xml.EscapeText(&m, []byte(message))
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>`, c.String(), m.String())
}
