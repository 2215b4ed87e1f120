// Package noderestore restores one Cassandra node from a backup, through
// the cluster's node executor (SSH, agent or local): it drains and stops
// Cassandra, puts the node's data at the backup's barrier (the files of
// snapshots/<tag> become every table's live SSTables; commitlog, hints,
// saved caches and cdc_raw emptied; what is displaced kept aside), starts
// Cassandra and verifies the restored cluster as the node sees it.
//
// Every step is idempotent and records its progress on the node, in
// <first data directory>/.quiesce-restore/<restore id>/progress, so a rerun
// after any crash continues where the last attempt stopped. Nothing the
// restore displaces is deleted: SSTables go to
// <ks>/<table>-<id>/snapshots/quiesce-displaced-<restore id>/ (Cassandra
// lists them as a snapshot; `nodetool clearsnapshot -t
// quiesce-displaced-<restore id>` removes them), the other directories'
// files to <dir>/.quiesce-displaced-<restore id>/.
//
// Every command is a constant POSIX sh script or a nodetool command; every
// value reaches it as an argument, validated first and quoted word by word
// by the executor.
package noderestore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// Target says where a restore puts the backup.
type Target string

// Targets of a node restore.
const (
	// InPlace restores the nodes the backup was taken of.
	InPlace Target = "in-place"
	// NewCluster restores into other nodes, which never join the source.
	NewCluster Target = "new-cluster"
)

// Step is how far a node's restore got.
type Step string

// Steps, in order.
const (
	StepStopped  Step = "stopped"
	StepPrepared Step = "prepared"
	StepStarted  Step = "started"
	StepVerified Step = "verified"
)

// ErrCassandraRunning is wrapped by the error of a step that found
// Cassandra running where it must not: Stop without StopRunning, and
// Prepare. Nothing was changed on the node.
var ErrCassandraRunning = errors.New("cassandra is running on the node")

// Spec is what a node's restore does.
type Spec struct {
	// RestoreID names the progress record and the aside directories.
	RestoreID string
	Target    Target
	// Tag is the backup's snapshot tag: snapshots/<Tag> in every table
	// directory.
	Tag string
	// Address is the node's Cassandra address (CQL and the ring); default
	// the node's address.
	Address string
	// StopRunning lets Stop drain and stop a running Cassandra.
	StopRunning bool
	// Keyspaces restricts the restore to these keyspaces; empty for every
	// keyspace, the system ones included (a restore of the user keyspaces
	// alone keeps schema changes made after the barrier).
	Keyspaces []string
	// Sources say where each data directory's snapshot is; empty for every
	// data directory holding its own snapshots/<Tag>.
	Sources []Source
	// Dirs are the node's live directories; default the node's Dirs.
	Dirs messages.NodeDirs
	// NewCluster is set for the NewCluster target.
	NewCluster *NewClusterSpec
}

// Source is where one live data directory's snapshot is.
type Source struct {
	// DataDir is the live data directory.
	DataDir string
	// From holds <ks>/<table>-<id>/snapshots/<tag> (a restored copy of the
	// volume); empty for DataDir itself.
	From string
	// Mount, when set, is where the restored volume holding From is
	// mounted for the restore, from the first of Devices that is a block
	// device on the node. It is unmounted once the files are in place.
	Mount   string
	Devices []string
}

// NewClusterSpec is what differs for a node of a new cluster.
type NewClusterSpec struct {
	// ClusterName is the new cluster's name; with KeepIdentity it must be
	// the source's (Cassandra refuses a saved name that differs).
	ClusterName string
	// KeepIdentity keeps the snapshot's system.local: host IDs and tokens
	// kept. Otherwise system.local is emptied, the node gets a new host ID
	// and must be started with InitialTokens.
	KeepIdentity  bool
	InitialTokens []string
	// Seeds are the new cluster's seeds, among its own nodes.
	Seeds []string
}

// Report is what a step did.
type Report struct {
	Step Step
	// Again is set when an earlier attempt had done the step.
	Again bool
	// Aside are where displaced files went (patterns).
	Aside []string
	// Files are the SSTable files in place; Linked how many this attempt
	// hard-linked, Copied how many it copied from another file system;
	// Moved how many entries it moved aside.
	Files, Linked, Copied, Moved int
	// Emptied are the table directories emptied (no snapshot: created
	// after the barrier; or dropped for a new cluster).
	Emptied []string
	HostID  string
	Tokens  []string
	Notes   []string
}

