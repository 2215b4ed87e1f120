package fleet

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// fairShares returns how long each job's snapshot phase would take if the
// budget were shared equally among the jobs in their snapshot phase at
// every moment (processor sharing: tokens handed round robin among them):
// job i's barrier is at barriers[i] seconds and it needs calls[i]
// calls, through a bucket of burst tokens, full at the first barrier,
// refilled at rate a second.
func fairShares(barriers []float64, calls []int, rate, burst float64) []float64 {
	n := len(barriers)
	left := append([]int(nil), calls...)
	finish := make([]float64, n)
	remaining := 0
	t := math.Inf(1)
	for i := range n {
		remaining += calls[i]
		t = min(t, barriers[i])
		if calls[i] == 0 {
			finish[i] = barriers[i]
		}
	}
	tokens := burst
	last := n - 1
	for remaining > 0 {
		pick, next := -1, math.Inf(1)
		for k := 1; k <= n; k++ {
			i := (last + k) % n
			switch {
			case left[i] == 0:
			case barriers[i] <= t:
				if pick < 0 {
					pick = i
				}
			default:
				next = min(next, barriers[i])
			}
		}
		if pick >= 0 && tokens >= 1 {
			tokens--
			last = pick
			left[pick]--
			remaining--
			if left[pick] == 0 {
				finish[pick] = t
			}
			continue
		}
		// Wait for the next token, or the next barrier if sooner.
		step := next - t
		if pick >= 0 {
			step = min(step, (1-tokens)/rate)
		}
		tokens = min(burst, tokens+step*rate)
		t += step
	}
	out := make([]float64, n)
	for i := range n {
		out[i] = finish[i] - barriers[i]
	}
	return out
}

func TestFairShares(t *testing.T) {
	t.Parallel()
	// Two equal jobs at once share the budget: both end together, when the
	// bucket's 10 tokens and 10 s of 1 a second are spent.
	got := fairShares([]float64{0, 0}, []int{10, 10}, 1, 10)
	require.InDelta(t, 10, got[0], 1)
	require.InDelta(t, 10, got[1], 1e-9)
	// A small job arriving while a large one runs gets half the budget, not
	// the end of the queue.
	got = fairShares([]float64{0, 100}, []int{1000, 10}, 1, 10)
	require.InDelta(t, 18, got[1], 1, "every other token, from the first at its barrier")
	require.InDelta(t, 1000, got[0], 1)
	// A job alone, after the bucket refilled.
	got = fairShares([]float64{0, 500}, []int{5, 5}, 1, 10)
	require.InDelta(t, 0, got[0], 1e-9)
	require.InDelta(t, 0, got[1], 1e-9)
}
