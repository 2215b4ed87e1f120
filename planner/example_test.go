package planner_test

import (
	"fmt"
	"time"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

// Keep-last-N retires every backup but the newest N. The newest is never
// selected, and the answer depends only on the catalog given.
func ExampleSelectRetired() {
	day := func(d int) time.Time { return time.Date(2026, 11, d, 2, 0, 0, 0, time.UTC) }
	newestFirst := []messages.Backup{
		{JobID: "orders-000000000004", FinishedAt: day(24)},
		{JobID: "orders-000000000003", FinishedAt: day(23)},
		{JobID: "orders-000000000002", FinishedAt: day(22)},
		{JobID: "orders-000000000001", FinishedAt: day(21)},
	}
	fmt.Println(planner.SelectRetired(newestFirst, 2))
	fmt.Println(planner.SelectRetired(newestFirst, 0))
	// Output:
	// [orders-000000000001 orders-000000000002]
	// []
}

// A plan groups a cluster's volumes into snapshot tasks: one per volume, or
// with perInstance one crash-consistent set per node of several volumes.
func ExampleBuildPlan() {
	req := messages.JobRequest{Schema: messages.JobRequestSchema, RequestID: "nightly-2026-11-24", Cluster: "orders"}
	nodes := []messages.Node{
		{Name: "node-1", Volumes: []messages.Volume{{ID: "vol-1a"}, {ID: "vol-1b"}}},
		{Name: "node-2", Volumes: []messages.Volume{{ID: "vol-2a"}}},
	}
	policy := planner.Policy{Name: "nightly", Cluster: "orders", Retention: planner.Retention{KeepLast: 14}}
	for _, perInstance := range []bool{false, true} {
		p, err := planner.BuildPlan(req, policy, nodes, perInstance, time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(p.JobID, p.Tag, p.Mode)
		for _, u := range p.Units {
			fmt.Printf("  snapshot task %s: node %s, %d volume(s)\n", u.Target, p.Nodes[u.Node].Name, len(u.Volumes))
		}
	}
	_, err := planner.BuildPlan(req, policy, append(nodes, nodes[0]), false, time.Now())
	fmt.Println(err)
	// Output:
	// orders-6bd0644976d2 quiesce-orders-6bd0644976d2 application
	//   snapshot task vol-1a: node node-1, 1 volume(s)
	//   snapshot task vol-1b: node node-1, 1 volume(s)
	//   snapshot task vol-2a: node node-2, 1 volume(s)
	// orders-6bd0644976d2 quiesce-orders-6bd0644976d2 application
	//   snapshot task node-1: node node-1, 2 volume(s)
	//   snapshot task vol-2a: node node-2, 1 volume(s)
	// node "node-1" listed twice
}

// A policy's rules combine as a union; the dry run shows why each backup
// is kept.
func ExampleSelectRetention() {
	day := func(m time.Month, d int) time.Time { return time.Date(2026, m, d, 2, 0, 0, 0, time.UTC) }
	newestFirst := []messages.Backup{
		{JobID: "orders-000000000005", FinishedAt: day(11, 30)},
		{JobID: "orders-000000000004", FinishedAt: day(11, 29)},
		{JobID: "orders-000000000003", FinishedAt: day(11, 1)},
		{JobID: "orders-000000000002", FinishedAt: day(10, 31)},
		{JobID: "orders-000000000001", FinishedAt: day(10, 30)},
	}
	rules := planner.Retention{KeepLast: 2, KeepMonthly: 2}
	holds := map[string]planner.Hold{"orders-000000000001": {JobID: "orders-000000000001", Reason: "audit"}}
	for _, d := range planner.SelectRetention(newestFirst, rules, holds, day(11, 30)) {
		fmt.Println(d.Backup.JobID, d.Keep, d.Reasons)
	}
	// Output:
	// orders-000000000005 true [newest last 1 monthly 2026-11]
	// orders-000000000004 true [last 2]
	// orders-000000000003 false []
	// orders-000000000002 true [monthly 2026-10]
	// orders-000000000001 true [held (audit)]
}