// Settings say how a cluster's nodes are restored.
type Settings struct {
	// Service stops and starts Cassandra.
	Service ServiceSettings
	// Sudo runs the file steps through "sudo -n".
	Sudo bool
	// CQLPort is the native transport port; default 9042.
	CQLPort int
	// CQLUsername and CQLPassword log in to CQL when set.
	CQLUsername, CQLPassword string
	// Poll is how often Start and Verify look again; default 1 s.
	Poll time.Duration
	// StartAttempts is how many times Start starts a Cassandra that exits
	// before it serves CQL; default 3.
	StartAttempts int
}

// Restorer carries out the node-level steps of a restore.
type Restorer struct {
	runner nodetool.Runner
	tool   *nodetool.Client
	svc    Service
	s      Settings
}

// New returns a Restorer running commands through runner, nodetool through
// tool and Cassandra's service through svc (a CommandService over runner
// when nil).
func New(runner nodetool.Runner, tool *nodetool.Client, svc Service, s Settings) *Restorer {
	if svc == nil {
		svc = &CommandService{Runner: runner, Settings: s.Service}
	}
	if s.CQLPort == 0 {
		s.CQLPort = 9042
	}
	if s.Poll == 0 {
		s.Poll = time.Second
	}
	if s.StartAttempts == 0 {
		s.StartAttempts = 3
	}
	return &Restorer{runner: runner, tool: tool, svc: svc, s: s}
}

var (
	restoreIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)
	tokenPattern     = regexp.MustCompile(`^-?[0-9]{1,40}$`)
	unitPattern      = regexp.MustCompile(`^[A-Za-z0-9@._:-]{1,128}$`)
	// A cluster name goes into an environment variable and a comparison,
	// never a command line; Cassandra's default is "Test Cluster".
	namePattern = regexp.MustCompile(`^[^\x00-\x1f\x7f]{1,128}$`)
	addrPattern = regexp.MustCompile(`^[A-Za-z0-9.:-]{1,255}$`)
)

// ErrBadSpec is wrapped by the error of a spec that cannot be carried out.
var ErrBadSpec = errors.New("bad node restore spec")

// Validate names every problem of the spec for node.
func (s Spec) Validate(node messages.Node) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !restoreIDPattern.MatchString(s.RestoreID) {
		add("restore ID %q: want 1-100 letters, digits, '_' and '-', starting with a letter or digit", s.RestoreID)
	}
	switch s.Target {
	case InPlace:
		if s.NewCluster != nil {
			add("target in-place takes no new-cluster settings")
		}
	case NewCluster:
		if s.NewCluster == nil {
			add("target new-cluster needs its new-cluster settings")
		} else {
			nc := s.NewCluster
			if !nc.KeepIdentity && len(nc.InitialTokens) == 0 {
				add("new cluster without the snapshot's system.local: initial tokens (the source node's) are required")
			}
			for _, t := range nc.InitialTokens {
				if !tokenPattern.MatchString(t) {
					add("initial token %q is not a token", t)
				}
			}
			if nc.ClusterName != "" && !namePattern.MatchString(nc.ClusterName) {
				add("cluster name %q: want 1 to 128 printable characters", nc.ClusterName)
			}
			for _, a := range nc.Seeds {
				if !addrPattern.MatchString(a) {
					add("seed %q is not an address", a)
				}
			}
		}
	default:
		add("target %q: want %s or %s", s.Target, InPlace, NewCluster)
	}
	if err := messages.ValidateTag(s.Tag); err != nil {
		add("tag: %w", err)
	}
	if a := s.address(node); !addrPattern.MatchString(a) {
		add("node %s: Cassandra address %q is not an address", node.Name, a)
	}
	for _, ks := range s.Keyspaces {
		if err := messages.ValidateKeyspace(ks); err != nil {
			add("keyspace: %w", err)
		}
	}
	dirs := s.dirs(node)
	if len(dirs.Data) == 0 {
		add("node %s: no data directory known (configure the node's directories, or take a backup that records them)", node.Name)
	}
	for _, d := range dirs.Data {
		if err := messages.ValidateDir("data directory", d); err != nil {
			errs = append(errs, err)
		}
	}
	for name, d := range map[string]string{"commitlog directory": dirs.CommitLog, "hints directory": dirs.Hints,
		"saved caches directory": dirs.SavedCaches, "cdc_raw directory": dirs.CDCRaw} {
		if d == "" {
			continue
		}
		if err := messages.ValidateDir(name, d); err != nil {
			errs = append(errs, err)
		}
	}
	for _, src := range s.Sources {
		if !slices.Contains(dirs.Data, src.DataDir) {
			add("source for %q: not a data directory of node %s (%v)", src.DataDir, node.Name, dirs.Data)
		}
		if src.From != "" {
			if err := messages.ValidateDir("source directory", src.From); err != nil {
				errs = append(errs, err)
			}
		}
		if src.Mount == "" {
			continue
		}
		if err := messages.ValidateDir("mount point", src.Mount); err != nil {
			errs = append(errs, err)
		} else if _, ok := within(src.Mount, src.From); !ok {
			add("source for %q: %q is not under its mount point %q", src.DataDir, src.From, src.Mount)
		}
		for _, d := range src.Devices {
			if err := messages.ValidateDir("device", d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSpec, err)
	}
	return nil
}

