package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// staleFind lists what was there before any deletion, as two retention
// tasks that listed a job's snapshots at the same time see it; Delete
// deletes for real.
type staleFind struct {
	mu     sync.Mutex
	listed []Snapshot
	live   map[string]bool
}

func (s *staleFind) Find(context.Context, map[string]string) ([]Snapshot, error) {
	return s.listed, nil
}

func (s *staleFind) Create(context.Context, CreateRequest) ([]Snapshot, error) { return nil, nil }

func (s *staleFind) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.live[id] {
		return fmt.Errorf("%s: %w", id, ErrSnapshotGone)
	}
	delete(s.live, id)
	return nil
}

type snapOnly struct{ snap Snapshotter }

func (d snapOnly) NodeTool(string) (NodeTool, error)       { return nil, errors.New("no node tool") }
func (d snapOnly) Snapshotter(string) (Snapshotter, error) { return d.snap, nil }

// Two tasks retiring the same job report each snapshot deleted once between
// them, so retention metrics count each snapshot once.
func TestRetiredSnapshotIsReportedOnce(t *testing.T) {
	t.Parallel()
	const job = "c1-000000000001"
	tags := map[string]string{messages.TagManaged: "true", messages.TagJob: job, messages.TagCluster: "c1"}
	snap := &staleFind{live: map[string]bool{}}
	for _, id := range []string{"snap-1", "snap-2"} {
		snap.listed = append(snap.listed, Snapshot{ID: id, VolumeID: "vol-" + id, State: StateCompleted, StartTime: time.Now(), Tags: tags})
		snap.live[id] = true
	}
	w := New(nil, nil, snapOnly{snap}, Config{Logger: zerolog.Nop()})
	task := messages.Task{Kind: messages.KindRetention, JobID: "c1-000000000009", Cluster: "c1", Retire: []string{job}}

	first, err := w.retention(t.Context(), zerolog.Nop(), task)
	require.NoError(t, err)
	second, err := w.retention(t.Context(), zerolog.Nop(), task)
	require.NoError(t, err, "a snapshot another task deleted is no failure")
	require.ElementsMatch(t, []string{"snap-1", "snap-2"}, first.Deleted)
	require.Empty(t, second.Deleted, "already deleted by the first task: not counted again")
	require.Equal(t, []string{job}, second.Retired)
}
