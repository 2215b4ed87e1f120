package ssh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
	"github.com/quiesce/quiesce/worker/nodetool"
)

// Check is the outcome of one preflight check on one node.
type Check struct {
	// State is "ok", "fail" or "skip" (not run: an earlier check failed,
	// or it does not apply).
	State  string
	Detail string
}

// Preflight check states.
const (
	CheckOK   = "ok"
	CheckFail = "fail"
	CheckSkip = "skip"
)

func ok(detail string) Check { return Check{State: CheckOK, Detail: detail} }
func fail(format string, a ...any) Check {
	return Check{State: CheckFail, Detail: fmt.Sprintf(format, a...)}
}
func skip(detail string) Check { return Check{State: CheckSkip, Detail: detail} }

// PreflightRow is one node's readiness for backups.
type PreflightRow struct {
	Node    string
	Address string
	// Reachable: the SSH port answers. HostKey: its key is trusted. Auth:
	// the credentials are accepted.
	Reachable Check
	HostKey   Check
	Auth      Check
	// Nodetool: found and runs; Detail is its release version.
	Nodetool Check
	// Cassandra: the node reports itself Up/Normal.
	Cassandra Check
	// Disk: free space on the data directory covers the live data size,
	// which is what snapshot hard links can pin as compaction replaces files.
	Disk Check
	// Clock: the node's clock is within the allowed skew of this host's.
	Clock Check
}

// Checks returns the row's checks in table order, with their column names.
func (r PreflightRow) Checks() []NamedCheck {
	return []NamedCheck{
		{"SSH", r.Reachable}, {"HOST KEY", r.HostKey}, {"AUTH", r.Auth},
		{"NODETOOL", r.Nodetool}, {"CASSANDRA", r.Cassandra}, {"DISK", r.Disk}, {"CLOCK", r.Clock},
	}
}

// NamedCheck is a check and its column name.
type NamedCheck struct {
	Name string
	Check
}

// OK reports whether no check of the row failed.
func (r PreflightRow) OK() bool {
	for _, c := range r.Checks() {
		if c.State == CheckFail {
			return false
		}
	}
	return true
}

// PreflightOK reports whether every row passed: the exit code of
// "quiesce preflight".
func PreflightOK(rows []PreflightRow) bool {
	for _, r := range rows {
		if !r.OK() {
			return false
		}
	}
	return len(rows) > 0
}

// PreflightOptions tune Preflight.
type PreflightOptions struct {
	// SSH is how the cluster's nodes are reached, and Executor the
	// executor's options (KeyStore for trust-on-first-use clusters).
	SSH      Config
	Executor Options
	// Runner replaces SSH (for a cluster whose nodes run their own agent,
	// or this host); the SSH columns are then skipped.
	Runner nodetool.Runner
	// Nodetool says how nodetool runs on the nodes.
	Nodetool nodetool.Settings
	// DataDir is checked for free space when a node lists no volume path;
	// default /var/lib/cassandra.
	DataDir string
	// MaxClockSkew is the largest clock difference accepted; default 2s.
	MaxClockSkew time.Duration
	// Concurrency bounds nodes checked at once; default 16.
	Concurrency int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Preflight checks every node of a cluster: SSH reachable, host key trusted,
// auth accepted, nodetool found (and its version), Cassandra up and normal,
// free disk against live data, clock skew. A node's failure is a row, not an
// error; the error is for settings that cannot be used at all.
func Preflight(ctx context.Context, nodes []messages.Node, opts PreflightOptions) ([]PreflightRow, error) {
	if opts.DataDir == "" {
		opts.DataDir = "/var/lib/cassandra"
	}
	if opts.MaxClockSkew <= 0 {
		opts.MaxClockSkew = 2 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var exec *Executor
	runner := opts.Runner
	if runner == nil {
		e, err := New(opts.SSH, opts.Executor)
		if err != nil {
			return nil, fmt.Errorf("preflight: %w", err)
		}
		defer e.Close()
		exec, runner = e, e
	}
	client := nodetool.New(runner, opts.Nodetool)
	rows := make([]PreflightRow, len(nodes))
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				rows[i] = PreflightRow{Node: n.Name, Reachable: fail("%v", context.Cause(ctx))}
				return
			}
			defer func() { <-sem }()
			rows[i] = preflightNode(ctx, exec, runner, client, n, opts)
		})
	}
	wg.Wait()
	return rows, nil
}