func (s Spec) dirs(node messages.Node) messages.NodeDirs {
	if len(s.Dirs.Data) > 0 || node.Dirs == nil {
		return s.Dirs
	}
	return *node.Dirs
}

func (s Spec) address(node messages.Node) string {
	if s.Address != "" {
		return s.Address
	}
	return node.Address
}

// sources are the spec's sources, one per data directory.
func (s Spec) sources(node messages.Node) []Source {
	var out []Source
	for _, d := range s.dirs(node).Data {
		src := Source{DataDir: d, From: d}
		for _, x := range s.Sources {
			if x.DataDir == d && x.From != "" {
				src.From = x.From
			}
		}
		out = append(out, src)
	}
	return out
}

// mounts are the spec's sources that are mounted for the restore, one per
// mount point.
func (s Spec) mounts() []Source {
	var out []Source
	for _, src := range s.Sources {
		if src.Mount != "" && !slices.ContainsFunc(out, func(m Source) bool { return m.Mount == src.Mount }) {
			out = append(out, src)
		}
	}
	return out
}

// within reports whether dir is root or under it.
func within(root, dir string) (string, bool) {
	root, dir = path.Clean(root), path.Clean(dir)
	if dir == root {
		return ".", true
	}
	rel, ok := strings.CutPrefix(dir, strings.TrimSuffix(root, "/")+"/")
	return rel, ok
}

// dropped are the tables a node of the spec never takes from the snapshot.
func (s Spec) dropped() []string {
	if s.Target != NewCluster {
		return nil
	}
	d := []string{"system/peers", "system/peers_v2"}
	if s.NewCluster != nil && !s.NewCluster.KeepIdentity {
		d = append(d, "system/local")
	}
	return d
}

// AsideName is the snapshot name under which a restore keeps the SSTables
// it displaced, in every table directory.
func AsideName(restoreID string) string { return "quiesce-displaced-" + restoreID }

// ProgressPath is where a node keeps a restore's progress record.
func ProgressPath(dirs messages.NodeDirs, restoreID string) string {
	return dirs.Data[0] + "/.quiesce-restore/" + restoreID + "/progress"
}

// progress is a node's record of a restore.
type progress struct{ lines []string }

func (p progress) has(s Step) bool { return slices.Contains(p.lines, string(s)) }

func (r *Restorer) sh(ctx context.Context, node messages.Node, label, script string, args ...string) (nodetool.Output, error) {
	argv := append([]string{"sh", "-c", script, "quiesce-restore"}, args...)
	out, err := r.runner.Run(ctx, node, nodetool.Command{Argv: argv, Sudo: r.s.Sudo, Label: label})
	var ee *nodetool.ExitError
	if errors.As(err, &ee) {
		ee.Label = label
		return out, errclass.Permanent(err)
	}
	return out, err
}

