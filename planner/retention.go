package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// Retention says which successful backups of a policy are kept. Every rule
// keeps backups of its own; a backup is kept when any rule keeps it (a
// union, as restic's forget), and retired otherwise. A Retention with no
// rule keeps every backup.
type Retention struct {
	// KeepLast keeps the newest N backups.
	KeepLast int
	// KeepWithin keeps every backup finished within this age of now.
	KeepWithin time.Duration
	// KeepDaily, KeepWeekly, KeepMonthly and KeepYearly keep the newest
	// backup of each of the last N days, ISO weeks, months and years (UTC)
	// that have a backup.
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	KeepYearly  int
	// CountPartial lets partial backups (nodes left out) fill the slots of
	// keep_last and the calendar rules. Without it they never take the
	// place of a backup of every node: only keep_within, a hold, or being
	// the newest keeps one.
	CountPartial bool
}

// MinKeepWithin is the shortest keep_within that keeps anything: a shorter
// one is a rule that keeps nothing.
const MinKeepWithin = time.Minute

// Any reports whether the retention has a rule at all.
func (r Retention) Any() bool {
	return r.KeepLast > 0 || r.KeepWithin > 0 || r.KeepDaily > 0 || r.KeepWeekly > 0 ||
		r.KeepMonthly > 0 || r.KeepYearly > 0
}

// Validate names every rule that cannot keep anything.
func (r Retention) Validate() error {
	var errs []error
	for _, c := range []struct {
		name string
		n    int
	}{{"keep_last", r.KeepLast}, {"keep_daily", r.KeepDaily}, {"keep_weekly", r.KeepWeekly},
		{"keep_monthly", r.KeepMonthly}, {"keep_yearly", r.KeepYearly}} {
		if c.n < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must not be negative", c.name, c.n))
		}
	}
	switch {
	case r.KeepWithin < 0:
		errs = append(errs, fmt.Errorf("keep_within %s: must not be negative", r.KeepWithin))
	case r.KeepWithin > 0 && r.KeepWithin < MinKeepWithin:
		errs = append(errs, fmt.Errorf("keep_within %s: keeps nothing; use at least %s", r.KeepWithin, MinKeepWithin))
	}
	return errors.Join(errs...)
}

// String describes the rules, as the dry run prints them.
func (r Retention) String() string {
	if !r.Any() {
		return "keep every backup"
	}
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", what, n))
		}
	}
	add(r.KeepLast, "last")
	if r.KeepWithin > 0 {
		parts = append(parts, "within "+r.KeepWithin.String())
	}
	add(r.KeepDaily, "daily")
	add(r.KeepWeekly, "weekly")
	add(r.KeepMonthly, "monthly")
	add(r.KeepYearly, "yearly")
	if r.CountPartial {
		parts = append(parts, "partial backups count")
	}
	return "keep " + strings.Join(parts, ", ")
}

