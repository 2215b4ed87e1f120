package planner

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// Plan is what a job will do: its nodes and how their volumes are grouped
// into snapshot tasks. It is stored in the plans object store, since for a
// large cluster it exceeds one message.
type Plan struct {
	JobID     string              `json:"job_id"`
	Cluster   string              `json:"cluster"`
	Policy    Policy              `json:"policy"`
	Mode      messages.Mode       `json:"mode"`
	Tag       string              `json:"tag"`
	Keyspaces []string            `json:"keyspaces,omitempty"`
	Nodes     []messages.Node     `json:"nodes"`
	Units     []SnapshotUnit      `json:"units"`
	Created   time.Time           `json:"created"`
	Request   messages.JobRequest `json:"request"`
	// Intents is set on plans of releases whose flushes record their
	// intent (messages.IntentKey): a clear that finds none there has
	// nothing to clear. A plan without it clears every node's tag.
	Intents bool `json:"intents,omitempty"`
	// Agent: the node tasks go to each node's agent (Cluster.Agent).
	Agent bool `json:"agent,omitempty"`

	nodeIndex map[string]int
	unitIndex map[string]int
	nodeUnits [][]int
	hooks     []hookTask
	hookIndex map[string]int
}

// SnapshotUnit is one snapshot task: one volume, or every data volume of a
// node taken together as a crash-consistent set.
type SnapshotUnit struct {
	Target  string `json:"target"`
	Node    int    `json:"node"`
	Volumes []int  `json:"volumes"`
}

// BuildPlan groups a cluster's nodes into tasks. perInstance groups each
// node's volumes into one unit when it has more than one.
func BuildPlan(req messages.JobRequest, policy Policy, nodes []messages.Node, perInstance bool, now time.Time) (*Plan, error) {
	if len(nodes) == 0 {
		return nil, fmt.Errorf("cluster %q has no nodes", req.Cluster)
	}
	mode := req.Mode
	if mode == "" {
		mode = messages.ModeApplication
	}
	jobID := req.JobID()
	tag := req.Tag
	if tag == "" {
		tag = "quiesce-" + jobID
	}
	p := &Plan{
		JobID: jobID, Cluster: req.Cluster, Policy: policy, Mode: mode, Tag: tag,
		Keyspaces: SnapshotKeyspaces(req.Keyspaces), Nodes: nodes, Created: now, Request: req, Intents: true,
	}
	seenNode := make(map[string]bool, len(nodes))
	seenVol := make(map[string]bool, len(nodes)*4)
	units := make([]SnapshotUnit, 0, len(nodes)*2)
	for i, n := range nodes {
		if err := messages.ValidateTarget("node", n.Name); err != nil {
			return nil, err
		}
		if seenNode[n.Name] {
			return nil, fmt.Errorf("node %q listed twice", n.Name)
		}
		seenNode[n.Name] = true
		if len(n.Volumes) == 0 {
			return nil, fmt.Errorf("node %q has no data volumes", n.Name)
		}
		if n.Dirs != nil {
			if err := n.Dirs.Validate(); err != nil {
				return nil, fmt.Errorf("node %q: %w", n.Name, err)
			}
		}
		for _, v := range n.Volumes {
			if err := messages.ValidateTarget("volume", v.ID); err != nil {
				return nil, err
			}
			if seenVol[v.ID] {
				return nil, fmt.Errorf("volume %q listed twice", v.ID)
			}
			seenVol[v.ID] = true
		}
		if perInstance && len(n.Volumes) > 1 {
			vols := make([]int, len(n.Volumes))
			for k := range vols {
				vols[k] = k
			}
			units = append(units, SnapshotUnit{Target: n.Name, Node: i, Volumes: vols})
			continue
		}
		for k, v := range n.Volumes {
			units = append(units, SnapshotUnit{Target: v.ID, Node: i, Volumes: []int{k}})
		}
	}
	p.Units = units
	p.index()
	return p, nil
}

// RestoreKeyspaces are the system keyspaces a snapshot limited to some
// keyspaces takes as well, because a restore of those needs them:
// system_schema holds the schema as it was at the barrier, whose table IDs
// name the data directories (without it a restore keeps the schema of the
// moment it runs, columns added since included); system holds the node's
// identity (system.local: host ID, tokens, cluster name), for a restore into
// a new cluster that keeps host IDs. system_auth, system_distributed and
// system_traces are left out: roles and permissions are restored with the
// whole cluster, the others hold nothing a restore needs.
var RestoreKeyspaces = []string{"system_schema", "system"}

// SnapshotKeyspaces returns the keyspaces a job's snapshot names: none (every
// keyspace) when the request names none, else the request's and
// RestoreKeyspaces, each once, in that order.
func SnapshotKeyspaces(requested []string) []string {
	if len(requested) == 0 {
		return nil
	}
	out := make([]string, 0, len(requested)+len(RestoreKeyspaces))
	for _, ks := range append(append([]string(nil), requested...), RestoreKeyspaces...) {
		if !slices.Contains(out, ks) {
			out = append(out, ks)
		}
	}
	return out
}

