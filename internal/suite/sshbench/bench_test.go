//go:build benchssh

package sshbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/testkit/fakes"
	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// Settings, from the environment.
var (
	nodes     = envInt("QUIESCE_SSHBENCH_NODES", 200)
	flushTime = envDuration("QUIESCE_SSHBENCH_FLUSH", time.Second)
	armWindow = envDuration("QUIESCE_SSHBENCH_ARM", 2*time.Second)
	loginCost = envDuration("QUIESCE_SSHBENCH_LOGIN_COST", 300*time.Millisecond)
)

// benchUser is the account the nodes are logged into when the benchmark
// runs as root: a plain one, whose home (and shell start-up file) is the
// benchmark's own, so root's start-up files never weigh on a session.
const benchUser = "quiesce-bench"

// fleet is the sshd, the nodes behind it and what a client needs to reach
// them.
type fleet struct {
	dir, home, times string
	user             string
	keyPath          string
	knownHosts       string
	hostsFile        string
	nodetool         string
	nodes            []messages.Node
	sshd             *sshtest.SSHD
}

// run is one flush of every node, as measured.
type run struct {
	name    string
	ok      int
	spread  time.Duration // latest start minus earliest, by the nodes' clocks
	arm     time.Duration // submit to the last node armed (quiesce only)
	flush   time.Duration // fire time to the last result (quiesce only)
	whole   time.Duration // submit to the last result, or the command's run
	longest time.Duration // the longest node's command
}

func TestSSHFlushBench(t *testing.T) {
	f := newFleet(t)
	var runs []run

	// Baseline and quiesce with sessions that start fast.
	f.setLoginCost(t, 0)
	runs = append(runs, f.pssh(t, 32, "parallel-ssh -p 32"), f.pssh(t, nodes, fmt.Sprintf("parallel-ssh -p %d", nodes)))
	q := f.startWorker(t, nodes)
	runs = append(runs, q.flush(t, fmt.Sprintf("quiesce cold, %d in flight (new executor)", nodes)),
		q.flush(t, fmt.Sprintf("quiesce warm, %d in flight (open connections)", nodes)))
	q.stop()
	q = f.startWorker(t, 32)
	runs = append(runs, q.flush(t, "quiesce cold, 32 in flight"))
	q.stop()

	// Every session costs a slow shell start-up.
	if f.home != "" {
		f.setLoginCost(t, loginCost)
		cost := " +" + loginCost.String() + " login"
		runs = append(runs, f.pssh(t, 32, "parallel-ssh -p 32"+cost), f.pssh(t, nodes, fmt.Sprintf("parallel-ssh -p %d", nodes)+cost))
		q = f.startWorker(t, 32)
		runs = append(runs, q.flush(t, "quiesce cold, 32 in flight"+cost))
		q.stop()
		q = f.startWorker(t, nodes)
		runs = append(runs, q.flush(t, fmt.Sprintf("quiesce cold, %d in flight", nodes)+cost))
		q.stop()
		f.setLoginCost(t, 0)
	} else {
		t.Log("not root: the login-cost runs need a user whose start-up file the benchmark owns; skipped")
	}

	fmt.Printf("\n%d nodes behind one sshd, flush %s, arm window %s\n\n", nodes, flushTime, armWindow)
	fmt.Printf("| run | ok | spread | arm | flush phase | whole run | longest command |\n|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		fmt.Printf("| %s | %d/%d | %s | %s | %s | %s | %s |\n", r.name, r.ok, nodes, secs(r.spread), secs(r.arm), secs(r.flush), secs(r.whole), secs(r.longest))
	}
	fmt.Println()
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	for _, bin := range []string{sshtest.SSHDPath, "parallel-ssh"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not found: apt-get install openssh-server pssh", bin)
		}
	}
	dir, err := os.MkdirTemp("", "quiesce-sshbench-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	f := &fleet{dir: dir, times: filepath.Join(dir, "times")}
	require.NoError(t, os.Mkdir(f.times, 0o777))
	require.NoError(t, os.Chmod(f.times, 0o777))

	me, err := user.Current()
	require.NoError(t, err)
	f.user = me.Username
	if me.Uid == "0" {
		f.user, f.home = benchUser, filepath.Join(dir, "home")
		require.NoError(t, os.Mkdir(f.home, 0o755))
		ensureUser(t, f.home)
	}
	var key gossh.Signer
	f.keyPath, key = sshtest.UserKey(t, dir)
	port := freePort(t)
	f.sshd = sshtest.StartSSHD(t, sshtest.SSHDOptions{Addr: fmt.Sprintf("0.0.0.0:%d", port), MaxStartups: 2 * nodes,
		AuthorizedKeys: []gossh.PublicKey{key.PublicKey()},
		// Every 127.0.1.N reaches this sshd; it takes logins from loopback only.
		Extra: []string{"AllowUsers " + f.user + "@127.0.0.0/8"}})
	if f.home != "" {
		// sshd reads authorized_keys as the user logging in.
		for _, p := range []string{filepath.Dir(f.sshd.Dir), f.sshd.Dir} {
			require.NoError(t, os.Chmod(p, 0o755))
		}
		require.NoError(t, os.Chmod(filepath.Join(f.sshd.Dir, "authorized_keys"), 0o644))
	}
	var known, hosts []string
	for i := 1; i <= nodes; i++ {
		ip := fmt.Sprintf("127.0.%d.%d", 1+(i-1)/254, 1+(i-1)%254)
		addr := fmt.Sprintf("%s:%d", ip, port)
		known = append(known, sshtest.KnownHostsLine(addr, f.sshd.HostKey.PublicKey()))
		hosts = append(hosts, addr)
		f.nodes = append(f.nodes, messages.Node{Name: fmt.Sprintf("n%d", i), Address: addr,
			Dirs: &messages.NodeDirs{Data: []string{f.times}}})
	}
	f.knownHosts = sshtest.WriteKnownHosts(t, dir, known...)
	f.hostsFile = filepath.Join(dir, "hosts")
	require.NoError(t, os.WriteFile(f.hostsFile, []byte(strings.Join(hosts, "\n")+"\n"), 0o644))

	// The node's nodetool: records when the snapshot started and ended
	// (the node's clock), takes the flush time, and says what nodetool says.
	f.nodetool = filepath.Join(dir, "nodetool")
	script := fmt.Sprintf(`#!/bin/sh
s=$(date +%%s.%%N)
[ "$1" = snapshot ] && [ "$2" = -t ] || { echo "error: only snapshot -t is simulated" >&2; exit 2; }
tag=$3
sleep %s
e=$(date +%%s.%%N)
set -- $SSH_CONNECTION
echo "$s $e" > %s/"$tag.$3"
echo "Requested creating snapshot(s) for [all keyspaces] with snapshot name [$tag] and options {skipFlush=false}"
echo "Snapshot directory: $tag"
`, strconv.FormatFloat(flushTime.Seconds(), 'f', 3, 64), f.times)
	require.NoError(t, os.WriteFile(f.nodetool, []byte(script), 0o755))
	return f
}

