package fleet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/pace"
)

// physicalLimit is the least time calls calls take through a bucket that
// starts full: the burst at once, the rest at the rate.
func physicalLimit(calls int, lim pace.Limit) time.Duration {
	return time.Duration(max(0, float64(calls-lim.Burst)) / lim.Rate * float64(time.Second))
}

func secs(d time.Duration) float64 { return d.Seconds() }

// snapshotOp is the operation a snapshot task calls, and how many calls a
// cluster of the shape needs.
func (s shape) snapshotOp(nodes int) (string, int) {
	if s.perInstance && s.volumes > 1 {
		return "CreateSnapshots", nodes
	}
	return "CreateSnapshot", nodes * s.volumes
}

// report states a run's figures against the targets, in the benchmark's
// metrics and in its log.
type report struct {
	tb    testing.TB
	lines []string
}

func (r *report) metric(v float64, unit, format string, a ...any) {
	if b, ok := r.tb.(*testing.B); ok {
		b.ReportMetric(v, unit)
	}
	r.lines = append(r.lines, fmt.Sprintf("%-34s %s", unit, fmt.Sprintf(format, a...)))
}

func (r *report) done() { r.tb.Logf("\n%s", strings.Join(r.lines, "\n")) }

// common reports what every scenario is held to: no task failed, task
// retries, throttles against all calls, per-volume refusals, wall time.
func (f *fleet) common(r *report, wall time.Duration, kind messages.Kind) {
	failed, retried, codes := f.obs.failedOrRetried(kind)
	r.metric(float64(failed), "tasks-failed", "%d %s tasks failed (target 0) %v", failed, kind, codes)
	r.metric(float64(retried), "task-retries", "%d %s task deliveries retried", retried, kind)
	calls, throttled := f.callTotals(allOps...)
	r.metric(100*float64(throttled)/float64(max(calls, 1)), "throttled-%", "%d of %d EC2 calls throttled (target ≤ 1%%)", throttled, calls)
	refusals := f.sim.Refusals()
	n := 0
	for _, v := range refusals {
		n += v
	}
	r.metric(float64(n), "volume-refusals", "%d calls refused for a per-volume limit %v", n, refusals)
	r.metric(wall.Seconds(), "wall-s", "%.1f s of real time at %g× (QUIESCE_FLEET_SCALE)", wall.Seconds(), f.clock.Scale)
}

// BenchmarkFleetOneCluster backs up one 10,000-node, 40,000-volume cluster:
// one CreateSnapshots per node, and one CreateSnapshot per volume.
func BenchmarkFleetOneCluster(b *testing.B) {
	// The per-volume run has four times the calls; it runs at 50× to keep
	// the benchmark to minutes.
	for _, per := range []struct {
		name        string
		perInstance bool
		scale       float64
	}{{"per=node", true, 20}, {"per=volume", false, 50}} {
		b.Run(per.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				sh := shape{clusters: 1, nodes: 10000, volumes: 4, perInstance: per.perInstance, workers: 8, concurrency: 128, scale: per.scale}
				f := newFleet(b, sh)
				f.startRoles(false)
				b.StartTimer()
				start := time.Now()
				jobs := f.run(30 * time.Minute)
				wall := time.Since(start)
				b.StopTimer()
				f.oneCluster(b, jobs[0], wall)
			}
		})
	}
}