func preflightNode(ctx context.Context, exec *Executor, runner nodetool.Runner, client *nodetool.Client, n messages.Node, opts PreflightOptions) PreflightRow {
	row := PreflightRow{Node: n.Name, Address: n.Address}
	rest := func(row *PreflightRow, why string) {
		for _, c := range []*Check{&row.HostKey, &row.Auth, &row.Nodetool, &row.Cassandra, &row.Disk, &row.Clock} {
			if c.State == "" {
				*c = skip(why)
			}
		}
	}
	if exec == nil {
		row.Reachable, row.HostKey, row.Auth = skip("local executor"), skip("local executor"), skip("local executor")
	} else {
		if addr, err := exec.Address(n); err == nil {
			row.Address = addr
		}
		err := exec.Check(ctx, n)
		switch errclass.Code(err) {
		case "":
			row.Reachable, row.HostKey, row.Auth = ok(""), ok(""), ok("")
			if err != nil {
				row.Reachable = fail("%v", err)
			}
		case CodeHostKey:
			row.Reachable, row.HostKey = ok(""), fail("%v", err)
		case CodeAuth:
			row.Reachable, row.HostKey, row.Auth = ok(""), ok(""), fail("%v", err)
		case CodeHandshake:
			row.Reachable, row.HostKey = ok(""), fail("handshake: %v", err)
		default:
			row.Reachable = fail("%v", err)
		}
		if err != nil {
			rest(&row, "SSH failed")
			return row
		}
	}

	v, err := client.Version(ctx, n)
	if err != nil {
		row.Nodetool = fail("%s", short(err))
		rest(&row, "nodetool failed")
		row.Clock = clockCheck(ctx, runner, n, opts)
		return row
	}
	row.Nodetool = ok(v)

	info, err := client.Info(ctx, n, false)
	if err != nil {
		row.Cassandra = fail("nodetool info: %s", short(err))
	} else {
		row.Cassandra = cassandraCheck(ctx, client, n, info)
	}

	dir := opts.DataDir
	for _, vol := range n.Volumes {
		if vol.Path != "" {
			dir = vol.Path
			break
		}
	}
	row.Disk = diskCheck(ctx, runner, n, dir, info, err == nil)
	row.Clock = clockCheck(ctx, runner, n, opts)
	return row
}

func cassandraCheck(ctx context.Context, client *nodetool.Client, n messages.Node, info nodetool.Info) Check {
	status, err := client.Status(ctx, n, "")
	if err != nil {
		return fail("nodetool status: %s", short(err))
	}
	for _, s := range status {
		if s.HostID != info.HostID {
			continue
		}
		if !s.UpNormal() {
			return fail("%s%s", s.Status, s.State)
		}
		return ok("UN")
	}
	return fail("host %s not in nodetool status", info.HostID)
}

func diskCheck(ctx context.Context, r nodetool.Runner, n messages.Node, dir string, info nodetool.Info, haveInfo bool) Check {
	out, err := r.Run(ctx, n, nodetool.Command{Argv: []string{"df", "-Pk", dir}})
	if err != nil {
		return fail("df %s: %s", dir, short(err))
	}
	free, err := parseDF(out.Stdout)
	if err != nil {
		return fail("df %s: %v", dir, err)
	}
	if !haveInfo || info.LoadBytes < 0 {
		return ok(fmt.Sprintf("%s free, live data unknown", human(free)))
	}
	detail := fmt.Sprintf("%s free, %s live", human(free), human(info.LoadBytes))
	if free < info.LoadBytes {
		return Check{State: CheckFail, Detail: detail}
	}
	return ok(detail)
}