// ensureUser makes the benchmark's plain user, or gives the existing one
// the benchmark's home. Its password field is "*": no password, not locked.
func ensureUser(t *testing.T, home string) {
	t.Helper()
	if _, err := user.Lookup(benchUser); err != nil {
		out, err := exec.Command("useradd", "-M", "-d", home, "-s", "/bin/bash", "-p", "*", benchUser).CombinedOutput()
		require.NoError(t, err, "useradd: %s", out)
		return
	}
	out, err := exec.Command("usermod", "-d", home, "-s", "/bin/bash", "-p", "*", benchUser).CombinedOutput()
	require.NoError(t, err, "usermod: %s", out)
}

// setLoginCost makes every session's shell start-up take d (bash reads
// ~/.bashrc for a command sshd runs).
func (f *fleet) setLoginCost(t *testing.T, d time.Duration) {
	t.Helper()
	if f.home == "" {
		return
	}
	rc := ""
	if d > 0 {
		rc = fmt.Sprintf("sleep %s\n", strconv.FormatFloat(d.Seconds(), 'f', 3, 64))
	}
	require.NoError(t, os.WriteFile(filepath.Join(f.home, ".bashrc"), []byte(rc), 0o644))
}

var runSeq int

func nextTag() string {
	runSeq++
	return fmt.Sprintf("bench-%d-%d", time.Now().Unix(), runSeq)
}

// pssh flushes every node with parallel-ssh, par at a time.
func (f *fleet) pssh(t *testing.T, par int, name string) run {
	t.Helper()
	tag := nextTag()
	args := []string{"-h", f.hostsFile, "-l", f.user, "-p", strconv.Itoa(par), "-t", "300",
		"-O", "UserKnownHostsFile=" + f.knownHosts, "-O", "StrictHostKeyChecking=yes", "-O", "IdentityFile=" + f.keyPath,
		"-O", "IdentitiesOnly=yes", "-O", "BatchMode=yes", "-O", "ControlMaster=no",
		f.nodetool + " snapshot -t " + tag}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "parallel-ssh", args...).CombinedOutput()
	whole := time.Since(start)
	if err != nil {
		t.Logf("%s: %v\n%s", name, err, lastLines(string(out), 5))
	}
	r := f.recorded(t, tag)
	r.name, r.whole = name, whole
	return r
}

