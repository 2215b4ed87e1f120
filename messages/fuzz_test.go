package messages_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/quiesce/quiesce/messages"
)

// Characters no accepted value may carry into a subject, a KV key or a
// command line.
const shellMeta = " \t\r\n;&|$`\\\"'<>(){}[]*?!~#%^,"

var (
	strictTag      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	strictKeyspace = regexp.MustCompile(`^[A-Za-z0-9_]{1,48}$`)
	strictJobID    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}-[0-9a-f]{12}$`)
)

// FuzzDecodeJobRequest feeds arbitrary bytes to the planner's first line of
// defence. Whatever it accepts must validate again, survive a JSON round trip
// unchanged, and carry no character a shell or a subject would interpret.
func FuzzDecodeJobRequest(f *testing.F) {
	seeds := []string{
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1"}`,
		`{"schema":"quiesce.job-request/v1","request_id":"nightly-orders-2026-11-24","cluster":"orders","policy":"nightly","mode":"application","keyspaces":["shop","billing"],"reason":"nightly backup","requested_by":"scheduler@ops","deadline":"2030-01-01T06:00:00Z"}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1","tag":"x;rm -rf /"}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1","keyspaces":["a b"]}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1","mode":"crash"}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1"} {}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1","deadlin":"2030-01-01T00:00:00Z"}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"C1"}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1\u0000","cluster":"c1"}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1","tag":"t\u00e9"}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1","deadline":"not a time"}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1","keyspaces":null}`,
		`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"c1","SCHEMA":"x"}`,
		`[]`, `null`, `""`, `{`, ``,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := messages.DecodeJobRequest(data)
		if err != nil {
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("accepted request does not re-validate: %v", err)
		}
		if req.Tag != "" && !strictTag.MatchString(req.Tag) {
			t.Fatalf("accepted tag %q", req.Tag)
		}
		for _, ks := range req.Keyspaces {
			if !strictKeyspace.MatchString(ks) {
				t.Fatalf("accepted keyspace %q", ks)
			}
		}
		for _, s := range append([]string{req.Tag, req.Cluster, req.Policy}, req.Keyspaces...) {
			if strings.ContainsAny(s, shellMeta) {
				t.Fatalf("accepted value %q with a shell metacharacter", s)
			}
		}
		if id := req.JobID(); !strictJobID.MatchString(id) {
			t.Fatalf("job id %q of an accepted request", id)
		}
		out, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("marshal accepted request: %v", err)
		}
		again, err := messages.DecodeJobRequest(out)
		if err != nil {
			t.Fatalf("round trip rejected %s: %v", out, err)
		}
		out2, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("marshal round trip: %v", err)
		}
		if string(out) != string(out2) {
			t.Fatalf("round trip changed the request:\n%s\n%s", out, out2)
		}
		if again.JobID() != req.JobID() {
			t.Fatalf("round trip changed the job id: %s → %s", req.JobID(), again.JobID())
		}
	})
}
