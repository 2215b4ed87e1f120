package ebs

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/mototest"
)

// fakeEC2 is an in-process EC2 endpoint: each action answers with a canned
// XML body or an EC2 error, and every request is counted by action.
type fakeEC2 struct {
	mu      sync.Mutex
	answers map[string]fakeAnswer
	calls   map[string]int
	forms   map[string][]url.Values
	regions map[string][]string
	srv     *httptest.Server
}

type fakeAnswer struct {
	status int
	code   string // an EC2 error code, or "" for a success with body
	body   string
	// pages, when set, are the bodies of successive calls (the last repeats).
	pages []string
}

func newFakeEC2(t *testing.T) *fakeEC2 {
	f := &fakeEC2{answers: map[string]fakeAnswer{}, calls: map[string]int{}, forms: map[string][]url.Values{}, regions: map[string][]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEC2) on(action string, a fakeAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[action] = a
}

func (f *fakeEC2) count(action string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[action]
}

// requests returns the form of every call of an action.
func (f *fakeEC2) requests(action string) []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.forms[action]
}

// regionsOf returns the region each call of an action was signed for.
func (f *fakeEC2) regionsOf(action string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.regions[action]
}

// signedRegion reads the region from a SigV4 Authorization header:
// "AWS4-HMAC-SHA256 Credential=AKID/20261124/us-west-2/ec2/aws4_request, ...".
func signedRegion(r *http.Request) string {
	_, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if !ok {
		return ""
	}
	parts := strings.Split(cred, "/")
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

func (f *fakeEC2) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	action := r.Form.Get("Action")
	f.mu.Lock()
	f.calls[action]++
	n := f.calls[action]
	f.forms[action] = append(f.forms[action], r.Form)
	f.regions[action] = append(f.regions[action], signedRegion(r))
	a, ok := f.answers[action]
	f.mu.Unlock()
	if len(a.pages) > 0 {
		a.body = a.pages[min(n, len(a.pages))-1]
	}
	switch {
	case !ok:
		mototest.WriteEC2Error(w, http.StatusBadRequest, "InvalidAction", "no fake answer for "+action)
	case a.code != "":
		mototest.WriteEC2Error(w, a.status, a.code, "fake "+a.code)
	default:
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<%[1]sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId>%[2]s</%[1]sResponse>`, action, a.body)
	}
}

// snapshotXML is one item of a DescribeSnapshots snapshotSet.
func snapshotXML(id, volume, state string, tags map[string]string) string {
	return snapshotXMLMsg(id, volume, state, "", tags)
}

func snapshotXMLMsg(id, volume, state, msg string, tags map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<item><snapshotId>%s</snapshotId><volumeId>%s</volumeId><status>%s</status><statusMessage>%s</statusMessage><tagSet>", id, volume, state, msg)
	for k, v := range tags {
		fmt.Fprintf(&b, "<item><key>%s</key><value>%s</value></item>", k, v)
	}
	b.WriteString("</tagSet></item>")
	return b.String()
}

// fastOptions retry quickly: tests must not sleep through production backoff.
func fastOptions() Options {
	return Options{MaxAttempts: 3, RetryBaseDelay: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

func fakeDriver(t *testing.T, f *fakeEC2, opts Options) *Driver {
	t.Helper()
	d, err := New(t.Context(), Config{Cluster: "c1", Region: "us-east-1", Endpoint: f.srv.URL}, opts)
	require.NoError(t, err)
	return d
}