// times_ reads what the nodes recorded of the run with tag.
func (f *fleet) recorded(t *testing.T, tag string) run {
	t.Helper()
	var starts []float64
	var longest time.Duration
	files, err := filepath.Glob(filepath.Join(f.times, tag+".*"))
	require.NoError(t, err)
	for _, p := range files {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		var s, e float64
		if _, err := fmt.Sscan(string(b), &s, &e); err != nil {
			continue
		}
		starts = append(starts, s)
		longest = max(longest, time.Duration((e-s)*float64(time.Second)))
	}
	r := run{ok: len(starts), longest: longest}
	if len(starts) > 0 {
		r.spread = time.Duration((slices.Max(starts) - slices.Min(starts)) * float64(time.Second))
	}
	return r
}

// quiesceWorker is a worker with a new SSH executor flushing the fleet.
type quiesceWorker struct {
	f    *fleet
	env  *testenv.Env
	w    *worker.Worker
	exec *ssh.Executor
}

func (f *fleet) startWorker(t *testing.T, inFlight int) *quiesceWorker {
	t.Helper()
	env := testenv.New(t, topology.Options{AckWait: time.Minute})
	e, err := ssh.New(ssh.Config{User: f.user, IdentityFiles: []string{f.keyPath}, KnownHosts: []string{f.knownHosts},
		ConnectTimeout: 30 * time.Second, CommandTimeout: 2 * time.Minute}, ssh.Options{})
	require.NoError(t, err)
	tool := nodetool.New(e, nodetool.Settings{Base: []string{f.nodetool}})
	w := worker.New(env.JS, env.H.Jobs, fakes.Drivers{Tool: tool, Snap: fakes.NewSnapshotter()}, worker.Config{
		Logger: zerolog.Nop(), Kinds: []messages.Kind{messages.KindFlush},
		Concurrency: map[messages.Kind]int{messages.KindFlush: inFlight},
	})
	require.NoError(t, w.Start(t.Context()))
	return &quiesceWorker{f: f, env: env, w: w, exec: e}
}

func (q *quiesceWorker) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = q.w.StopAndCancel(ctx)
	_ = q.exec.Close()
}

// flush publishes one job's flush tasks, all with one fire time, and waits
// for every result.
func (q *quiesceWorker) flush(t *testing.T, name string) run {
	t.Helper()
	tag := nextTag()
	job := fmt.Sprintf("c1-%012x", time.Now().UnixNano()&0xffffffffffff)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cons, err := q.env.JS.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectTaskEvent(job, messages.KindFlush)}})
	require.NoError(t, err)

	start := time.Now()
	fireAt := start.Add(armWindow)
	for _, n := range q.f.nodes {
		task := messages.Task{Schema: messages.TaskSchema, ID: messages.TaskID(job, messages.KindFlush, n.Name),
			Kind: messages.KindFlush, JobID: job, Cluster: "c1", Target: n.Name, Tag: tag, Node: &n,
			Deadline: start.Add(5 * time.Minute), FireAt: fireAt}
		data, err := json.Marshal(task)
		require.NoError(t, err)
		_, err = q.env.JS.Publish(ctx, messages.SubjectTask(messages.KindFlush, "c1"), data, jetstream.WithMsgID(task.ID))
		require.NoError(t, err)
	}
	var last time.Time
	failed := 0
	for range q.f.nodes {
		msg, err := cons.Next(jetstream.FetchMaxWait(3 * time.Minute))
		require.NoError(t, err, "%s: results missing", name)
		var res messages.TaskResult
		require.NoError(t, json.Unmarshal(msg.Data(), &res))
		if res.Outcome != messages.OutcomeSucceeded {
			failed++
			if failed <= 3 {
				t.Logf("%s: %s: %s", name, res.Target, res.Error)
			}
		}
		last = time.Now()
	}
	r := q.f.recorded(t, tag)
	r.name, r.whole, r.flush = name, last.Sub(start), last.Sub(fireAt)
	if at := q.armedBy(t, job); at.After(start) {
		r.arm = at.Sub(start)
	}
	return r
}

// armedBy returns when the last node of job recorded its intent: arming is
// done by then.
func (q *quiesceWorker) armedBy(t *testing.T, job string) time.Time {
	t.Helper()
	var latest time.Time
	for _, n := range q.f.nodes {
		e, err := q.env.H.Jobs.Get(t.Context(), messages.IntentKey(job, n.Name))
		if err != nil {
			continue
		}
		var in struct {
			At time.Time `json:"at"`
		}
		if json.Unmarshal(e.Value(), &in) == nil && in.At.After(latest) {
			latest = in.At
		}
	}
	return latest
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func secs(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}
