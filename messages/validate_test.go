package messages_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

func TestDecodeJobRequestErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ desc, body, want string }{
		{"not JSON", `nope`, "not valid JSON"},
		{"truncated", `{"schema":"quiesce.job-request/v1"`, "not valid JSON"},
		{"trailing data", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c"} {}`, "data after"},
		{"wrong schema", `{"schema":"v0","request_id":"r","cluster":"c"}`, `schema "v0"`},
		{"missing request id", `{"schema":"quiesce.job-request/v1","cluster":"c"}`, "request_id: is required"},
		{"missing cluster", `{"schema":"quiesce.job-request/v1","request_id":"r"}`, "cluster: is required"},
		{"tag with a semicolon", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c","tag":"a;b"}`, `tag "a;b"`},
		{"tag with a subshell", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c","tag":"$(id)"}`, `tag "$(id)"`},
		{"keyspace with a space", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c","keyspaces":["a b"]}`, `keyspace "a b"`},
		{"unknown mode", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c","mode":"fast"}`, `mode "fast"`},
		{"unknown field", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c","clustr":"x"}`, `unknown field "clustr"`},
		{"too large", `{"schema":"quiesce.job-request/v1","reason":"` + strings.Repeat("x", messages.MaxJobRequestBytes) + `"}`, "bytes, more than"},
	}
	for _, tc := range cases {
		_, err := messages.DecodeJobRequest([]byte(tc.body))
		require.Error(t, err, tc.desc)
		require.Contains(t, err.Error(), tc.want, tc.desc)
	}
}

func TestValidationReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := messages.JobRequest{Schema: messages.JobRequestSchema, Cluster: "Bad Name", Tag: "x y"}.Validate()
	require.Error(t, err)
	for _, want := range []string{"request_id", "cluster", "tag"} {
		require.Contains(t, err.Error(), want)
	}
}

func TestJobIDIsDeterministic(t *testing.T) {
	t.Parallel()
	a := messages.JobIDFor("orders", "req-1")
	require.Equal(t, a, messages.JobIDFor("orders", "req-1"))
	require.NotEqual(t, a, messages.JobIDFor("orders", "req-2"))
	require.NoError(t, messages.ValidateJobID(a))
	require.Error(t, messages.ValidateJobID("orders.x"))
}

func TestDeadlineInThePastIsRejected(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	r := messages.JobRequest{Deadline: now.Add(-time.Minute)}
	require.ErrorContains(t, r.CheckDeadline(now), "already past")
	r.Deadline = now.Add(time.Minute)
	require.NoError(t, r.CheckDeadline(now))
}

func TestPhases(t *testing.T) {
	t.Parallel()
	for _, p := range []messages.Phase{messages.PhaseSucceeded, messages.PhaseFailed, messages.PhaseCancelled} {
		require.True(t, p.Terminal(), p)
	}
	for _, p := range []messages.Phase{messages.PhasePlanned, messages.PhaseFlushing, messages.PhaseSnapshotting, messages.PhaseFinishing} {
		require.False(t, p.Terminal(), p)
	}
	for _, k := range messages.Kinds {
		require.True(t, k.Valid())
	}
	require.False(t, messages.Kind("reboot").Valid())
}

// A request that is not JSON of the request's shape is told apart from a
// well-formed request with a wrong value by a sentinel, not by its text.
func TestDecodeJobRequestMalformedIsASentinel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc      string
		in        string
		malformed bool
	}{
		{"truncated", `{"schema": "quiesce.job-request/v1", "request_id": `, true},
		{"unknown field", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c","dedline":"x"}`, true},
		{"two objects", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c"} {}`, true},
		{"wrong type", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c","keyspaces":"ks"}`, true},
		{"bad tag", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"c","tag":"a b"}`, false},
		{"missing cluster", `{"schema":"quiesce.job-request/v1","request_id":"r"}`, false},
	} {
		_, err := messages.DecodeJobRequest([]byte(tc.in))
		require.Error(t, err, tc.desc)
		require.Equal(t, tc.malformed, errors.Is(err, messages.ErrMalformed), "%s: %v", tc.desc, err)
	}
}
