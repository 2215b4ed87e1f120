package planner_test

import (
	"encoding/json"
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

// parts renders region decisions as "job: source=keep us-west-2=RETIRE ...",
// newest first, with "deleted" for a part deleted before.
func parts(ds []planner.BackupDecision) []string {
	var out []string
	for _, d := range ds {
		s := d.Backup.JobID + ":"
		for _, p := range d.Parts {
			v := "RETIRE"
			switch {
			case p.Deleted:
				v = "deleted"
			case p.Missing:
				v = "missing"
			case p.Keep:
				v = "keep"
			}
			name := p.CopyRegion
			if name == "" {
				name = "source"
			}
			s += " " + name + "=" + v
		}
		out = append(out, s)
	}
	return out
}

func TestRetentionSets(t *testing.T) {
	t.Parallel()
	p := planner.Policy{Retention: planner.Retention{KeepDaily: 7}, CopyRegions: []string{"us-west-2", "eu-west-1"},
		CopyRetention: map[string]planner.Retention{"us-west-2": {KeepMonthly: 12}}}
	require.Equal(t, []planner.RegionRules{
		{Rules: planner.Retention{KeepDaily: 7}},
		{CopyRegion: "us-west-2", Rules: planner.Retention{KeepMonthly: 12}, Own: true},
		{CopyRegion: "eu-west-1", Rules: planner.Retention{KeepDaily: 7}},
	}, p.RetentionSets(), "the source first, then each copy region by its own rules or the policy's")
	require.True(t, planner.AnyRule(planner.Policy{CopyRegions: []string{"us-west-2"},
		CopyRetention: map[string]planner.Retention{"us-west-2": {KeepLast: 1}}}.RetentionSets()),
		"a copy region's rules alone retire its copies")
	require.False(t, planner.AnyRule(planner.Policy{CopyRegions: []string{"us-west-2"}}.RetentionSets()))
}

func TestSelectRegionRetention(t *testing.T) {
	t.Parallel()
	// A year and a half of daily backups; the source keeps 3 days, us-west-2
	// the newest of 2 months, eu-west-1 follows the source.
	sets := planner.Policy{Retention: planner.Retention{KeepDaily: 3}, CopyRegions: []string{"us-west-2", "eu-west-1"},
		CopyRetention: map[string]planner.Retention{"us-west-2": {KeepMonthly: 2}}}.RetentionSets()
	backups := daily(40) // 30 Nov back to 22 Oct
	ds := planner.SelectRegionRetention(backups, sets, nil, t0)
	got := parts(ds)
	require.Equal(t, "c1-000000000028: source=keep us-west-2=keep eu-west-1=keep", got[0], "the newest is kept everywhere")
	require.Equal(t, "c1-000000000026: source=keep us-west-2=RETIRE eu-west-1=keep", got[2])
	require.Equal(t, "c1-000000000025: source=RETIRE us-west-2=RETIRE eu-west-1=RETIRE", got[3])
	// 31 Oct is the newest backup of October: us-west-2 keeps it alone.
	oct31 := ds[30]
	require.Equal(t, t0.AddDate(0, 0, -30).Format("2006-01-02"), "2026-10-31")
	require.Equal(t, "c1-00000000000a: source=RETIRE us-west-2=keep eu-west-1=RETIRE", got[30])
	require.True(t, oct31.Keep, "a backup some region keeps stays in the catalog")
	require.Contains(t, oct31.Parts[1].Reasons, "monthly 2026-10")
	require.Equal(t, messages.Trim{JobID: "c1-00000000000a", Source: true, CopyRegions: []string{"eu-west-1"}}, oct31.Trim())

	retired, trims := planner.RetiredAndTrimmed(ds)
	require.Len(t, retired, 36, "40 backups: 3 kept by the source, 1 more by us-west-2")
	require.Equal(t, []messages.Trim{
		{JobID: "c1-000000000027", CopyRegions: []string{"us-west-2"}},
		{JobID: "c1-000000000026", CopyRegions: []string{"us-west-2"}},
		{JobID: "c1-00000000000a", Source: true, CopyRegions: []string{"eu-west-1"}},
	}, trims)

	// Once trimmed, the catalog says so: the deleted parts are neither kept
	// nor deleted again, and nothing more is selected.
	var after []messages.Backup
	for _, d := range ds {
		if !d.Keep {
			continue
		}
		b := d.Backup
		t := d.Trim()
		b.SourceDeleted, b.DeletedCopies = t.Source, t.CopyRegions
		after = append(after, b)
	}
	again := planner.SelectRegionRetention(after, sets, nil, t0)
	retired, trims = planner.RetiredAndTrimmed(again)
	require.Empty(t, retired)
	require.Empty(t, trims)
	require.Equal(t, "c1-00000000000a: source=deleted us-west-2=keep eu-west-1=deleted", parts(again)[3])

	// A held backup is kept in every region; one whose every region
	// retires it is retired whole, whatever was deleted before.
	holds := map[string]planner.Hold{"c1-000000000001": {JobID: "c1-000000000001"}}
	held := planner.SelectRegionRetention(backups, sets, holds, t0)
	require.Equal(t, "c1-000000000001: source=keep us-west-2=keep eu-west-1=keep", parts(held)[39])
	gone := backups[5]
	gone.SourceDeleted = true
	lastOnly := planner.Policy{Retention: planner.Retention{KeepLast: 1}, CopyRegions: []string{"us-west-2", "eu-west-1"},
		CopyRetention: map[string]planner.Retention{"us-west-2": {KeepLast: 1}}}.RetentionSets()
	whole := planner.SelectRegionRetention([]messages.Backup{backups[0], gone}, lastOnly, nil, t0)
	require.False(t, whole[1].Keep)
	require.Equal(t, messages.Trim{JobID: gone.JobID}, whole[1].Trim(), "retired whole: no trim")
}

// A copy region whose copies of the newest backups were deleted keeps its
// own newest: never the newest of the region's backups.
func TestSelectRegionRetentionKeepsEachRegionsNewest(t *testing.T) {
	t.Parallel()
	sets := planner.Policy{Retention: planner.Retention{KeepLast: 5}, CopyRegions: []string{"us-west-2"},
		CopyRetention: map[string]planner.Retention{"us-west-2": {KeepLast: 1}}}.RetentionSets()
	backups := daily(4)
	for i := range 2 {
		backups[i].DeletedCopies = []string{"us-west-2"} // say, copies an operator deleted
	}
	ds := planner.SelectRegionRetention(backups, sets, nil, t0)
	require.Equal(t, []string{
		"c1-000000000004: source=keep us-west-2=deleted",
		"c1-000000000003: source=keep us-west-2=deleted",
		"c1-000000000002: source=keep us-west-2=keep",
		"c1-000000000001: source=keep us-west-2=RETIRE",
	}, parts(ds))
	require.Contains(t, ds[2].Parts[1].Reasons, "newest")

	// A backup taken before eu-west-1 was a copy region has no copy there
	// to keep: that region's rules neither count nor keep it.
	sets = planner.Policy{Retention: planner.Retention{KeepLast: 1}, CopyRegions: []string{"us-west-2", "eu-west-1"},
		CopyRetention: map[string]planner.Retention{"eu-west-1": {KeepLast: 2}}}.RetentionSets()
	backups = daily(3)
	backups[0].CopyRegions = []string{"us-west-2", "eu-west-1"}
	backups[1].CopyRegions = []string{"us-west-2"}
	// backups[2] is from before copies were recorded: it may have copies anywhere.
	ds = planner.SelectRegionRetention(backups, sets, nil, t0)
	require.Equal(t, []string{
		"c1-000000000003: source=keep us-west-2=keep eu-west-1=keep",
		"c1-000000000002: source=RETIRE us-west-2=RETIRE eu-west-1=missing",
		"c1-000000000001: source=RETIRE us-west-2=RETIRE eu-west-1=keep",
	}, parts(ds))
	require.False(t, ds[1].Keep, "no region has it to keep: retired whole")
	require.Contains(t, ds[2].Parts[2].Reasons, "last 2")
}

// randomRegions marks some parts of a random catalog deleted already, as
// earlier retention runs left them, and makes random rules per copy region.
func randomRegions(r *rand.Rand, backups []messages.Backup, source planner.Retention) []planner.RegionRules {
	p := planner.Policy{Retention: source, CopyRegions: []string{"us-west-2", "eu-west-1", "ap-south-1"},
		CopyRetention: map[string]planner.Retention{}}
	for _, region := range p.CopyRegions {
		if r.IntN(3) == 0 {
			continue // follows the policy's rules
		}
		p.CopyRetention[region] = planner.Retention{KeepLast: r.IntN(3), KeepDaily: r.IntN(5), KeepMonthly: r.IntN(13),
			KeepYearly: r.IntN(3), CountPartial: r.IntN(2) == 0}
	}
	for i := range backups {
		if i == 0 {
			continue
		}
		backups[i].SourceDeleted = r.IntN(8) == 0
		if r.IntN(4) == 0 {
			// Taken while the cluster copied to fewer regions.
			backups[i].CopyRegions = p.CopyRegions[:r.IntN(len(p.CopyRegions))+1]
		}
		for _, region := range p.CopyRegions {
			if r.IntN(8) == 0 {
				backups[i].DeletedCopies = append(backups[i].DeletedCopies, region)
			}
		}
	}
	return p.RetentionSets()
}

// The selection's properties hold for every region: each region's newest
// backup and every held backup are kept in it; the answer is the same
// twice; a backup is kept while any region keeps it; applying what was
// selected (records retired, parts noted deleted) and selecting again
// deletes nothing more; and a newer backup never brings back a part that
// was deleted or selected for deletion.
func TestSelectRegionRetentionProperties(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 500; seed++ {
		r := rand.New(rand.NewPCG(seed, 11))
		backups, holds, rules := randomCatalog(r)
		sets := randomRegions(r, backups, rules)
		ds := planner.SelectRegionRetention(backups, sets, holds, t0)
		msg := fmt.Sprintf("seed %d, sets %+v", seed, sets)

		require.Equal(t, ds, planner.SelectRegionRetention(backups, sets, holds, t0), "the same answer twice: %s", msg)
		for k, set := range sets {
			newest := true
			for _, d := range ds {
				p := d.Parts[k]
				require.Equal(t, set.CopyRegion, p.CopyRegion)
				if p.Deleted || p.Missing {
					require.False(t, p.Keep, "a deleted or missing part is not kept: %s", msg)
					continue
				}
				if newest {
					require.True(t, p.Keep, "%s: the region's newest backup %s is kept: %s", set.Name(), d.Backup.JobID, msg)
					newest = false
				}
				if h, ok := holds[d.Backup.JobID]; ok && h.Active(t0) {
					require.True(t, p.Keep, "%s: a held backup is kept: %s", set.Name(), msg)
				}
			}
		}
		for _, d := range ds {
			anyKeep := slices.ContainsFunc(d.Parts, func(p planner.PartDecision) bool { return p.Keep })
			require.Equal(t, anyKeep, d.Keep, "a backup is kept while a region keeps it: %s", msg)
		}

		// Apply: retired records leave the catalog, trimmed parts are noted.
		retired, trims := planner.RetiredAndTrimmed(ds)
		trimmed := map[string]messages.Trim{}
		for _, t := range trims {
			trimmed[t.JobID] = t
		}
		var remaining []messages.Backup
		for _, b := range backups {
			if slices.Contains(retired, b.JobID) {
				continue
			}
			if t, ok := trimmed[b.JobID]; ok {
				b.SourceDeleted = b.SourceDeleted || t.Source
				b.DeletedCopies = append(slices.Clone(b.DeletedCopies), t.CopyRegions...)
			}
			remaining = append(remaining, b)
		}
		again, againTrims := planner.RetiredAndTrimmed(planner.SelectRegionRetention(remaining, sets, holds, t0))
		require.Empty(t, again, "running again over what was kept retires nothing more: %s", msg)
		require.Empty(t, againTrims, "running again over what was kept deletes nothing more: %s", msg)

		newer := messages.Backup{JobID: "c1-ffffffffffff", FinishedAt: backups[0].FinishedAt.Add(time.Duration(r.IntN(72)+1) * time.Hour),
			Partial: r.IntN(4) == 0}
		after := planner.SelectRegionRetention(append([]messages.Backup{newer}, backups...), sets, holds, t0)
		for i, d := range ds {
			for k, p := range d.Parts {
				if !p.Keep {
					require.False(t, after[i+1].Parts[k].Keep, "%s of %s was not kept and a newer backup kept it: %s",
						sets[k].Name(), d.Backup.JobID, msg)
				}
			}
		}
	}
}

// A catalog record written before copy regions had rules of their own
// decodes as a backup of which nothing was deleted: every region has it.
func TestOldCatalogRecordHasEveryPart(t *testing.T) {
	t.Parallel()
	var b messages.Backup
	require.NoError(t, json.Unmarshal([]byte(`{"schema":"`+messages.BackupSchema+`","job_id":"c1-000000000001","cluster":"c1",`+
		`"policy":"nightly","finished_at":"2026-11-30T02:00:00Z","regions":["us-east-1"]}`), &b))
	require.False(t, b.SourceDeleted)
	require.Empty(t, b.DeletedCopies)
	sets := planner.Policy{Retention: planner.Retention{KeepLast: 1}, CopyRegions: []string{"us-west-2"},
		CopyRetention: map[string]planner.Retention{"us-west-2": {KeepLast: 2}}}.RetentionSets()
	ds := planner.SelectRegionRetention([]messages.Backup{{JobID: "c1-000000000002", FinishedAt: t0.Add(time.Hour)}, b}, sets, nil, t0)
	require.Equal(t, "c1-000000000001: source=RETIRE us-west-2=keep", parts(ds)[1])
}
