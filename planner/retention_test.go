package planner_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

var t0 = time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC) // a Monday

// daily makes n backups, one a day at 02:00 going back from t0, newest first.
func daily(n int) []messages.Backup {
	out := make([]messages.Backup, n)
	for i := range out {
		out[i] = messages.Backup{JobID: fmt.Sprintf("c1-%012x", n-i), FinishedAt: t0.AddDate(0, 0, -i)}
	}
	return out
}

func kept(ds []planner.Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.Backup.JobID)
		}
	}
	return out
}

func reasons(ds []planner.Decision) map[string][]string {
	out := map[string][]string{}
	for _, d := range ds {
		out[d.Backup.JobID] = d.Reasons
	}
	return out
}

func TestSelectRetentionRules(t *testing.T) {
	t.Parallel()
	twice := []messages.Backup{ // two backups a day, 14:00 and 02:00
		{JobID: "c1-000000000006", FinishedAt: t0.Add(12 * time.Hour)},
		{JobID: "c1-000000000005", FinishedAt: t0},
		{JobID: "c1-000000000004", FinishedAt: t0.Add(-12 * time.Hour)},
		{JobID: "c1-000000000003", FinishedAt: t0.Add(-24 * time.Hour)},
		{JobID: "c1-000000000002", FinishedAt: t0.Add(-36 * time.Hour)},
		{JobID: "c1-000000000001", FinishedAt: t0.Add(-48 * time.Hour)},
	}
	cases := []struct {
		desc    string
		backups []messages.Backup
		rules   planner.Retention
		holds   map[string]planner.Hold
		now     time.Time
		kept    []string
		why     map[string]string // one reason each named backup must carry
	}{
		{
			desc: "no rule keeps everything", backups: daily(3),
			kept: []string{"c1-000000000003", "c1-000000000002", "c1-000000000001"},
		},
		{
			desc: "keep last 2", backups: daily(5), rules: planner.Retention{KeepLast: 2},
			kept: []string{"c1-000000000005", "c1-000000000004"},
			why:  map[string]string{"c1-000000000005": "newest", "c1-000000000004": "last 2"},
		},
		{
			desc: "keep within 36h of now", backups: daily(5), rules: planner.Retention{KeepWithin: 36 * time.Hour},
			now:  t0.Add(time.Hour),
			kept: []string{"c1-000000000005", "c1-000000000004"},
			why:  map[string]string{"c1-000000000004": "within 36h0m0s"},
		},
		{
			desc: "daily keeps the newest of each day", backups: twice, rules: planner.Retention{KeepDaily: 2},
			kept: []string{"c1-000000000006", "c1-000000000004"},
			why:  map[string]string{"c1-000000000006": "daily 2026-11-30", "c1-000000000004": "daily 2026-11-29"},
		},
		{
			desc: "weekly counts ISO weeks", backups: daily(15), rules: planner.Retention{KeepWeekly: 3},
			// Mon 30 Nov is week 49; Sun 29 Nov ends week 48; Sun 22 Nov ends week 47.
			kept: []string{"c1-00000000000f", "c1-00000000000e", "c1-000000000007"},
			why:  map[string]string{"c1-00000000000e": "weekly 2026-W48", "c1-000000000007": "weekly 2026-W47"},
		},
		{
			desc: "monthly and yearly", rules: planner.Retention{KeepMonthly: 2, KeepYearly: 2},
			backups: []messages.Backup{
				{JobID: "c1-000000000005", FinishedAt: t0},
				{JobID: "c1-000000000004", FinishedAt: t0.AddDate(0, 0, -10)},
				{JobID: "c1-000000000003", FinishedAt: t0.AddDate(0, -1, -5)},
				{JobID: "c1-000000000002", FinishedAt: t0.AddDate(0, -2, 0)},
				{JobID: "c1-000000000001", FinishedAt: t0.AddDate(-1, 0, 0)},
			},
			kept: []string{"c1-000000000005", "c1-000000000003", "c1-000000000001"},
			why:  map[string]string{"c1-000000000003": "monthly 2026-10", "c1-000000000001": "yearly 2025"},
		},
		{
			desc: "rules combine as a union", backups: daily(10),
			rules: planner.Retention{KeepLast: 1, KeepWithin: 50 * time.Hour, KeepWeekly: 3}, now: t0,
			kept: []string{"c1-00000000000a", "c1-000000000009", "c1-000000000008", "c1-000000000002"},
		},
		{
			desc: "a hold keeps a backup no rule keeps; an expired hold does not", backups: daily(4),
			rules: planner.Retention{KeepLast: 1}, now: t0,
			holds: map[string]planner.Hold{
				"c1-000000000002": {JobID: "c1-000000000002", Until: t0.Add(time.Hour), Reason: "audit"},
				"c1-000000000001": {JobID: "c1-000000000001", Until: t0.Add(-time.Hour)},
			},
			kept: []string{"c1-000000000004", "c1-000000000002"},
			why:  map[string]string{"c1-000000000002": "held until 2026-11-30T03:00:00Z (audit)"},
		},
		{
			desc: "partial backups take no slot unless the policy counts them",
			backups: []messages.Backup{
				{JobID: "c1-000000000004", FinishedAt: t0, Partial: true},
				{JobID: "c1-000000000003", FinishedAt: t0.AddDate(0, 0, -1), Partial: true},
				{JobID: "c1-000000000002", FinishedAt: t0.AddDate(0, 0, -2)},
				{JobID: "c1-000000000001", FinishedAt: t0.AddDate(0, 0, -3)},
			},
			rules: planner.Retention{KeepLast: 1, KeepDaily: 1},
			kept:  []string{"c1-000000000004", "c1-000000000002"},
			why:   map[string]string{"c1-000000000004": "newest", "c1-000000000002": "last 1"},
		},
		{
			desc: "counted partial backups fill the slots",
			backups: []messages.Backup{
				{JobID: "c1-000000000002", FinishedAt: t0, Partial: true},
				{JobID: "c1-000000000001", FinishedAt: t0.AddDate(0, 0, -1)},
			},
			rules: planner.Retention{KeepLast: 1, CountPartial: true},
			kept:  []string{"c1-000000000002"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			ds := planner.SelectRetention(tc.backups, tc.rules, tc.holds, tc.now)
			require.Equal(t, tc.kept, kept(ds))
			got := reasons(ds)
			for job, why := range tc.why {
				require.Contains(t, got[job], why, job)
			}
			for _, d := range ds {
				require.Equal(t, d.Keep, len(d.Reasons) > 0, "a kept backup says why, a retired one has no reason: %+v", d)
			}
		})
	}
}

func TestRetentionValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, planner.Retention{}.Validate())
	require.NoError(t, planner.Retention{KeepLast: 3, KeepWithin: time.Hour}.Validate())
	err := planner.Retention{KeepLast: -1, KeepWeekly: -2, KeepWithin: 30 * time.Second}.Validate()
	require.ErrorContains(t, err, "keep_last -1: must not be negative")
	require.ErrorContains(t, err, "keep_weekly -2: must not be negative")
	require.ErrorContains(t, err, "keep_within 30s: keeps nothing")
}

// randomCatalog makes up to 60 backups over about a year, newest first, some
// partial, with a few holds.
func randomCatalog(r *rand.Rand) ([]messages.Backup, map[string]planner.Hold, planner.Retention) {
	n := r.IntN(60) + 1
	at := t0
	backups := make([]messages.Backup, n)
	holds := map[string]planner.Hold{}
	for i := range backups {
		backups[i] = messages.Backup{JobID: fmt.Sprintf("c1-%012x", n-i), FinishedAt: at, Partial: r.IntN(6) == 0}
		if r.IntN(10) == 0 {
			holds[backups[i].JobID] = planner.Hold{JobID: backups[i].JobID, Until: t0.Add(time.Duration(r.IntN(48)-24) * time.Hour)}
		}
		at = at.Add(-time.Duration(r.IntN(6*24)+1) * time.Hour)
	}
	rules := planner.Retention{
		KeepLast: r.IntN(4), KeepDaily: r.IntN(8), KeepWeekly: r.IntN(5), KeepMonthly: r.IntN(4), KeepYearly: r.IntN(2),
		CountPartial: r.IntN(2) == 0,
	}
	if r.IntN(3) == 0 {
		rules.KeepWithin = time.Duration(r.IntN(20*24)+1) * time.Hour
	}
	return backups, holds, rules
}

// Properties of the selection over random catalogs: the newest and held
// backups are always kept; the answer is the same twice; selecting again
// over what was kept retires nothing more; and a newer backup added never
// makes an older one kept that was retired.
func TestSelectRetentionProperties(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 500; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		backups, holds, rules := randomCatalog(r)
		ds := planner.SelectRetention(backups, rules, holds, t0)
		msg := fmt.Sprintf("seed %d, rules %s", seed, rules)

		require.True(t, ds[0].Keep, "the newest is kept: %s", msg)
		for _, d := range ds {
			if h, ok := holds[d.Backup.JobID]; ok && h.Active(t0) {
				require.True(t, d.Keep, "a held backup is kept: %s", msg)
			}
		}
		require.Equal(t, ds, planner.SelectRetention(backups, rules, holds, t0), "the same answer twice: %s", msg)

		var remaining []messages.Backup
		for _, d := range ds {
			if d.Keep {
				remaining = append(remaining, d.Backup)
			}
		}
		require.Empty(t, planner.Retired(planner.SelectRetention(remaining, rules, holds, t0)),
			"running again over what was kept retires nothing more: %s", msg)

		newer := messages.Backup{JobID: "c1-ffffffffffff", FinishedAt: backups[0].FinishedAt.Add(time.Duration(r.IntN(72)+1) * time.Hour),
			Partial: r.IntN(4) == 0}
		after := planner.SelectRetention(append([]messages.Backup{newer}, backups...), rules, holds, t0)
		for i, d := range ds {
			if !d.Keep {
				require.False(t, after[i+1].Keep, "%s was retired and a newer backup kept it: %s", d.Backup.JobID, msg)
			}
		}
		require.True(t, slices.IsSortedFunc(planner.Retired(ds), func(a, b string) int {
			if a < b {
				return -1
			}
			return 1
		}))
	}
}
