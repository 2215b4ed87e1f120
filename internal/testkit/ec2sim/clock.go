package ec2sim

import (
	"context"
	"time"

	"github.com/quiesce/quiesce/pace"
)

// Clock is simulated time running Scale times faster than the real clock:
// an hour of EC2 budget passes in 36 s at 100×. The simulator and every
// pacer of a simulation read the same Clock, so their buckets agree.
type Clock struct {
	// Scale is simulated seconds per real second.
	Scale float64
	epoch time.Time // simulated time at start
	start time.Time // real time at start
}

var _ pace.Clock = (*Clock)(nil)

// NewClock starts simulated time at epoch, running scale times faster than
// real time.
func NewClock(epoch time.Time, scale float64) *Clock {
	if scale <= 0 {
		scale = 1
	}
	return &Clock{Scale: scale, epoch: epoch, start: time.Now()}
}

// Now is the simulated time.
func (c *Clock) Now() time.Time {
	return c.epoch.Add(c.Sim(time.Since(c.start)))
}

// Sim converts a real duration to simulated time.
func (c *Clock) Sim(real time.Duration) time.Duration {
	return time.Duration(float64(real) * c.Scale)
}

// Real converts a simulated duration to real time.
func (c *Clock) Real(sim time.Duration) time.Duration {
	return time.Duration(float64(sim) / c.Scale)
}

// SimTime is the simulated time of a real instant.
func (c *Clock) SimTime(real time.Time) time.Time {
	return c.epoch.Add(c.Sim(real.Sub(c.start)))
}

// Sleep waits for d of simulated time, or until ctx ends.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	return pace.SystemClock{}.Sleep(ctx, c.Real(d))
}
