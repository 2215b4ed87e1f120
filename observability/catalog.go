package observability

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
)

// CatalogWatcher is the part of jetstream.KeyValue LoadLastSuccess uses.
type CatalogWatcher interface {
	WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
}

var _ CatalogWatcher = jetstream.KeyValue(nil)

// LoadLastSuccess sets the last-success gauge of every cluster from the
// catalog of backups, and returns how many clusters it found. A process
// calls it at start: otherwise the gauge would be missing after every
// restart until the cluster's next backup, and neither the dashboard's
// backup age nor the stale-backup alert would see the cluster meanwhile.
// Records it cannot decode are skipped; the catalog's own readers report
// them.
func (m *Metrics) LoadLastSuccess(ctx context.Context, catalog CatalogWatcher) (int, error) {
	// One watch streams the current value of every key and then a nil
	// marker, so the catalog is read in one pass without a request per key.
	w, err := catalog.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("watch catalog: %w", err)
	}
	defer func() { _ = w.Stop() }()
	clusters := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return len(clusters), fmt.Errorf("read catalog: %w", context.Cause(ctx))
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return len(clusters), nil
			}
			var b messages.Backup
			if json.Unmarshal(e.Value(), &b) != nil || b.Cluster == "" || b.FinishedAt.IsZero() {
				continue
			}
			m.newest(b.Cluster, b.FinishedAt, b.Partial)
			clusters[b.Cluster] = true
		}
	}
}

// DrillWatcher is the part of jetstream.KeyValue WatchDrills uses.
type DrillWatcher interface {
	Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
}

var _ DrillWatcher = jetstream.KeyValue(nil)

// WatchDrills keeps the last-successful-drill gauge of every cluster
// current from the drill records in the catalog (quiesce drill writes them
// from wherever it runs): first every record there is, then each new one,
// until ctx ends.
func (m *Metrics) WatchDrills(ctx context.Context, catalog DrillWatcher) error {
	w, err := catalog.Watch(ctx, messages.DrillKeys, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch drills: %w", err)
	}
	defer func() { _ = w.Stop() }()
	// Records there before the watch began are read back (the gauge learns
	// of them, the finished counter does not); later ones ended now.
	replaying := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil {
				replaying = false // the end of what was there
				continue
			}
			d, err := messages.DecodeDrill(e.Value())
			if err != nil {
				continue
			}
			if replaying {
				m.DrillReplayed(d.Source, d.Outcome == messages.DrillSucceeded, d.Ended)
			} else {
				m.DrillFinished(d.Source, d.Outcome == messages.DrillSucceeded, d.Ended)
			}
		}
	}
}
