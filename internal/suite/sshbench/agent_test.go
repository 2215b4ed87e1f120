//go:build benchssh

package sshbench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// TestAgentFlushBench is the simultaneous flush in agent mode: one agent
// per node (a worker bound to its node's own consumer, with its own NATS
// connection), all on this machine, each running the simulated nodetool
// locally. A job's flush tasks carry one fire time; the spread is reported
// twice: by the agents' clocks when each started its command (the flush
// result's Started), and by the nodes' own record of the script's start,
// which adds 200 process starts at once on the machine's cores.
func TestAgentFlushBench(t *testing.T) {
	dir := t.TempDir()
	times := filepath.Join(dir, "times")
	require.NoError(t, os.Mkdir(times, 0o755))
	script := filepath.Join(dir, "nodetool")
	require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
s=$(date +%%s.%%N)
node=$1
shift
tag=$3
sleep %s
e=$(date +%%s.%%N)
echo "$s $e" > %s/"$tag.$node"
echo "Requested creating snapshot(s) for [all keyspaces] with snapshot name [$tag] and options {skipFlush=false}"
echo "Snapshot directory: $tag"
`, strconv.FormatFloat(flushTime.Seconds(), 'f', 3, 64), times)), 0o755))

	env := testenv.New(t, topology.Options{AckWait: time.Minute})
	var nodesOf []messages.Node
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("n%d", i)
		n := messages.Node{Name: name, Address: "127.0.0.1", Dirs: &messages.NodeDirs{Data: []string{times}}}
		nodesOf = append(nodesOf, n)
		_, err := topology.EnsureAgent(t.Context(), env.JS, "c1", name, topology.Options{AckWait: time.Minute})
		require.NoError(t, err)
		_, js := env.Connect(t)
		h, err := testenv.Handles(t.Context(), js)
		require.NoError(t, err)
		// The node's own nodetool, as the agent runs it; its first word
		// names the node, for the file the script records its times in.
		tool := nodetool.New(&local.Runner{}, nodetool.Settings{Base: []string{script, name}})
		w := worker.New(js, h.Jobs, fakes.Drivers{Tool: tool, Snap: fakes.NewSnapshotter()}, worker.Config{
			Logger: zerolog.Nop(), Agent: &worker.Agent{Cluster: "c1", Node: name}})
		require.NoError(t, w.Start(t.Context()))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = w.StopAndCancel(ctx)
		})
	}

	fmt.Printf("\n%d agents on one machine, flush %s, arm window %s\n\n", nodes, flushTime, armWindow)
	fmt.Printf("| run | ok | spread (agents' start of the command) | spread (the script's own start) | arm | flush phase |\n|---|---|---|---|---|---|\n")
	for run := range 3 {
		tag := nextTag()
		job := fmt.Sprintf("c1-%012x", time.Now().UnixNano()&0xffffffffffff)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		cons, err := env.JS.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{messages.AgentSubject(messages.SubjectTaskEvent(job, messages.KindFlush), "*")}})
		require.NoError(t, err)
		start := time.Now()
		fireAt := start.Add(armWindow)
		for _, n := range nodesOf {
			task := messages.Task{Schema: messages.TaskSchema, ID: messages.TaskID(job, messages.KindFlush, n.Name),
				Kind: messages.KindFlush, JobID: job, Cluster: "c1", Target: n.Name, Tag: tag, Node: &n,
				Deadline: start.Add(5 * time.Minute), FireAt: fireAt}
			data, err := json.Marshal(task)
			require.NoError(t, err)
			_, err = env.JS.Publish(ctx, messages.SubjectAgentTask("c1", n.Name, messages.KindFlush), data, jetstream.WithMsgID(task.ID))
			require.NoError(t, err)
		}
		var started []time.Time
		var last time.Time
		ok := 0
		for range nodesOf {
			msg, err := cons.Next(jetstream.FetchMaxWait(3 * time.Minute))
			require.NoError(t, err, "results missing")
			var res messages.TaskResult
			require.NoError(t, json.Unmarshal(msg.Data(), &res))
			if res.Outcome == messages.OutcomeSucceeded && res.Flush != nil {
				ok++
				started = append(started, res.Flush.Started)
			} else {
				t.Logf("%s: %s %s", res.Target, res.Outcome, res.Error)
			}
			last = time.Now()
		}
		cancel()
		byAgents := time.Duration(0)
		if len(started) > 0 {
			slices.SortFunc(started, time.Time.Compare)
			byAgents = started[len(started)-1].Sub(started[0])
			t.Logf("run %d: commands started, after the fire time: first %s, median %s, 90th percentile %s, last %s", run+1,
				started[0].Sub(fireAt), started[len(started)/2].Sub(fireAt), started[len(started)*9/10].Sub(fireAt), started[len(started)-1].Sub(fireAt))
		}
		f := &fleet{times: times, nodes: nodesOf}
		r := f.recorded(t, tag)
		arm := (&quiesceWorker{f: f, env: env}).armedBy(t, job).Sub(start)
		fmt.Printf("| agents, run %d | %d/%d | %.3f s | %.3f s | %s | %s |\n", run+1, ok, nodes, byAgents.Seconds(), r.spread.Seconds(), secs(arm), secs(last.Sub(fireAt)))
	}
	fmt.Println()
}
