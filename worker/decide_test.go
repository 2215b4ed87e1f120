package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

// recordingMsg is a jetstream.Msg that records how it was settled.
type recordingMsg struct {
	mu        sync.Mutex
	settled   string
	delay     time.Duration
	reason    string
	heartbeat int
}

var _ jetstream.Msg = (*recordingMsg)(nil)

func (m *recordingMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{}, nil
}
func (m *recordingMsg) Data() []byte         { return nil }
func (m *recordingMsg) Headers() nats.Header { return nil }
func (m *recordingMsg) Subject() string      { return "quiesce.tasks.flush.c1" }
func (m *recordingMsg) Reply() string        { return "" }
func (m *recordingMsg) set(s string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.settled = s
	return nil
}
func (m *recordingMsg) Ack() error                      { return m.set("ack") }
func (m *recordingMsg) DoubleAck(context.Context) error { return m.set("ack") }
func (m *recordingMsg) Nak() error                      { return m.set("nak") }
func (m *recordingMsg) NakWithDelay(d time.Duration) error {
	m.mu.Lock()
	m.delay = d
	m.mu.Unlock()
	return m.set("nak")
}
func (m *recordingMsg) InProgress() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.heartbeat++
	return nil
}
func (m *recordingMsg) Term() error { return m.set("term") }
func (m *recordingMsg) TermWithReason(r string) error {
	m.mu.Lock()
	m.reason = r
	m.mu.Unlock()
	return m.set("term")
}

// capturePublisher stands in for JetStream's Publish in decide.
type capturePublisher struct {
	mu      sync.Mutex
	results []messages.TaskResult
	retries []messages.TaskRetry
}

func TestDecideClassifiesInOnePlace(t *testing.T) {
	t.Parallel()
	cases := []struct {
		desc        string
		err         error
		attempt     int
		deadlineHit bool
		shutdown    bool
		wantSettled string
		wantOutcome outcome
		wantClass   messages.ErrorClass
		minDelay    time.Duration
	}{
		{desc: "success acks", err: nil, attempt: 1, wantSettled: "ack", wantOutcome: outcomeSucceeded},
		{desc: "permanent terminates", err: errclass.Permanent(errors.New("auth failed")), attempt: 1,
			wantSettled: "term", wantOutcome: outcomeFailed, wantClass: messages.ClassPermanent},
		{desc: "transient retries", err: errors.New("connection refused"), attempt: 1,
			wantSettled: "nak", wantOutcome: outcomeRetry, minDelay: 5 * time.Millisecond},
		{desc: "transient on the last delivery is exhausted", err: errors.New("connection refused"), attempt: 3,
			wantSettled: "term", wantOutcome: outcomeFailed, wantClass: messages.ClassExhausted},
		{desc: "retry-after sets a floor on the delay", err: errclass.RetryAfter(errors.New("SnapshotCreationPerVolumeRateExceeded"), 15*time.Second),
			attempt: 1, wantSettled: "nak", wantOutcome: outcomeRetry, minDelay: 15 * time.Second},
		{desc: "deadline terminates", err: context.DeadlineExceeded, attempt: 1, deadlineHit: true,
			wantSettled: "term", wantOutcome: outcomeFailed, wantClass: messages.ClassDeadline},
		{desc: "panic retries, then is reported as a panic", err: &panicError{value: "boom"}, attempt: 3,
			wantSettled: "term", wantOutcome: outcomeFailed, wantClass: messages.ClassPanic},
		{desc: "shutdown hands the task back", err: context.Canceled, attempt: 1, shutdown: true,
			wantSettled: "nak", wantOutcome: outcomeReturned},
		{desc: "skip of an ended job acks", err: errSkip, attempt: 1, wantSettled: "ack", wantOutcome: outcomeSkipped},
		{desc: "a cluster this worker does not know is handed back, never failed, even marked permanent",
			err: errclass.Permanent(fmt.Errorf("cluster %q: %w", "c9", ErrUnknownCluster)), attempt: 1,
			wantSettled: "nak", wantOutcome: outcomeReturned},
		{desc: "NATS not answering the task's bookkeeping costs no delivery: handed back, never failed",
			err: fmt.Errorf("take the task's lease: %w: %w", errControlPlane, context.DeadlineExceeded), attempt: 3,
			wantSettled: "nak", wantOutcome: outcomeReturned},
		{desc: "a long error is reported in part", err: errclass.Permanent(errors.New(strings.Repeat("x", 1<<20))), attempt: 1,
			wantSettled: "term", wantOutcome: outcomeFailed, wantClass: messages.ClassPermanent},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			pub := &capturePublisher{}
			w := New(nil, nil, nil, Config{Logger: zerolog.Nop(), BackoffBase: 10 * time.Millisecond,
				MaxDeliver: func(messages.Kind) int { return 3 }})
			w.publishFn = func(_ context.Context, r *messages.TaskResult) error {
				pub.mu.Lock()
				defer pub.mu.Unlock()
				pub.results = append(pub.results, *r)
				return nil
			}
			w.publishRetryFn = func(_ context.Context, r *messages.TaskRetry) error {
				pub.mu.Lock()
				defer pub.mu.Unlock()
				pub.retries = append(pub.retries, *r)
				return nil
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			if tc.shutdown {
				cancel(ErrShutdown)
			}
			msg := &recordingMsg{}
			finished := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
			res := &messages.TaskResult{TaskID: "j.flush.n1", JobID: "j", Kind: messages.KindFlush, Target: "n1", FinishedAt: finished}
			got, _ := w.decide(ctx, zerolog.Nop(), msg, res, tc.err, tc.attempt, messages.KindFlush, tc.deadlineHit)
			require.Equal(t, tc.wantOutcome, got)
			require.Equal(t, tc.wantSettled, msg.settled)
			require.GreaterOrEqual(t, msg.delay, tc.minDelay)
			switch tc.wantOutcome {
			case outcomeFailed:
				require.Len(t, pub.results, 1, "a terminal failure is reported once")
				require.Equal(t, messages.OutcomeFailed, pub.results[0].Outcome)
				require.Equal(t, tc.wantClass, pub.results[0].ErrorClass)
				require.NotEmpty(t, msg.reason)
				require.LessOrEqual(t, len(pub.results[0].Error), maxResultError+32, "the event's error is bounded")
			case outcomeSucceeded:
				require.Len(t, pub.results, 1)
				require.Equal(t, messages.OutcomeSucceeded, pub.results[0].Outcome)
			default:
				require.Empty(t, pub.results, "no result for a delivery that will be retried")
			}
			if tc.wantOutcome != outcomeRetry {
				require.Empty(t, pub.retries, "a retry is reported only for a delivery handed back after a failure")
				return
			}
			require.Len(t, pub.retries, 1, "the retry is reported, with when the next attempt comes")
			r := pub.retries[0]
			require.Equal(t, messages.TaskRetrySchema, r.Schema)
			require.Equal(t, "j.flush.n1", r.TaskID)
			require.Equal(t, "n1", r.Target)
			require.Equal(t, tc.attempt, r.Attempt)
			require.Equal(t, 3, r.MaxAttempts)
			require.Equal(t, tc.err.Error(), r.Error)
			require.Equal(t, finished, r.FailedAt)
			require.Equal(t, finished.Add(msg.delay), r.NextAttemptAt)
		})
	}
}

