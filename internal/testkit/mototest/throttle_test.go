package mototest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// backend answers every request 200 with the action it received, so a test
// can tell a request went through and its body survived the proxy.
func backend(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_, _ = io.WriteString(w, "ok "+r.Form.Get("Action"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, endpoint, action string) (int, string) {
	t.Helper()
	resp, err := http.Post(endpoint, "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"Action": {action}, "Version": {"2016-11-15"}}.Encode()))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestThrottleFirstN(t *testing.T) {
	t.Parallel()
	th := NewThrottle(t, backend(t).URL).Only("CreateSnapshot").First(2)

	code, body := call(t, th.URL, "DescribeSnapshots")
	require.Equal(t, http.StatusOK, code, "an action outside Only passes")
	require.Equal(t, "ok DescribeSnapshots", body)

	for range 2 {
		code, body = call(t, th.URL, "CreateSnapshot")
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Contains(t, body, "<Code>RequestLimitExceeded</Code>")
		require.Contains(t, body, "<Response><Errors><Error>")
	}
	code, body = call(t, th.URL, "CreateSnapshot")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok CreateSnapshot", body, "the form body reaches the backend intact")

	require.Equal(t, 4, th.Requests())
	require.Equal(t, 2, th.Throttled())
	require.Equal(t, 3, th.Seen("CreateSnapshot"))
}

func TestThrottleWindow(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := NewThrottle(t, backend(t).URL).For(time.Minute)
	th.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	code, _ := call(t, th.URL, "CreateSnapshot")
	require.Equal(t, http.StatusServiceUnavailable, code)
	advance(59 * time.Second)
	code, _ = call(t, th.URL, "DeleteSnapshot")
	require.Equal(t, http.StatusServiceUnavailable, code)
	advance(time.Second)
	code, _ = call(t, th.URL, "CreateSnapshot")
	require.Equal(t, http.StatusOK, code, "the window ends a minute after its first request")
	require.Equal(t, 2, th.Throttled())
}

func TestThrottleAlwaysAndOff(t *testing.T) {
	t.Parallel()
	th, h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	th.Always()
	for range 3 {
		code, _ := call(t, srv.URL, "CreateSnapshots")
		require.Equal(t, http.StatusServiceUnavailable, code)
	}
	th.Off()
	code, _ := call(t, srv.URL, "CreateSnapshots")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 3, th.Throttled())
	require.Equal(t, 4, th.Requests())
}

func TestWriteEC2ErrorEscapes(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	WriteEC2Error(rec, http.StatusBadRequest, "InvalidParameterValue", "value <x> & y")
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Contains(t, rec.Body.String(), "value &lt;x&gt; &amp; y")
}

func TestSnapshotsInError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_, _ = io.WriteString(w, "<r><item><snapshotId>snap-1</snapshotId><status>completed</status></item>"+
			"<item><snapshotId>snap-2</snapshotId><status>pending</status></item><action>"+r.Form.Get("Action")+"</action></r>")
	}))
	t.Cleanup(srv.Close)
	th := NewThrottle(t, srv.URL).SnapshotsInError("disk <gone>")

	code, body := call(t, th.URL, "DescribeSnapshots")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "<r><item><snapshotId>snap-1</snapshotId><status>error</status><statusMessage>disk &lt;gone&gt;</statusMessage></item>"+
		"<item><snapshotId>snap-2</snapshotId><status>error</status><statusMessage>disk &lt;gone&gt;</statusMessage></item>"+
		"<action>DescribeSnapshots</action></r>", body)

	_, body = call(t, th.URL, "CreateSnapshot")
	require.Contains(t, body, "<status>completed</status>", "only DescribeSnapshots is rewritten")

	th.SnapshotsInError("")
	_, body = call(t, th.URL, "DescribeSnapshots")
	require.Contains(t, body, "<status>completed</status>")
	require.Equal(t, 0, th.Throttled())
}