func (f *fleet) oneCluster(tb testing.TB, j messages.Job, wall time.Duration) {
	r := &report{tb: tb}
	op, calls := f.shape.snapshotOp(f.shape.nodes)
	lim := snapshotLimit
	from, to := f.phase(j)
	phase := to.Sub(from)
	limit := physicalLimit(calls, lim)
	r.metric(secs(phase), "phase-sim-s", "snapshot phase %.0f s simulated, %d %s calls", secs(phase), calls, op)
	r.metric(secs(limit), "limit-sim-s", "physical limit %.0f s: (%d - %d burst) / %g a second", secs(limit), calls, lim.Burst, lim.Rate)
	r.metric(100*(secs(phase)/secs(limit)-1), "over-limit-%", "%.1f%% over the physical limit (target ≤ 5%%)", 100*(secs(phase)/secs(limit)-1))
	u := f.budget(op, lim, from, to)
	r.metric(100*u.used, "budget-used-%", "%.1f%% of the %s budget used in the phase: %d calls, %d throttled (target ≥ 95%%)", 100*u.used, op, u.ok, u.throttled)
	r.metric(secs(f.pace.maxWait(op)), "max-wait-sim-s", "longest wait of a %s call for the budget: %.0f s", op, secs(f.pace.maxWait(op)))
	firstCall, lastCall, _ := f.sim.Span(account, region, map[string]string{messages.TagJob: j.ID})
	calling := lastCall.Sub(firstCall)
	r.metric(100*(secs(calling)/secs(limit)-1), "calls-over-limit-%", "first to last %s call: %.0f s, %.1f%% over the limit; barrier to first call %.0f s, last call to the phase's end %.0f s",
		op, secs(calling), 100*(secs(calling)/secs(limit)-1), secs(firstCall.Sub(from)), secs(to.Sub(lastCall)))
	r.lines = append(r.lines, f.timeline(op, from, to))
	f.common(r, wall, messages.KindSnapshot)
	r.done()
}

// BenchmarkFleetWave submits 100 clusters of 100 nodes at once, in one
// account and region: 10,000 CreateSnapshots calls share one budget.
func BenchmarkFleetWave(b *testing.B) {
	for range b.N {
		b.StopTimer()
		f := newFleet(b, shape{clusters: 100, nodes: 100, volumes: 4, perInstance: true, workers: 8, concurrency: 128})
		f.startRoles(false)
		b.StartTimer()
		start := time.Now()
		jobs := f.run(30 * time.Minute)
		wall := time.Since(start)
		b.StopTimer()
		f.wave(b, jobs, wall)
	}
}

// BenchmarkFleetWaveBehindALargeCluster submits a 2,000-node cluster, then
// 20 clusters of 50 nodes: how the small ones fare behind the large one.
func BenchmarkFleetWaveBehindALargeCluster(b *testing.B) {
	sizes := append([]int{2000}, slices.Repeat([]int{50}, 20)...)
	for range b.N {
		b.StopTimer()
		f := newFleet(b, shape{clusters: len(sizes), sizes: sizes, volumes: 4, perInstance: true, workers: 8, concurrency: 128})
		f.startRoles(false)
		b.StartTimer()
		start := time.Now()
		jobs := f.run(30 * time.Minute)
		wall := time.Since(start)
		b.StopTimer()
		f.wave(b, jobs, wall)
	}
}