// begin checks the spec and reads the node's progress record, writing its
// first line when there is none. A record of the same restore ID with
// another tag or target is refused.
func (r *Restorer) begin(ctx context.Context, node messages.Node, spec Spec) (progress, error) {
	if err := spec.Validate(node); err != nil {
		return progress{}, errclass.Permanent(errclass.NotRun(err))
	}
	path := ProgressPath(spec.dirs(node), spec.RestoreID)
	out, err := r.sh(ctx, node, "read "+path, readProgressScript, path)
	if err != nil {
		return progress{}, fmt.Errorf("node %s: read the restore's progress: %w", node.Name, err)
	}
	var p progress
	sc := bufio.NewScanner(strings.NewReader(string(out.Stdout)))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			p.lines = append(p.lines, l)
		}
	}
	head := fmt.Sprintf("restore %s tag %s target %s", spec.RestoreID, spec.Tag, spec.Target)
	if len(p.lines) == 0 {
		if err := r.record(ctx, node, spec, head); err != nil {
			return progress{}, err
		}
		p.lines = []string{head}
		return p, nil
	}
	if p.lines[0] != head {
		return progress{}, errclass.Permanent(errclass.NotRun(fmt.Errorf("node %s: %s records %q, not %q: another restore under the same ID",
			node.Name, path, p.lines[0], head)))
	}
	return p, nil
}

func (r *Restorer) record(ctx context.Context, node messages.Node, spec Spec, line string) error {
	path := ProgressPath(spec.dirs(node), spec.RestoreID)
	if _, err := r.sh(ctx, node, "record "+path, writeProgressScript, path, line); err != nil {
		return fmt.Errorf("node %s: record the restore's progress: %w", node.Name, err)
	}
	return nil
}