// Hold keeps one backup from being retired, until a time or until it is
// released. A running restore holds the backup it restores.
type Hold struct {
	JobID string    `json:"job_id"`
	Until time.Time `json:"until,omitempty"`
	By    string    `json:"by,omitempty"`
	// Reason is the operator's, or the restore that holds it.
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Active reports whether the hold still keeps its backup at now.
func (h Hold) Active(now time.Time) bool { return h.Until.IsZero() || now.Before(h.Until) }

// Decision is what retention decided for one backup, with every reason a
// kept backup is kept.
type Decision struct {
	Backup  messages.Backup
	Keep    bool
	Reasons []string
}

// SelectRetention decides which backups to keep. backups must be newest
// first, as Backups returns them, and be one policy's. It is a pure
// function: the same backups, holds and time give the same answer; the
// newest backup is always kept; a held backup is always kept; running it
// again over the backups it kept retires nothing more; and a newer backup
// added never makes an older one kept that was retired.
func SelectRetention(backups []messages.Backup, r Retention, holds map[string]Hold, now time.Time) []Decision {
	out := make([]Decision, len(backups))
	keep := func(i int, why string) {
		out[i].Keep = true
		out[i].Reasons = append(out[i].Reasons, why)
	}
	for i, b := range backups {
		out[i].Backup = b
	}
	if !r.Any() {
		for i := range out {
			keep(i, "no retention rule")
		}
		return out
	}
	counts := func(b messages.Backup) bool { return r.CountPartial || !b.Partial }
	if len(backups) > 0 {
		keep(0, "newest")
	}
	last := 0
	for i, b := range backups {
		if last < r.KeepLast && counts(b) {
			last++
			keep(i, fmt.Sprintf("last %d", last))
		}
	}
	if r.KeepWithin > 0 {
		for i, b := range backups {
			if !b.FinishedAt.Before(now.Add(-r.KeepWithin)) {
				keep(i, "within "+r.KeepWithin.String())
			}
		}
	}
	for _, g := range []struct {
		n    int
		name string
		key  func(time.Time) string
	}{
		{r.KeepDaily, "daily", func(t time.Time) string { return t.Format("2006-01-02") }},
		{r.KeepWeekly, "weekly", func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{r.KeepMonthly, "monthly", func(t time.Time) string { return t.Format("2006-01") }},
		{r.KeepYearly, "yearly", func(t time.Time) string { return t.Format("2006") }},
	} {
		seen := map[string]bool{}
		for i, b := range backups {
			if len(seen) >= g.n {
				break
			}
			if !counts(b) {
				continue
			}
			k := g.key(b.FinishedAt.UTC())
			if !seen[k] {
				seen[k] = true
				keep(i, g.name+" "+k)
			}
		}
	}
	for i, b := range backups {
		if h, ok := holds[b.JobID]; ok && h.Active(now) {
			why := "held"
			if !h.Until.IsZero() {
				why += " until " + h.Until.UTC().Format(time.RFC3339)
			}
			if h.Reason != "" {
				why += " (" + h.Reason + ")"
			}
			keep(i, why)
		}
	}
	return out
}

// Retired lists the job IDs of the backups decisions retire, sorted.
func Retired(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		if !d.Keep {
			out = append(out, d.Backup.JobID)
		}
	}
	sort.Strings(out)
	return out
}

// SelectRetired returns the job IDs of the backups to retire under
// keep-last-N alone: everything but the newest keepLast. keepLast below 1
// retires nothing, so the newest backup is never selected. backups must be
// newest first, as Backups returns them.
func SelectRetired(backups []messages.Backup, keepLast int) []string {
	if keepLast < 1 {
		return nil
	}
	return Retired(SelectRetention(backups, Retention{KeepLast: keepLast, CountPartial: true}, nil, time.Time{}))
}

// Holds returns a cluster's active and expired holds by job ID.
func Holds(ctx context.Context, kv jetstream.KeyValue, cluster string) (map[string]Hold, error) {
	out := map[string]Hold{}
	lister, err := kv.ListKeysFiltered(ctx, cluster+".*")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for k := range lister.Keys() {
		entry, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var h Hold
		if err := json.Unmarshal(entry.Value(), &h); err != nil {
			return nil, fmt.Errorf("hold %s: %w", k, err)
		}
		out[h.JobID] = h
	}
	return out, nil
}

// PutHold holds a backup of cluster; a later hold of the same backup
// replaces it (a new until, say).
func PutHold(ctx context.Context, kv jetstream.KeyValue, cluster string, h Hold) error {
	if err := messages.ValidateJobID(h.JobID); err != nil {
		return err
	}
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, messages.CatalogKey(cluster, h.JobID), data)
	return err
}

// ReleaseHold releases a backup's hold. It reports false when there was none.
func ReleaseHold(ctx context.Context, kv jetstream.KeyValue, cluster, jobID string) (bool, error) {
	key := messages.CatalogKey(cluster, jobID)
	if _, err := kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, kv.Delete(ctx, key)
}
