package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// TB is the part of testing.TB the harness needs.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Logf(format string, args ...any)
	// Context ends just before the test's cleanups run.
	Context() context.Context
}

var _ TB = (testing.TB)(nil)

// StartServer starts an embedded JetStream server on a free loopback port.
func StartServer(t TB, storeDir string) *server.Server {
	t.Helper()
	if storeDir == "" {
		storeDir = t.TempDir()
	}
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: storeDir,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Env is a server with quiesce's topology on it.
type Env struct {
	Server *server.Server
	URL    string
	NC     *nats.Conn
	JS     jetstream.JetStream
	H      *topology.Handles
	Opts   topology.Options
}

// New starts a server and creates the topology with o.
func New(t TB, o topology.Options) *Env {
	t.Helper()
	s := StartServer(t, "")
	e := &Env{Server: s, URL: s.ClientURL(), Opts: o}
	e.NC, e.JS = e.Connect(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	h, err := topology.Ensure(ctx, e.JS, o)
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	e.H = h
	return e
}

// Connect opens another connection, closed at cleanup (closing it earlier
// is how a test kills a process abruptly).
func (e *Env) Connect(t TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(e.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Handles binds the topology's buckets through js.
func Handles(ctx context.Context, js jetstream.JetStream) (*topology.Handles, error) {
	return topology.Bind(ctx, js)
}

// Request builds a valid JobRequest.
func Request(cluster, requestID string) messages.JobRequest {
	return messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: requestID, Cluster: cluster, RequestedBy: "test"}
}

// Submit publishes a request with its request ID as the message ID.
func (e *Env) Submit(t TB, req messages.JobRequest) string {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	e.SubmitRaw(t, data, req.RequestID)
	return req.JobID()
}

// SubmitRaw publishes raw bytes as a request.
func (e *Env) SubmitRaw(t TB, data []byte, msgID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := e.JS.Publish(ctx, messages.SubjectSubmit, data, opts...); err != nil {
		t.Fatalf("submit: %v", err)
	}
}

// Job reads a job record.
func (e *Env) Job(ctx context.Context, id string) (messages.Job, error) {
	var j messages.Job
	entry, err := e.H.Jobs.Get(ctx, id)
	if err != nil {
		return j, err
	}
	err = json.Unmarshal(entry.Value(), &j)
	return j, err
}

// WaitTerminal waits until the job is in a terminal phase and returns it.
func (e *Env) WaitTerminal(t TB, id string, timeout time.Duration) messages.Job {
	t.Helper()
	return e.WaitFor(t, id, timeout, func(j messages.Job) bool { return j.Phase.Terminal() })
}

// WaitFor polls the job record until cond holds.
func (e *Env) WaitFor(t TB, id string, timeout time.Duration, cond func(messages.Job) bool) messages.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var last messages.Job
	var lastErr error
	for {
		j, err := e.Job(ctx, id)
		if err == nil {
			last = j
			if cond(j) {
				return j
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s: condition not reached in %s (phase %q, error %q, last read error %v)", id, timeout, last.Phase, last.Error, lastErr)
			return last
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Rejection waits for the rejection event of a job ID and request ID.
func (e *Env) Rejection(t TB, jobID, requestID string, timeout time.Duration) messages.Rejection {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cons, err := e.JS.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectRejected(jobID)},
	})
	if err != nil {
		t.Fatalf("rejection consumer: %v", err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Until(deadlineOf(ctx))))
		if err != nil {
			t.Fatalf("no rejection for %s (request %q): %v", jobID, requestID, err)
		}
		var r messages.Rejection
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatalf("rejection: %v", err)
		}
		if r.RequestID == requestID {
			return r
		}
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// StreamCount returns the number of messages in a stream.
func (e *Env) StreamCount(ctx context.Context, stream string) (uint64, error) {
	s, err := e.JS.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// ErrTimeout is returned by Eventually when cond never held.
var ErrTimeout = errors.New("timed out")

// Eventually polls cond every 10ms until it holds or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%w after %s", ErrTimeout, timeout)
}
