package planner

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// The fire time is fixed when the flush phase is released and stored with
// the job, so every node of the job, and every task published again after a
// crash, starts at the same instant.
func TestFireTimeIsFixedAtTheFlushRelease(t *testing.T) {
	t.Parallel()
	const arm = 2 * time.Second

	t.Run("released at planning", func(t *testing.T) {
		t.Parallel()
		m := newMachine(t, machineOpts{nodes: 3, armWindow: arm})
		require.Equal(t, []string{"flush"}, m.outbox())
		fireAt := m.now.Add(arm)
		require.Equal(t, fireAt, m.r.FireAt)

		// A coordinator that reads the record back (a crash, then the sweep
		// re-driving the outbox) finds the same instant.
		b, err := json.Marshal(m.r)
		require.NoError(t, err)
		var back record
		require.NoError(t, json.Unmarshal(b, &back))
		require.True(t, fireAt.Equal(back.FireAt))

		m.tick(time.Minute).drain()
		require.Equal(t, flushing, m.r.Phase)
		require.Equal(t, fireAt, m.r.FireAt, "carrying out the release again does not move the fire time")
		m.flushAll().drain()
		require.Equal(t, fireAt, m.r.FireAt)
	})

	t.Run("released after the before hooks", func(t *testing.T) {
		t.Parallel()
		m := newMachine(t, machineOpts{nodes: 2, armWindow: arm, hooks: []messages.Hook{pause}})
		require.True(t, m.r.FireAt.IsZero(), "the flush is not released while the before hooks run")
		m.drain().tick(5*time.Second).ok(messages.KindHook, "before-h0-n1")
		require.True(t, m.r.FireAt.IsZero())
		m.tick(time.Second).ok(messages.KindHook, "before-h0-n2")
		require.Equal(t, []string{"flush"}, m.outbox())
		fireAt := m.now.Add(arm)
		require.Equal(t, fireAt, m.r.FireAt)
		m.tick(time.Second)
		m.r.advance(m.p, m.now)
		require.Equal(t, fireAt, m.r.FireAt, "a later step does not move it")
	})

	t.Run("no arm window fires on arrival", func(t *testing.T) {
		t.Parallel()
		m := newMachine(t, machineOpts{nodes: 2})
		require.True(t, m.r.FireAt.IsZero())
	})
}

// A plan stores its policy's arm window, so the planner and a coordinator
// of another release read the same one.
func TestPolicyKeepsItsArmWindow(t *testing.T) {
	t.Parallel()
	p := Policy{Name: "p", Cluster: "c1", FlushTimeout: time.Minute, ArmWindow: 1500 * time.Millisecond}
	b, err := json.Marshal(p)
	require.NoError(t, err)
	var back Policy
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, p, back)
}