// Stop drains and stops Cassandra on the node. A stopped Cassandra is
// success. A running one is stopped only with StopRunning; otherwise the
// error wraps ErrCassandraRunning and the node is left as it was.
func (r *Restorer) Stop(ctx context.Context, node messages.Node, spec Spec) (Report, error) {
	rep := Report{Step: StepStopped}
	if err := spec.Validate(node); err != nil {
		return rep, errclass.Permanent(errclass.NotRun(err))
	}
	running, err := r.svc.Running(ctx, node)
	if err != nil {
		return rep, err
	}
	if running && !spec.StopRunning {
		return rep, errclass.Permanent(errclass.NotRun(fmt.Errorf("node %s: %w: a restore replaces its data; stop it first, or ask the restore to stop it",
			node.Name, ErrCassandraRunning)))
	}
	p, err := r.begin(ctx, node, spec)
	if err != nil {
		return rep, err
	}
	if running {
		if r.tool != nil {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			err := r.tool.Drain(dctx, node)
			cancel()
			if err != nil {
				// A node that cannot drain is stopped all the same: its
				// commitlog is emptied by Prepare, never replayed.
				rep.Notes = append(rep.Notes, "drain: "+err.Error())
			}
		}
		if err := r.svc.Stop(ctx, node); err != nil {
			return rep, err
		}
		if err := r.waitStopped(ctx, node); err != nil {
			return rep, err
		}
	} else {
		rep.Again = p.has(StepStopped)
	}
	if !p.has(StepStopped) {
		if err := r.record(ctx, node, spec, string(StepStopped)); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (r *Restorer) waitStopped(ctx context.Context, node messages.Node) error {
	for {
		running, err := r.svc.Running(ctx, node)
		if err == nil && !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: Cassandra still running after its stop: %w", node.Name, context.Cause(ctx))
		case <-time.After(r.s.Poll):
		}
	}
}

// Prepare puts the node's data at the barrier: in every table directory of
// the restored keyspaces the files of snapshots/<tag> (from the source
// directory) become the live files, a table directory without
// snapshots/<tag> is emptied, and commitlog, hints, saved caches and
// cdc_raw are emptied; what is displaced is kept aside. For a new cluster
// the snapshot's system.peers and peers_v2 (and system.local, unless the
// identity is kept) are emptied. Cassandra must be stopped.
func (r *Restorer) Prepare(ctx context.Context, node messages.Node, spec Spec) (Report, error) {
	rep := Report{Step: StepPrepared}
	if err := spec.Validate(node); err != nil {
		return rep, errclass.Permanent(errclass.NotRun(err))
	}
	running, err := r.svc.Running(ctx, node)
	if err != nil {
		return rep, err
	}
	if running {
		return rep, errclass.Permanent(errclass.NotRun(fmt.Errorf("node %s: %w: its files are never replaced under it", node.Name, ErrCassandraRunning)))
	}
	p, err := r.begin(ctx, node, spec)
	if err != nil {
		return rep, err
	}
	dirs := spec.dirs(node)
	aside := AsideName(spec.RestoreID)
	for _, d := range dirs.Data {
		rep.Aside = append(rep.Aside, d+"/*/*/snapshots/"+aside)
	}
	var others []string
	for _, d := range []string{dirs.CommitLog, dirs.Hints, dirs.SavedCaches, dirs.CDCRaw} {
		if d != "" {
			others = append(others, d)
			rep.Aside = append(rep.Aside, d+"/."+aside)
		}
	}
	if p.has(StepPrepared) {
		rep.Again = true
		return rep, nil
	}
	mounts := spec.mounts()
	for _, m := range mounts {
		if len(m.Devices) == 0 {
			return rep, errclass.Permanent(errclass.NotRun(fmt.Errorf("%w: node %s: no device given for the volume to mount at %s",
				ErrBadSpec, node.Name, m.Mount)))
		}
	}
	for _, m := range mounts {
		if _, err := r.sh(ctx, node, "mount the restored volume at "+m.Mount, mountScript, append([]string{m.Mount}, m.Devices...)...); err != nil {
			return rep, fmt.Errorf("node %s: %w", node.Name, err)
		}
	}
	for _, src := range spec.sources(node) {
		out, err := r.sh(ctx, node, "place "+src.DataDir+" at snapshots/"+spec.Tag, placeScript,
			spec.Tag, aside, src.From, src.DataDir, strings.Join(spec.Keyspaces, " "), strings.Join(spec.dropped(), " "))
		if err != nil {
			return rep, fmt.Errorf("node %s: %w", node.Name, err)
		}
		if err := parsePlace(out.Stdout, &rep); err != nil {
			return rep, errclass.Permanent(fmt.Errorf("node %s: place %s: %w", node.Name, src.DataDir, err))
		}
	}
	if len(others) > 0 {
		out, err := r.sh(ctx, node, "empty "+strings.Join(others, " "), emptyScript, append([]string{"." + aside}, others...)...)
		if err != nil {
			return rep, fmt.Errorf("node %s: %w", node.Name, err)
		}
		if n, ok := strings.CutPrefix(strings.TrimSpace(string(out.Stdout)), "moved "); ok {
			m, _ := strconv.Atoi(n)
			rep.Moved += m
		}
	}
	if len(mounts) > 0 {
		var points []string
		for _, m := range mounts {
			points = append(points, m.Mount)
		}
		if _, err := r.sh(ctx, node, "unmount "+strings.Join(points, " "), unmountScript, points...); err != nil {
			return rep, fmt.Errorf("node %s: %w", node.Name, err)
		}
	}
	if err := r.record(ctx, node, spec, string(StepPrepared)); err != nil {
		return rep, err
	}
	return rep, nil
}

// parsePlace reads placeScript's output into rep.
func parsePlace(out []byte, rep *Report) error {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[0])
	if len(f) != 10 || f[0] != "placed" || f[2] != "linked" || f[4] != "copied" || f[6] != "moved" || f[8] != "emptied" {
		return fmt.Errorf("unexpected output %q", lines[0])
	}
	var n [5]int
	for i := range n {
		v, err := strconv.Atoi(f[2*i+1])
		if err != nil {
			return fmt.Errorf("unexpected output %q", lines[0])
		}
		n[i] = v
	}
	rep.Files += n[0]
	rep.Linked += n[1]
	rep.Copied += n[2]
	rep.Moved += n[3]
	for _, l := range lines[1:] {
		if d, ok := strings.CutPrefix(l, "emptied "); ok {
			rep.Emptied = append(rep.Emptied, d)
		}
	}
	return nil
}

