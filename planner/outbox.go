package planner

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/quiesce/quiesce/messages"
)

// effectKind names something a record change decided to do outside the
// record: publish tasks, write the catalog, select backups to retire.
type effectKind string

// Outbox effects.
const (
	// fxFlush publishes the flush task of every node not yet settled.
	fxFlush effectKind = "flush"
	// fxSnapshots publishes the snapshot task of every required unit not
	// yet settled: the barrier's release.
	fxSnapshots effectKind = "snapshots"
	// fxClear publishes the clear task of node Node.
	fxClear effectKind = "clear"
	// fxReclear publishes one more clear of node Node under a task ID of its
	// own (Seq), for a flush that ran again after its node was cleared.
	fxReclear effectKind = "reclear"
	// fxAwait publishes the task that waits for the job's snapshots.
	fxAwait effectKind = "await"
	// fxCatalog writes the backup's catalog record.
	fxCatalog effectKind = "catalog"
	// fxRetention selects the backups the policy retires and publishes the
	// retention task that deletes them.
	fxRetention effectKind = "retention"
	// fxCleanup publishes clean-up task Seq, which deletes every snapshot of
	// a job that ended without a backup.
	fxCleanup effectKind = "cleanup"
	// fxHooks publishes the hook tasks of Point.
	fxHooks effectKind = "hooks"
)

// effect is one entry of a record's outbox. It is comparable, so an outbox
// holds each effect once.
type effect struct {
	Kind  effectKind         `json:"kind"`
	Node  int                `json:"node,omitempty"`
	Seq   int                `json:"seq,omitempty"`
	Point messages.HookPoint `json:"point,omitempty"`
}

func (fx effect) String() string {
	switch fx.Kind {
	case fxClear:
		return fmt.Sprintf("%s(node %d)", fx.Kind, fx.Node)
	case fxReclear:
		return fmt.Sprintf("%s(node %d, #%d)", fx.Kind, fx.Node, fx.Seq)
	case fxCleanup:
		return fmt.Sprintf("%s(#%d)", fx.Kind, fx.Seq)
	case fxHooks:
		return fmt.Sprintf("%s(%s)", fx.Kind, fx.Point)
	}
	return string(fx.Kind)
}

// cleansUp reports whether the effect is part of a failed or cancelled
// job's clean-up, or of what runs after any job's end (after and complete
// hooks): the only effects such a job still carries out.
func (fx effect) cleansUp() bool {
	switch fx.Kind {
	case fxClear, fxReclear, fxCleanup:
		return true
	case fxHooks:
		return fx.Point != messages.HookBefore
	}
	return false
}

// UnmarshalJSON reads an effect, and also the strings that records written
// by the previous release hold ("flush", "clear:3", "reclear:3.2",
// "cleanup:1"), so jobs in flight during an upgrade finish.
func (fx *effect) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		return fx.parseLegacy(s)
	}
	type plain effect
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	*fx = effect(p)
	return nil
}

func (fx *effect) parseLegacy(s string) error {
	kind, arg, _ := strings.Cut(s, ":")
	bad := func() error { return fmt.Errorf("outbox entry %q: not an effect", s) }
	atoi := func(v string) (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, bad()
		}
		return n, nil
	}
	var err error
	switch effectKind(kind) {
	case fxFlush, fxSnapshots, fxAwait, fxCatalog, fxRetention:
		if arg != "" {
			return bad()
		}
		*fx = effect{Kind: effectKind(kind)}
	case fxClear:
		*fx = effect{Kind: fxClear}
		fx.Node, err = atoi(arg)
	case fxReclear:
		node, seq, ok := strings.Cut(arg, ".")
		if !ok {
			return bad()
		}
		*fx = effect{Kind: fxReclear}
		if fx.Node, err = atoi(node); err == nil {
			fx.Seq, err = atoi(seq)
		}
	case fxCleanup:
		*fx = effect{Kind: fxCleanup}
		fx.Seq, err = atoi(arg)
	default:
		return bad()
	}
	return err
}

// effectResult is what a carried-out effect learned that the record keeps.
type effectResult struct {
	// retired: the backups a retention effect selected.
	retired []string
	// failed, when set, ends the job: the effect found a condition that no
	// retry can change (a catalog without a snapshot for some volume).
	failed string
	// warnings are added to the record.
	warnings []string
}