// parseDF reads the available bytes from "df -Pk" output.
func parseDF(out []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		kb, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64/1024 {
			return 0, fmt.Errorf("bad available size %q", f[3])
		}
		return kb * 1024, nil
	}
	return 0, errors.New("no filesystem line")
}

func clockCheck(ctx context.Context, r nodetool.Runner, n messages.Node, opts PreflightOptions) Check {
	before := opts.Now()
	out, err := r.Run(ctx, n, nodetool.Command{Argv: []string{"date", "+%s.%N"}})
	after := opts.Now()
	if err != nil {
		return fail("date: %s", short(err))
	}
	remote, err := parseEpoch(strings.TrimSpace(string(out.Stdout)))
	if err != nil {
		return fail("date: %v", err)
	}
	// The remote clock was read somewhere in the round trip; its middle is
	// the best guess, and half the round trip the uncertainty.
	mid := before.Add(after.Sub(before) / 2)
	skew := remote.Sub(mid)
	detail := fmt.Sprintf("%+.3fs", skew.Seconds())
	if skew.Abs() > opts.MaxClockSkew+after.Sub(before)/2 {
		return Check{State: CheckFail, Detail: detail + " (max " + opts.MaxClockSkew.String() + ")"}
	}
	return ok(detail)
}

// parseEpoch reads "seconds.nanoseconds"; a date without %N support prints
// "seconds.N" or "seconds.%N", read as whole seconds.
func parseEpoch(s string) (time.Time, error) {
	sec, frac, _ := strings.Cut(s, ".")
	secs, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("unreadable time %q", s)
	}
	var nanos int64
	if len(frac) == 9 {
		if v, err := strconv.ParseInt(frac, 10, 64); err == nil {
			nanos = v
		}
	}
	return time.Unix(secs, nanos), nil
}

// short is an error's first line, with nodetool's stderr where there is one.
func short(err error) string {
	s := err.Error()
	if st := strings.TrimSpace(errclass.Stderr(err)); st != "" {
		s = st
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func human(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTP"[exp])
}

// WritePreflight writes rows as a table, one node a line, then the detail of
// every failed check. The exit code belongs to the caller: PreflightOK.
func WritePreflight(w io.Writer, rows []PreflightRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "NODE\tADDRESS")
	var names []string
	if len(rows) > 0 {
		for _, c := range rows[0].Checks() {
			names = append(names, c.Name)
		}
	} else {
		for _, c := range (PreflightRow{}).Checks() {
			names = append(names, c.Name)
		}
	}
	for _, n := range names {
		fmt.Fprintf(tw, "\t%s", n)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s", r.Node, r.Address)
		for _, c := range r.Checks() {
			fmt.Fprintf(tw, "\t%s", cell(c.Check))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var failures []string
	for _, r := range rows {
		for _, c := range r.Checks() {
			if c.State == CheckFail {
				failures = append(failures, fmt.Sprintf("  %s %s: %s", r.Node, strings.ToLower(c.Name), c.Detail))
			}
		}
	}
	if len(failures) > 0 {
		if _, err := fmt.Fprintf(w, "\n%d problem(s):\n%s\n", len(failures), strings.Join(failures, "\n")); err != nil {
			return err
		}
	}
	return nil
}

func cell(c Check) string {
	switch c.State {
	case CheckOK:
		if c.Detail != "" {
			return c.Detail
		}
		return "ok"
	case CheckFail:
		if len(c.Detail) <= 24 && c.Detail != "" && !strings.ContainsAny(c.Detail, "\t\n") {
			return "FAIL " + c.Detail
		}
		return "FAIL"
	}
	return "-"
}
