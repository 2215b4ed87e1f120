package ebs

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/worker/errclass"
)

// TestRetryQuotaBoundsAmplification shows what the retry quota buys under
// sustained throttling: 30 concurrent snapshot calls with 8 attempts each
// would send EC2 240 requests; the default bucket (500 tokens, 5 per
// throttled retry) grants 100 retries in all, so EC2 sees 130, and every
// call comes back as a delayed task retry. (Create makes no look-up of its
// own whose success would put a token back: the runtime looks before it.)
func TestRetryQuotaBoundsAmplification(t *testing.T) {
	t.Parallel()
	const calls, attempts = 30, 8
	for _, tt := range []struct {
		desc     string
		quota    int
		min, max int
	}{
		{desc: "default quota", quota: 0, min: calls + DefaultRetryQuota/5, max: calls + DefaultRetryQuota/5},
		{desc: "no quota", quota: -1, min: calls * attempts, max: calls * attempts},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			f := newFakeEC2(t)
			f.on("DescribeSnapshots", fakeAnswer{body: "<snapshotSet/>"})
			f.on("CreateSnapshot", fakeAnswer{status: 503, code: CodeRequestLimitExceeded})
			opts := fastOptions()
			opts.MaxAttempts = attempts
			opts.RetryQuota = tt.quota
			d := fakeDriver(t, f, opts)

			var wg sync.WaitGroup
			errs := make([]error, calls)
			for i := range calls {
				wg.Go(func() {
					_, errs[i] = d.Create(t.Context(), createRequest(fmt.Sprintf("c1-000000000001.snapshot.vol-%d", i), fmt.Sprintf("vol-%d", i)))
				})
			}
			wg.Wait()
			codes := map[string]int{}
			for _, err := range errs {
				require.Error(t, err)
				delay, ok := errclass.Delay(err)
				require.True(t, ok)
				require.GreaterOrEqual(t, delay, ThrottleDelay)
				codes[errclass.Code(err)]++
			}
			n := f.count("CreateSnapshot")
			require.GreaterOrEqual(t, n, tt.min)
			require.LessOrEqual(t, n, tt.max)
			t.Logf("%s: %d requests to EC2 for %d calls; outcomes %v", tt.desc, f.count("CreateSnapshot"), calls, codes)
		})
	}
}