// A task is acknowledged only once its result is stored: the publish has
// returned, acknowledged by the stream, before the ack. A result that
// cannot be stored hands the task back; it is never acknowledged.
func TestTaskAckedOnlyOnceItsResultIsStored(t *testing.T) {
	t.Parallel()
	for _, stored := range []bool{true, false} {
		t.Run(fmt.Sprintf("stored=%v", stored), func(t *testing.T) {
			t.Parallel()
			w := New(nil, nil, nil, Config{Logger: zerolog.Nop(), BackoffBase: 10 * time.Millisecond})
			msg := &recordingMsg{}
			var settledAtPublish string
			w.publishFn = func(context.Context, *messages.TaskResult) error {
				msg.mu.Lock()
				settledAtPublish = msg.settled
				msg.mu.Unlock()
				if !stored {
					return errors.New("nats: timeout")
				}
				return nil
			}
			res := &messages.TaskResult{TaskID: "j.flush.n1", JobID: "j", Kind: messages.KindFlush, Target: "n1"}
			got, _ := w.decide(context.Background(), zerolog.Nop(), msg, res, nil, 1, messages.KindFlush, false)
			require.Empty(t, settledAtPublish, "the task was settled before its result was stored")
			if stored {
				require.Equal(t, outcomeSucceeded, got)
				require.Equal(t, "ack", msg.settled)
				return
			}
			require.Equal(t, outcomeRetry, got)
			require.Equal(t, "nak", msg.settled, "a task whose result was not stored is handed back, not acknowledged")
		})
	}
}

// The retry's log line says when, in a field that names its unit.
func TestRetryLogCarriesUnits(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := New(nil, nil, nil, Config{BackoffBase: 700 * time.Millisecond, MaxDeliver: func(messages.Kind) int { return 5 }})
	w.publishRetryFn = func(context.Context, *messages.TaskRetry) error { return nil }
	msg := &recordingMsg{}
	res := &messages.TaskResult{TaskID: "j.clear.n1", Kind: messages.KindClear, FinishedAt: time.Now()}
	w.decide(t.Context(), zerolog.New(&buf), msg, res, errors.New("connection refused"), 1, messages.KindClear, false)
	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
	require.NotContains(t, line, "retry_in", "a duration without its unit")
	ms, ok := line["retry_in_ms"].(float64)
	require.True(t, ok, "retry_in_ms: %s", buf.String())
	require.Equal(t, float64(msg.delay.Milliseconds()), ms, "whole milliseconds")
	require.Contains(t, line, "next_attempt_at")
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	w := New(nil, nil, nil, Config{BackoffBase: time.Second, BackoffMax: time.Minute})
	for attempt := 1; attempt < 40; attempt++ {
		d := w.backoff(attempt)
		want := time.Second << min(attempt-1, 20)
		if want > time.Minute {
			want = time.Minute
		}
		require.GreaterOrEqual(t, d, want/2, "attempt %d", attempt)
		require.LessOrEqual(t, d, want, "attempt %d", attempt)
	}
}

func TestRunRecoversPanics(t *testing.T) {
	t.Parallel()
	w := New(nil, nil, panicDrivers{}, Config{Logger: zerolog.Nop()})
	_, err := w.run(context.Background(), zerolog.Nop(), messages.Task{Kind: messages.KindFlush, Node: &messages.Node{Name: "n1"}}, 1, nil)
	var pe *panicError
	require.ErrorAs(t, err, &pe)
	require.Contains(t, string(pe.stack), "panicDrivers")
}

type panicDrivers struct{}

func (panicDrivers) NodeTool(string) (NodeTool, error)       { panic("driver bug") }
func (panicDrivers) Snapshotter(string) (Snapshotter, error) { panic("driver bug") }