// index builds the lookup tables a loaded plan needs.
func (p *Plan) index() {
	p.nodeIndex = make(map[string]int, len(p.Nodes))
	for i, n := range p.Nodes {
		p.nodeIndex[n.Name] = i
	}
	p.unitIndex = make(map[string]int, len(p.Units))
	p.nodeUnits = make([][]int, len(p.Nodes))
	for j, u := range p.Units {
		p.unitIndex[u.Target] = j
		p.nodeUnits[u.Node] = append(p.nodeUnits[u.Node], j)
	}
	p.indexHooks()
}

// VolumeCount is the number of volumes the job snapshots.
func (p *Plan) VolumeCount() int {
	n := 0
	for _, u := range p.Units {
		n += len(u.Volumes)
	}
	return n
}

func (p *Plan) jobTimeout() time.Duration {
	return cmp.Or(p.Policy.JobTimeout, DefaultJobTimeout)
}

func (p *Plan) deadline(phase messages.Phase, now time.Time) time.Time {
	var d time.Duration
	switch phase {
	case messages.PhasePlanned, messages.PhaseFlushing:
		d = cmp.Or(p.Policy.FlushTimeout, DefaultFlushTimeout)
	case messages.PhaseSnapshotting:
		d = cmp.Or(p.Policy.SnapshotTimeout, DefaultSnapshotTimeout)
	default:
		d = cmp.Or(p.Policy.FinishTimeout, DefaultFinishTimeout)
	}
	return now.Add(d)
}

func (p *Plan) baseTask(kind messages.Kind, target string, deadline time.Time) messages.Task {
	return messages.Task{
		Schema: messages.TaskSchema, ID: messages.TaskID(p.JobID, kind, target), Kind: kind,
		JobID: p.JobID, Cluster: p.Cluster, Policy: p.Policy.Name, Target: target, Tag: p.Tag,
		Deadline: deadline,
	}
}

func (p *Plan) flushTask(i int, deadline time.Time) messages.Task {
	t := p.baseTask(messages.KindFlush, p.Nodes[i].Name, deadline)
	n := p.Nodes[i]
	t.Node = &n
	t.Keyspaces = p.Keyspaces
	return t
}

// clearTask clears node i's tag. flushed says the node's flush reported
// success; facts asks the task to gather the node's facts for the catalog.
func (p *Plan) clearTask(i int, deadline time.Time, flushed, facts bool) messages.Task {
	t := p.baseTask(messages.KindClear, p.Nodes[i].Name, deadline)
	n := p.Nodes[i]
	t.Node = &n
	t.Flushed = flushed || !p.Intents
	t.Facts = facts
	return t
}

func (p *Plan) snapshotTask(j int, deadline time.Time) messages.Task {
	u := p.Units[j]
	n := p.Nodes[u.Node]
	t := p.baseTask(messages.KindSnapshot, u.Target, deadline)
	t.Node = &messages.Node{Name: n.Name, Address: n.Address, InstanceID: n.InstanceID, AZ: n.AZ, DC: n.DC, Region: n.Region}
	for _, k := range u.Volumes {
		t.Volumes = append(t.Volumes, n.Volumes[k])
	}
	t.Node.Volumes = t.Volumes
	t.SnapshotTags = map[string]string{
		messages.TagManaged: "true",
		messages.TagCluster: p.Cluster,
		messages.TagJob:     p.JobID,
		messages.TagNode:    n.Name,
		messages.TagPolicy:  p.Policy.Name,
		messages.TagName:    fmt.Sprintf("quiesce %s %s %s", p.Cluster, n.Name, p.JobID),
	}
	if n.DC != "" {
		// The data centre, for restores by data centre, and for the task's
		// look-up to search its region alone.
		t.SnapshotTags[messages.TagDC] = n.DC
	}
	return t
}

func (p *Plan) awaitTask(expect int, deadline time.Time) messages.Task {
	t := p.baseTask(messages.KindAwait, p.JobID, deadline)
	t.Expect = expect
	return t
}

// agentKind reports whether tasks of kind run on a node's agent, for a
// cluster whose executor is agent.
func agentKind(k messages.Kind) bool {
	return k == messages.KindFlush || k == messages.KindClear || k == messages.KindHook
}

// subject is where a task of the plan is published: a node task of an
// agent cluster on its node's agent subject, every other task on its
// kind's.
func (p *Plan) subject(t *messages.Task) string {
	if p.Agent && t.Node != nil && agentKind(t.Kind) {
		return messages.SubjectAgentTask(t.Cluster, t.Node.Name, t.Kind)
	}
	return messages.SubjectTask(t.Kind, t.Cluster)
}

// taskNode names the node a node task of kind and target runs on.
func (p *Plan) taskNode(kind messages.Kind, target string) (string, bool) {
	switch kind {
	case messages.KindFlush, messages.KindClear:
		_, ok := p.nodeIndex[target]
		return target, ok
	case messages.KindHook:
		if j, ok := p.hookIndex[target]; ok && p.hooks[j].node >= 0 {
			return p.Nodes[p.hooks[j].node].Name, true
		}
	}
	return "", false
}

// fromAgentOf reports whether an event published on subject may speak for
// a node task of kind and target: in an agent cluster, only the agent of the
// task's node may. Every other event is taken as before.
func (p *Plan) fromAgentOf(subject string, kind messages.Kind, target string) bool {
	if !p.Agent || !agentKind(kind) {
		return true
	}
	node, ok := p.taskNode(kind, target)
	if !ok {
		return true
	}
	_, from, ok := messages.SplitAgentSubject(subject)
	return ok && from == node
}