// startEnv is the environment of the start command.
func (s Spec) startEnv() map[string]string {
	if s.NewCluster == nil {
		return nil
	}
	env := map[string]string{"QUIESCE_RESTORE_ID": s.RestoreID}
	if s.NewCluster.ClusterName != "" {
		env["QUIESCE_CLUSTER_NAME"] = s.NewCluster.ClusterName
	}
	if len(s.NewCluster.InitialTokens) > 0 {
		env["QUIESCE_INITIAL_TOKEN"] = strings.Join(s.NewCluster.InitialTokens, ",")
	}
	if len(s.NewCluster.Seeds) > 0 {
		env["QUIESCE_SEEDS"] = strings.Join(s.NewCluster.Seeds, ",")
	}
	return env
}

// Start starts Cassandra on a prepared node and returns once it serves CQL,
// with the host ID and tokens the node reports.
func (r *Restorer) Start(ctx context.Context, node messages.Node, spec Spec) (Report, error) {
	rep := Report{Step: StepStarted}
	p, err := r.begin(ctx, node, spec)
	if err != nil {
		return rep, err
	}
	if !p.has(StepPrepared) {
		return rep, errclass.Permanent(errclass.NotRun(fmt.Errorf("node %s: not prepared for restore %s: Cassandra is started only on restored data",
			node.Name, spec.RestoreID)))
	}
	running, err := r.svc.Running(ctx, node)
	if err != nil {
		return rep, err
	}
	rep.Again = running && p.has(StepStarted)
	addr := spec.address(node)
	for attempt := 1; ; attempt++ {
		if !running {
			err = r.svc.Start(ctx, node, spec.startEnv())
		}
		if err == nil {
			err = r.waitCQL(ctx, node, addr)
		}
		if err == nil {
			break
		}
		// A node started before its seeds listen exits ("Unable to gossip
		// with any peers"): when every node of a cluster starts at once on
		// a loaded machine, a seed can take a minute. Started again, it
		// finds them.
		if attempt >= r.s.StartAttempts || ctx.Err() != nil {
			return rep, err
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("start attempt %d: %v", attempt, firstLine(err.Error())))
		if running, err = r.svc.Running(ctx, node); err != nil {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return rep, context.Cause(ctx)
		case <-time.After(r.s.Poll):
		}
	}
	if !p.has(StepStarted) {
		if err := r.record(ctx, node, spec, string(StepStarted)); err != nil {
			return rep, err
		}
	}
	if r.tool != nil {
		if info, err := r.tool.Info(ctx, node, true); err == nil {
			rep.HostID, rep.Tokens = info.HostID, info.Tokens
		} else {
			rep.Notes = append(rep.Notes, "info -T: "+err.Error())
		}
	}
	return rep, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Teardown stops Cassandra on a node of a scratch target and removes what
// the restore put there: the contents of its data, commitlog, hints, saved
// caches and cdc_raw directories and the progress records of every restore
// there (a scratch node's restores are all drills: an interrupted drill's
// leftovers go with the next one's). The staged volume copies are the
// volume driver's to remove. It is for drills only: a node whose
// progress record does not name this restore is refused and left as it
// was. A node torn down already is success.
func (r *Restorer) Teardown(ctx context.Context, node messages.Node, spec Spec) error {
	if err := spec.Validate(node); err != nil {
		return errclass.Permanent(errclass.NotRun(err))
	}
	dirs := spec.dirs(node)
	record := ProgressPath(dirs, spec.RestoreID)
	work := dirs.Data[0] + "/.quiesce-restore"
	out, err := r.sh(ctx, node, "read "+record, readProgressScript, record)
	if err != nil {
		return fmt.Errorf("node %s: %w", node.Name, err)
	}
	if len(out.Stdout) == 0 {
		return nil
	}
	if err := r.svc.Stop(ctx, node); err != nil {
		return err
	}
	if err := r.waitStopped(ctx, node); err != nil {
		return err
	}
	args := []string{record, work}
	args = append(args, dirs.Data...)
	for _, d := range []string{dirs.CommitLog, dirs.Hints, dirs.SavedCaches, dirs.CDCRaw} {
		if d != "" {
			args = append(args, d)
		}
	}
	if _, err := r.sh(ctx, node, "tear down "+node.Name, teardownScript, args...); err != nil {
		return fmt.Errorf("node %s: %w", node.Name, err)
	}
	return nil
}