func (f *fleet) wave(tb testing.TB, jobs []messages.Job, wall time.Duration) {
	r := &report{tb: tb}
	lim := snapshotLimit
	var op string
	first, last := time.Time{}, time.Time{}
	barriers := make([]float64, len(jobs))
	calls := make([]int, len(jobs))
	phases := make([]float64, len(jobs))
	for i, j := range jobs {
		from, to := f.phase(j)
		if first.IsZero() || from.Before(first) {
			first = from
		}
		last = maxTime(last, to)
		op, calls[i] = f.shape.snapshotOp(f.shape.nodesOf(i))
		phases[i] = secs(to.Sub(from))
		barriers[i] = secs(from.Sub(epoch))
	}
	total := 0
	for _, c := range calls {
		total += c
	}
	span := last.Sub(first)
	limit := physicalLimit(total, lim)
	r.metric(secs(span), "wave-sim-s", "%d clusters, %d %s calls: first barrier to last phase end %.0f s simulated", len(jobs), total, op, secs(span))
	r.metric(secs(limit), "limit-sim-s", "physical limit %.0f s", secs(limit))
	r.metric(100*(secs(span)/secs(limit)-1), "over-limit-%", "%.1f%% over the physical limit", 100*(secs(span)/secs(limit)-1))
	u := f.budget(op, lim, first, last)
	r.metric(100*u.used, "budget-used-%", "%.1f%% of the %s budget used over the wave: %d calls, %d throttled (target ≥ 95%%)", 100*u.used, op, u.ok, u.throttled)
	sortedPhases := slices.Clone(phases)
	slices.Sort(sortedPhases)
	r.metric(sortedPhases[len(sortedPhases)/2], "phase-p50-sim-s", "clusters' snapshot phases: p50 %.0f s, max %.0f s; barriers spread over %.0f s",
		sortedPhases[len(sortedPhases)/2], sortedPhases[len(sortedPhases)-1], slices.Max(barriers)-slices.Min(barriers))
	// Two fair shares. The wave's: every cluster submitted with it owns an
	// equal part of the budget for the whole wave, so its phase should not
	// exceed its calls at rate/N (the target's). The moment's: the budget
	// split equally among the clusters snapshotting at each moment
	// (processor sharing, given when each barrier opened), never less than
	// its calls at the whole rate; stricter for a cluster whose barrier
	// opened late.
	dynamic := fairShares(barriers, calls, lim.Rate, float64(lim.Burst))
	worstWave, worstWaveAt, worstNow, worstNowAt := 0.0, 0, 0.0, 0
	lag := 0.0
	for i, j := range jobs {
		wave := float64(calls[i]) * float64(len(jobs)) / lim.Rate
		if x := phases[i] / wave; x > worstWave {
			worstWave, worstWaveAt = x, i
		}
		dynamic[i] = max(dynamic[i], float64(calls[i])/lim.Rate)
		if x := phases[i] / dynamic[i]; x > worstNow {
			worstNow, worstNowAt = x, i
		}
		_, to := f.phase(j)
		_, lastCall, _ := f.sim.Span(account, region, map[string]string{messages.TagJob: j.ID})
		lag = max(lag, secs(to.Sub(lastCall)))
	}
	r.metric(worstWave, "worst-wave-share-ratio", "worst phase against the cluster's share of the wave's budget: %.2f× (cluster %s: %.0f s against %.0f s; target ≤ 1.2×)",
		worstWave, clusterName(worstWaveAt), phases[worstWaveAt], float64(calls[worstWaveAt])*float64(len(jobs))/lim.Rate)
	r.metric(worstNow, "worst-moment-share-ratio", "worst phase against an equal split among the clusters snapshotting at each moment: %.2f× (cluster %s: %.0f s against %.0f s)",
		worstNow, clusterName(worstNowAt), phases[worstNowAt], dynamic[worstNowAt])
	// Where that cluster's phase went: waiting for its first call, its
	// calls, and its results reaching the coordinator after the last.
	wj := jobs[worstNowAt]
	from, to := f.phase(wj)
	firstCall, lastCall, _ := f.sim.Span(account, region, map[string]string{messages.TagJob: wj.ID})
	r.lines = append(r.lines, fmt.Sprintf("%-34s barrier at %.0f s; first call +%.0f s; calls over %.0f s; last result +%.0f s after the last call",
		"that-phase", secs(from.Sub(epoch)), secs(firstCall.Sub(from)), secs(lastCall.Sub(firstCall)), secs(to.Sub(lastCall))))
	r.metric(lag, "result-lag-sim-s", "longest time from a cluster's last EC2 call to its phase's end (results applied by the coordinator): %.0f s", lag)
	f.common(r, wall, messages.KindSnapshot)
	r.done()
}

