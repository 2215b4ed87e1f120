package pace

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The bucket arithmetic as a pure function of the state and the time.

var t0 = time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC).UnixNano()

func testPacer() *Pacer {
	return &Pacer{opts: Options{Limit: func(Key) Limit { return Limit{Rate: 5, Burst: 100} }}.withDefaults()}
}

func TestTakeBurstThenRate(t *testing.T) {
	t.Parallel()
	p := testPacer()
	lim := Limit{Rate: 5, Burst: 100}
	var s state
	// A bucket never used holds its burst less the headroom (10%): 90 calls
	// at once, then one every 200 ms.
	slots, _ := p.take(&s, lim, t0, 100)
	require.Len(t, slots, 100, "MaxAhead (10s) covers the 10 slots past the burst")
	for i, slot := range slots {
		want := t0
		if i >= 90 {
			want = t0 + int64(i-89)*int64(200*time.Millisecond)
		}
		require.Equal(t, want, slot, "slot %d", i)
	}
	require.InDelta(t, -10, p.view(s, lim, t0).Tokens, 1e-9, "ten calls hold slots ahead")
	// One second later five tokens came back, all of them already
	// reserved by the ten calls waiting.
	require.InDelta(t, -5, p.view(s, lim, t0+int64(time.Second)).Tokens, 1e-9)
	// After 20 s without calls the bucket is full again, never fuller.
	require.InDelta(t, 90, p.view(s, lim, t0+int64(20*time.Second)).Tokens, 1e-9)
}

func TestTakeStopsAtMaxAhead(t *testing.T) {
	t.Parallel()
	p := testPacer()
	lim := Limit{Rate: 5, Burst: 100}
	var s state
	slots, _ := p.take(&s, lim, t0, 90)
	require.Len(t, slots, 90)
	// MaxAhead is 10 s: 50 more slots at 5 a second, the last one 10 s out.
	slots, retry := p.take(&s, lim, t0, 100)
	require.Len(t, slots, 50)
	require.Zero(t, retry)
	require.Equal(t, t0+int64(10*time.Second), slots[49])
	slots, retry = p.take(&s, lim, t0, 1)
	require.Empty(t, slots)
	require.Equal(t, t0+int64(200*time.Millisecond), retry, "the next slot is 10.2 s out: try again in 200 ms")
}

func TestRateGrowsBackAfterThrottles(t *testing.T) {
	t.Parallel()
	p := testPacer()
	lim := Limit{Rate: 10, Burst: 100}
	s := state{Rate: 3, Cut: t0}
	for _, tt := range []struct {
		after time.Duration
		want  float64
	}{
		{0, 3}, {4 * time.Second, 3}, {5 * time.Second, 4}, {12 * time.Second, 5}, {time.Minute, 10},
	} {
		c := s
		require.InDelta(t, tt.want, p.rate(&c, lim, t0+int64(tt.after)), 1e-9, "after %s", tt.after)
	}
	// Grown back to the limit, the state says so by forgetting the rate.
	c := s
	p.rate(&c, lim, t0+int64(time.Minute))
	require.Zero(t, c.Rate)
	// A rate above the limit (a lower limit configured since) is capped.
	require.InDelta(t, 10, p.rate(&state{Rate: 40}, lim, t0), 1e-9)
}

func TestShapeKeepsHeadroom(t *testing.T) {
	t.Parallel()
	p := testPacer()
	for _, tt := range []struct {
		lim       Limit
		wantBurst float64
	}{
		{Limit{Rate: 5, Burst: 100}, 90},
		{Limit{Rate: 20, Burst: 100}, 90},
		{Limit{Rate: 1, Burst: 5}, 4},
		{Limit{Rate: 1, Burst: 1}, 1},
		{Limit{Rate: 1, Burst: 0}, 1},
	} {
		interval, tolerance := p.shape(tt.lim, tt.lim.Rate)
		require.InDelta(t, 1e9/tt.lim.Rate, interval, 1e-6)
		require.InDelta(t, tt.wantBurst, tolerance/interval+1, 1e-9, "%+v", tt.lim)
	}
}

func TestKeyValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, Key{Account: "123456789012", Region: "us-east-1", Op: "CreateSnapshots"}.Validate())
	require.NoError(t, Key{Account: "default", Region: "eu-west-3", Op: "DescribeSnapshots"}.Validate())
	for _, k := range []Key{
		{Region: "us-east-1", Op: "CreateSnapshot"},
		{Account: "1", Op: "CreateSnapshot"},
		{Account: "1", Region: "us-east-1"},
		{Account: "1.2", Region: "us-east-1", Op: "CreateSnapshot"},
		{Account: "1", Region: "us east", Op: "CreateSnapshot"},
		{Account: "1", Region: "us-east-1", Op: "Create*"},
	} {
		require.Error(t, k.Validate(), "%+v", k)
	}
}
