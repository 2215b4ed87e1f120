package planner

import (
	"fmt"
	"strconv"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// hookTask is one run of a policy's hook: on one node, or once for the job.
type hookTask struct {
	hook   int // index in the policy's Hooks
	node   int // index in the plan's Nodes; -1 for a job-scoped hook
	target string
}

// hookTarget names a hook task: its point, the hook's index in the policy
// and, for a node-scoped hook, the node. The point has no dash and the index
// is digits, so targets of different hooks and nodes never collide.
func hookTarget(point messages.HookPoint, k int, node string) string {
	t := string(point) + "-h" + strconv.Itoa(k)
	if node != "" {
		t += "-" + node
	}
	return t
}

// indexHooks lists the plan's hook tasks, in the policy's order. They are
// derived from the stored policy and nodes, so a plan stores nothing more.
func (p *Plan) indexHooks() {
	p.hooks = nil
	p.hookIndex = map[string]int{}
	for k, h := range p.Policy.Hooks {
		if h.Scope == messages.ScopeJob {
			p.addHookTask(hookTask{hook: k, node: -1, target: hookTarget(h.Point, k, "")})
			continue
		}
		for i, n := range p.Nodes {
			p.addHookTask(hookTask{hook: k, node: i, target: hookTarget(h.Point, k, n.Name)})
		}
	}
}

func (p *Plan) addHookTask(t hookTask) {
	p.hookIndex[t.target] = len(p.hooks)
	p.hooks = append(p.hooks, t)
}

// hasHooks reports whether the policy has hooks at point.
func (p *Plan) hasHooks(point messages.HookPoint) bool {
	for _, h := range p.Policy.Hooks {
		if h.Point == point {
			return true
		}
	}
	return false
}

// hookTasksAt lists the indexes of the hook tasks at point.
func (p *Plan) hookTasksAt(point messages.HookPoint) []int {
	var out []int
	for j, t := range p.hooks {
		if p.Policy.Hooks[t.hook].Point == point {
			out = append(out, j)
		}
	}
	return out
}

func (p *Plan) hookTask(j int, deadline time.Time) messages.Task {
	ht := p.hooks[j]
	h := p.Policy.Hooks[ht.hook]
	t := p.baseTask(messages.KindHook, ht.target, deadline)
	t.Hook = &h
	if ht.node >= 0 {
		n := p.Nodes[ht.node]
		t.Node = &n
	}
	return t
}

// hookDeadline bounds a hook task: every run and its retries, and at least
// the clean-up deadline for after and complete hooks, which must run
// whatever happened to the job.
func hookDeadline(h messages.Hook, point messages.HookPoint, phaseDeadline, now time.Time) time.Time {
	runs := now.Add(time.Duration(h.Retries+1) * (h.Timeout() + 30*time.Second))
	if point == messages.HookBefore {
		if !phaseDeadline.IsZero() && phaseDeadline.Before(runs) {
			return phaseDeadline
		}
		return runs
	}
	if floor := now.Add(cleanupTaskTimeout); runs.Before(floor) {
		return floor
	}
	return runs
}

// queueHooks queues the hook tasks of point, once.
func (r *record) queueHooks(p *Plan, point messages.HookPoint) {
	if !p.hasHooks(point) || r.hooksQueued(point) {
		return
	}
	r.addOutbox(effect{Kind: fxHooks, Point: point})
}

func (r *record) hooksQueued(point messages.HookPoint) bool {
	for _, q := range r.HooksQueued {
		if q == point {
			return true
		}
	}
	return false
}

// hooksSettled reports whether every hook task of point has a result, and
// the first failure of a hook whose on_error is fail.
func (r *record) hooksSettled(p *Plan, point messages.HookPoint) (settled bool, fatal string) {
	if !p.hasHooks(point) {
		return true, ""
	}
	if !r.hooksQueued(point) {
		return false, ""
	}
	settled = true
	for _, j := range p.hookTasksAt(point) {
		switch {
		case r.HookFailed.has(j):
			h := p.Policy.Hooks[p.hooks[j].hook]
			if h.OnError != messages.OnErrorContinue && fatal == "" {
				fatal = fmt.Sprintf("%s hook %s failed%s", point, h.Name, onNode(p, p.hooks[j].node))
			}
		case !r.HookDone.has(j):
			settled = false
		}
	}
	return settled, fatal
}

func onNode(p *Plan, i int) string {
	if i < 0 {
		return ""
	}
	return " on " + p.Nodes[i].Name
}

// applyHook records a hook task's result. A failed hook whose on_error is
// continue leaves a warning; one whose on_error is fail is a failure of the
// job's, which advance acts on.
func (r *record) applyHook(p *Plan, ev *messages.TaskResult) bool {
	j, known := p.hookIndex[ev.Target]
	if !known {
		return false
	}
	if ev.Outcome == messages.OutcomeSucceeded {
		if r.HookFailed.has(j) {
			return false
		}
		return r.HookDone.set(j)
	}
	if r.HookDone.has(j) || !r.HookFailed.set(j) {
		return false
	}
	h := p.Policy.Hooks[p.hooks[j].hook]
	if h.OnError == messages.OnErrorContinue || h.Point == messages.HookComplete {
		r.addWarning(fmt.Sprintf("%s hook %s failed%s (on_error: continue): %s", h.Point, h.Name, onNode(p, p.hooks[j].node), ev.Error))
	} else {
		r.failure(ev)
	}
	return true
}

// endHooks queues, for a job that just ended, the after hooks of every node
// whose before hook was started (whatever the outcome: a paused compaction
// is always resumed) and the complete hooks.
func (r *record) endHooks(p *Plan) {
	if r.hooksQueued(messages.HookBefore) {
		r.queueHooks(p, messages.HookAfter)
	}
	r.queueHooks(p, messages.HookComplete)
}

// hooksWaitingOn names the hook tasks of point without a result.
func (r *record) hooksWaitingOn(p *Plan, point messages.HookPoint) string {
	var names []string
	for _, j := range p.hookTasksAt(point) {
		if !r.HookDone.has(j) && !r.HookFailed.has(j) {
			names = append(names, p.Policy.Hooks[p.hooks[j].hook].Name+onNode(p, p.hooks[j].node))
		}
	}
	return summarize(names)
}