// timeline is how many calls of op went through in each tenth of a window,
// against what the rate allows there.
func (f *fleet) timeline(op string, from, to time.Time) string {
	step := to.Sub(from) / 10
	if step <= 0 {
		return ""
	}
	counts := make([]int, 10)
	for _, c := range f.sim.Calls(account, region, op) {
		if c.Throttled || c.At.Before(from) || !c.At.Before(to) {
			continue
		}
		counts[min(9, int(c.At.Sub(from)/step))]++
	}
	return fmt.Sprintf("%-34s %s calls per %.0f s: %v (the rate allows %.0f)", "timeline", op, secs(step), counts, secs(step)*snapshotLimit.Rate)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// BenchmarkFleetRetention retires a backup of 40,000 snapshots: one
// retention task deletes them all, DeleteSnapshot paced by the budget.
func BenchmarkFleetRetention(b *testing.B) {
	for range b.N {
		b.StopTimer()
		f := newFleet(b, shape{workers: 2, concurrency: 16, scale: 50})
		retired := f.plantBackup("c000", 40000)
		f.startRoles(true)
		b.StartTimer()
		start := time.Now()
		res := f.retention("c000", []string{retired}, 30*time.Minute)
		wall := time.Since(start)
		b.StopTimer()
		f.retained(b, res, 40000, wall)
	}
}

// plantBackup puts n completed snapshots of one job of cluster into EC2,
// as a backup taken earlier, and returns the job.
func (f *fleet) plantBackup(cluster string, n int) string {
	job := messages.JobIDFor(cluster, "earlier")
	for i := range n {
		f.sim.PutSnapshot(account, region, fmt.Sprintf("vol-%s-%05d", cluster, i), map[string]string{
			messages.TagManaged: "true", messages.TagCluster: cluster, messages.TagJob: job,
		}, true)
	}
	return job
}

func (f *fleet) retained(tb testing.TB, res messages.TaskResult, n int, wall time.Duration) {
	r := &report{tb: tb}
	if res.Outcome != messages.OutcomeSucceeded || len(res.Deleted) != n {
		tb.Fatalf("retention %s: %d of %d deleted: %s", res.Outcome, len(res.Deleted), n, res.Error)
	}
	var from, to time.Time
	for _, c := range f.sim.Calls(account, region, "DeleteSnapshot") {
		if c.Throttled {
			continue
		}
		if from.IsZero() {
			from = c.At
		}
		to = c.At
	}
	lim := deleteLimit
	span := to.Sub(from)
	limit := physicalLimit(n, lim)
	r.metric(secs(span), "deletes-sim-s", "%d snapshots deleted in %.0f s simulated", n, secs(span))
	r.metric(secs(limit), "limit-sim-s", "physical limit %.0f s", secs(limit))
	r.metric(100*(secs(span)/secs(limit)-1), "over-limit-%", "%.1f%% over the physical limit", 100*(secs(span)/secs(limit)-1))
	u := f.budget("DeleteSnapshot", lim, from, to)
	r.metric(100*u.used, "budget-used-%", "%.1f%% of the DeleteSnapshot budget used: %d calls, %d throttled (target ≥ 95%%)", 100*u.used, u.ok, u.throttled)
	f.common(r, wall, messages.KindRetention)
	r.done()
}

// TestFleetSmall runs a small fleet through the whole path, EC2 limits
// included, and a retention of what it took: every job succeeds, every
// snapshot is taken once and deleted once, no task fails.
func TestFleetSmall(t *testing.T) {
	t.Parallel()
	sh := shape{clusters: 2, nodes: 150, volumes: 2, perInstance: true, workers: 3, concurrency: 32, scale: 100}
	f := newFleet(t, sh)
	f.startRoles(false)
	start := time.Now()
	jobs := f.run(5 * time.Minute)
	for i, j := range jobs {
		if got := f.sim.Count(account, region, map[string]string{messages.TagJob: j.ID}); got != sh.nodes*sh.volumes {
			t.Fatalf("cluster %s: %d snapshots, want %d", clusterName(i), got, sh.nodes*sh.volumes)
		}
	}
	f.wave(t, jobs, time.Since(start))
	if failed, _, codes := f.obs.failedOrRetried(messages.KindSnapshot); failed > 0 {
		t.Fatalf("%d snapshot tasks failed: %v", failed, codes)
	}
	if n := len(f.sim.Refusals()); n > 0 {
		t.Fatalf("per-volume limits hit: %v", f.sim.Refusals())
	}

	start = time.Now()
	res := f.retention(clusterName(0), []string{jobs[0].ID}, 5*time.Minute)
	f.retained(t, res, sh.nodes*sh.volumes, time.Since(start))
	if got := f.sim.Count(account, region, map[string]string{messages.TagManaged: "true"}); got != sh.nodes*sh.volumes {
		t.Fatalf("%d managed snapshots left, want the other cluster's %d", got, sh.nodes*sh.volumes)
	}
}
