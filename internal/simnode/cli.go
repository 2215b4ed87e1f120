package simnode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quiesce/quiesce/messages"
)

// RootEnv names the environment variable Main reads the node root from when
// --root is not given.
const RootEnv = "QUIESCE_SIMNODE_ROOT"

// Exit codes of Main, as Apache Cassandra's nodetool uses them.
const (
	ExitOK = 0
	// ExitUsage: bad arguments, or no node to talk to ("nodetool: ..." on
	// stdout, or "Failed to connect" on stderr).
	ExitUsage = 1
	// ExitError: the command ran and failed ("error: ..." on stderr).
	ExitError = 2
)

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// stdoutError is a failure nodetool prints on stdout as it is, exiting 1
// (status and ring of an unknown keyspace).
type stdoutError struct{ msg string }

func (e *stdoutError) Error() string { return strings.TrimSpace(e.msg) }

// keyspaceArgError is how status and ring refuse an unknown keyspace.
func keyspaceArgError(err error) error {
	var ke *KeyspaceNotFoundError
	if errors.As(err, &ke) {
		return &stdoutError{"\nError: The keyspace " + ke.Keyspace + ", does not exist"}
	}
	return err
}

// Main is a nodetool for a simulated node. args are the arguments after the
// program name: global options (--root DIR, or $QUIESCE_SIMNODE_ROOT; the
// connection options -h, -p, -u, -pw, -pwf, -pp are accepted and ignored),
// then one of snapshot, clearsnapshot, listsnapshots, flush, status, info,
// ring, describering, describecluster, datapaths, version, help. Output,
// streams and exit codes follow Apache Cassandra 5.0.6's nodetool (its
// recorded runs are in worker/nodetool/testdata/cassandra-5.0.6): usage
// problems, an unknown keyspace given to snapshot and a node that cannot be
// reached print "nodetool: ..." and exit 1; an unknown keyspace given to
// status or ring prints "Error: ..." to stdout and exits 1; a command that
// fails prints "error: ..." and a stack trace section to stderr and exits 2.
func Main(args []string, stdout, stderr io.Writer) int {
	root := os.Getenv(RootEnv)
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		switch name {
		case "--root", "-h", "--host", "-p", "--port", "-u", "--username", "-pw", "--password", "-pwf", "--password-file":
			if !hasVal {
				if i+1 >= len(args) {
					return usage(stdout, usagef("Required values for option '%s' not provided", name))
				}
				i++
				val = args[i]
			}
			if name == "--root" {
				root = val
			}
			continue
		case "-pp", "--print-port":
			continue
		}
		rest = append(rest, a)
	}
	if len(rest) == 0 {
		printHelp(stdout)
		return ExitOK
	}
	cmd, cargs := rest[0], rest[1:]
	if cmd == "help" {
		printHelp(stdout)
		return ExitOK
	}
	if _, ok := commands[cmd]; !ok {
		return usage(stdout, usagef("Found unexpected parameters: [%s]", cmd))
	}
	if root == "" {
		fmt.Fprintf(stderr, "nodetool: Failed to connect to '127.0.0.1:7199' - no simulated node: give --root DIR or set %s.\n", RootEnv)
		return ExitUsage
	}
	n, err := Open(root)
	if err != nil {
		fmt.Fprintf(stderr, "nodetool: Failed to connect to '127.0.0.1:7199' - NoSuchFileException: '%s'.\n", filepath.Join(root, metaFile))
		return ExitUsage
	}
	if f, err := readFaults(n.root); err == nil && f.Down {
		fmt.Fprintf(stderr, "nodetool: Failed to connect to '%s:7199' - ConnectException: 'Connection refused'.\n", n.info.Address)
		return ExitUsage
	}
	err = commands[cmd](n, cargs, stdout)
	var ue *usageError
	var oe *stdoutError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return usage(stdout, err)
	case errors.As(err, &oe):
		fmt.Fprintln(stdout, oe.msg)
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "error: %s\n-- StackTrace --\n%s: %s\n", err, javaClass(err), err)
		return ExitError
	}
}

var commands map[string]func(*Node, []string, io.Writer) error

func init() {
	commands = map[string]func(*Node, []string, io.Writer) error{
		"snapshot":        cmdSnapshot,
		"clearsnapshot":   cmdClearSnapshot,
		"listsnapshots":   cmdListSnapshots,
		"flush":           cmdFlush,
		"status":          cmdStatus,
		"info":            cmdInfo,
		"ring":            cmdRing,
		"describering":    cmdDescribeRing,
		"describecluster": cmdDescribeCluster,
		"datapaths":       cmdDataPaths,
		"version":         cmdVersion,
	}
}

func usage(w io.Writer, err error) int {
	fmt.Fprintf(w, "nodetool: %s\nSee 'nodetool help' or 'nodetool help <command>'.\n", err)
	return ExitUsage
}

func javaClass(err error) string {
	var ke *KeyspaceNotFoundError
	var se *SnapshotExistsError
	var ne *noSuchKeyspaceError
	var fe *FaultError
	switch {
	case errors.As(err, &ke), errors.As(err, &se), errors.As(err, &ne):
		return "java.io.IOException"
	case errors.As(err, &fe):
		return "java.lang.RuntimeException"
	default:
		return "java.lang.IllegalArgumentException"
	}
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `usage: nodetool [--root <dir>] <command> [<args>]

The most commonly used nodetool commands are:
    clearsnapshot    Remove the snapshot with the given name from the given keyspaces
    datapaths        Print all directories where data of tables are stored
    describecluster  Print the name, snitch, partitioner and schema version of a cluster
    describering     Shows the token ranges info of a given keyspace
    flush            Flush one or more tables
    help             Display help information
    info             Print node information (uptime, load, ...)
    listsnapshots    Lists all the snapshots along with the size on disk and true size.
    ring             Print information about the token ring
    snapshot         Take a snapshot of specified keyspaces or a snapshot of the specified table
    status           Print cluster information (state, load, IDs, ...)
    version          Print cassandra version

See 'nodetool help <command>' for more information on a specific command.

`)
}

// options splits a subcommand's arguments into values of the named options
// (valued maps each spelling to a canonical name), flags and positionals.
func options(args []string, valued map[string]string, flags map[string]string) (map[string]string, []string, error) {
	got := map[string]string{}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(a, "=")
		if canon, ok := valued[name]; ok {
			if !hasVal {
				if i+1 >= len(args) {
					return nil, nil, usagef("Required values for option '%s' not provided", canon)
				}
				i++
				val = args[i]
			}
			got[canon] = val
			continue
		}
		if canon, ok := flags[name]; ok && !hasVal {
			got[canon] = "true"
			continue
		}
		return nil, nil, usagef("Found unexpected parameters: [%s]", a)
	}
	return got, pos, nil
}

func bracketList(keyspaces []string) string {
	if len(keyspaces) == 0 {
		return "[all keyspaces]"
	}
	return "[" + strings.Join(keyspaces, ", ") + "]"
}

func cmdSnapshot(n *Node, args []string, w io.Writer) error {
	opts, keyspaces, err := options(args,
		map[string]string{"-t": "tag", "--tag": "tag"},
		map[string]string{"-sf": "skip-flush", "--skip-flush": "skip-flush"})
	if err != nil {
		return err
	}
	tag := opts["tag"]
	if tag == "" {
		tag = strconv.FormatInt(time.Now().UnixMilli(), 10)
	}
	skip := opts["skip-flush"] == "true"
	fmt.Fprintf(w, "Requested creating snapshot(s) for %s with snapshot name [%s] and options {skipFlush=%t}\n",
		bracketList(keyspaces), tag, skip)
	if err := n.snapshot(nil, tag, keyspaces, skip); err != nil {
		var ke *KeyspaceNotFoundError
		if errors.As(err, &ke) {
			// 5.0.6 refuses it as a bad argument: on stdout, exit 1.
			return usagef("%s", ke.Error())
		}
		return err
	}
	fmt.Fprintf(w, "Snapshot directory: %s\n", tag)
	return nil
}

func cmdClearSnapshot(n *Node, args []string, w io.Writer) error {
	opts, keyspaces, err := options(args,
		map[string]string{"-t": "tag", "--tag": "tag"},
		map[string]string{"--all": "all"})
	if err != nil {
		return err
	}
	tag, all := opts["tag"], opts["all"] == "true"
	if tag == "" && !all {
		return usagef("Specify snapshot name or --all")
	}
	if tag != "" && all {
		return usagef("Specify only one of snapshot name or --all")
	}
	if !all {
		fmt.Fprintf(w, "Requested clearing snapshot(s) for %s with snapshot name [%s]\n", bracketList(keyspaces), tag)
	}
	return n.clearSnapshot(nil, tag, keyspaces)
}

func cmdListSnapshots(n *Node, args []string, w io.Writer) error {
	if _, pos, err := options(args, nil, map[string]string{
		"-nt": "no-ttl", "--no-ttl": "no-ttl", "-e": "ephemeral", "--ephemeral": "ephemeral",
	}); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("Found unexpected parameters: %v", pos)
	}
	entries, err := n.ListSnapshots()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "Snapshot Details: ")
	if len(entries) == 0 {
		fmt.Fprintln(w, "There are no snapshots")
		return nil
	}
	var tb table
	tb.add("Snapshot name", "Keyspace name", "Column family name", "True size", "Size on disk", "Creation time", "Expiration time")
	var trueTotal int64
	for _, e := range entries {
		trueTotal += e.TrueSize
		tb.add(e.Tag, e.Keyspace, e.Table, FormatSize(e.TrueSize), FormatSize(e.SizeOnDisk), javaInstant(e.Created), "")
	}
	tb.print(w, " ")
	fmt.Fprintf(w, "\nTotal TrueDiskSpaceUsed: %s\n\n", FormatSize(trueTotal))
	return nil
}

func cmdFlush(n *Node, args []string, _ io.Writer) error {
	_, pos, err := options(args, nil, nil)
	if err != nil {
		return err
	}
	var tables []Table
	switch {
	case len(pos) == 0:
		tables = n.Tables()
	case len(pos) == 1:
		if tables, err = n.tables(pos); err != nil {
			return err
		}
	default:
		for _, name := range pos[1:] {
			t, err := n.table(pos[0], name)
			if err != nil {
				return err
			}
			tables = append(tables, t)
		}
	}
	unlock, err := n.lock(nil)
	if err != nil {
		return err
	}
	defer unlock()
	return n.flushLocked(tables)
}

func (n *Node) load() string {
	size, err := n.LiveDataSize()
	if err != nil {
		return "?"
	}
	return FormatSize(size)
}

func (n *Node) checkKeyspaceArg(pos []string) error {
	if len(pos) > 1 {
		return usagef("Found unexpected parameters: %v", pos[1:])
	}
	if len(pos) == 1 {
		if _, err := n.tables(pos); err != nil {
			return keyspaceArgError(err)
		}
	}
	return nil
}

func cmdStatus(n *Node, args []string, w io.Writer) error {
	_, pos, err := options(args, nil, map[string]string{"-r": "resolve-ip", "--resolve-ip": "resolve-ip"})
	if err != nil {
		return err
	}
	if err := n.checkKeyspaceArg(pos); err != nil {
		return err
	}
	members, err := n.members()
	if err != nil {
		return err
	}
	own := ownership(members, n.rf())
	// One table per datacenter, with column widths shared by all of them,
	// as Cassandra's SharedTable lays them out.
	var dcs []string
	tables := map[string]*table{}
	var all table
	for i, m := range members {
		tb := tables[m.info.DC]
		if tb == nil {
			tb = &table{}
			tb.add("--", "Address", "Load", "Tokens", "Owns (effective)", "Host ID", "Rack")
			tables[m.info.DC] = tb
			dcs = append(dcs, m.info.DC)
		}
		state, load := "UN", "?"
		if !m.up {
			state = "DN"
		}
		if m.load >= 0 {
			load = FormatSize(m.load)
		}
		tb.add(state, m.info.Address, load, strconv.Itoa(len(m.info.Tokens)), formatPercent(own[i], 1), m.info.HostID, m.info.Rack)
	}
	for _, dc := range dcs {
		all.rows = append(all.rows, tables[dc].rows...)
	}
	widths := all.widths()
	for i, dc := range dcs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		header := "Datacenter: " + dc
		fmt.Fprintf(w, "%s\n%s\n", header, strings.Repeat("=", len(header)))
		fmt.Fprintln(w, "Status=Up/Down")
		fmt.Fprintln(w, "|/ State=Normal/Leaving/Joining/Moving")
		tables[dc].printWidths(w, "  ", widths)
	}
	fmt.Fprintln(w)
	return nil
}

func cmdInfo(n *Node, args []string, w io.Writer) error {
	opts, pos, err := options(args, nil, map[string]string{"-T": "tokens", "--tokens": "tokens"})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("Found unexpected parameters: %v", pos)
	}
	line := func(k, v string) { fmt.Fprintf(w, "%-23s: %s\n", k, v) }
	uptime := int64(time.Since(n.info.CreatedAt).Seconds())
	if uptime < 0 {
		uptime = 0
	}
	line("ID", n.info.HostID)
	line("Gossip active", "true")
	line("Native Transport active", "true")
	line("Load", n.load())
	line("Uncompressed load", n.load())
	line("Generation No", strconv.FormatInt(n.info.CreatedAt.Unix(), 10))
	line("Uptime (seconds)", strconv.FormatInt(uptime, 10))
	line("Heap Memory (MB)", "245.62 / 1024.00")
	line("Off Heap Memory (MB)", "0.00")
	line("Data Center", n.info.DC)
	line("Rack", n.info.Rack)
	line("Exceptions", "0")
	line("Key Cache", "entries 0, size 0 bytes, capacity 51 MiB, 0 hits, 0 requests, NaN recent hit rate, 14400 save period in seconds")
	line("Row Cache", "entries 0, size 0 bytes, capacity 0 bytes, 0 hits, 0 requests, NaN recent hit rate, 0 save period in seconds")
	line("Counter Cache", "entries 0, size 0 bytes, capacity 25 MiB, 0 hits, 0 requests, NaN recent hit rate, 7200 save period in seconds")
	line("Network Cache", "size 0 bytes, overflow size: 0 bytes, capacity 128 MiB")
	line("Percent Repaired", "0.0%")
	if opts["tokens"] == "true" {
		for _, t := range n.info.Tokens {
			line("Token", t)
		}
	} else {
		line("Token", fmt.Sprintf("(invoke with -T/--tokens to see all %d tokens)", len(n.info.Tokens)))
	}
	line("Bootstrap state", "COMPLETED")
	line("Bootstrap failed", "false")
	line("Decommissioning", "false")
	line("Decommission failed", "false")
	return nil
}

func cmdRing(n *Node, args []string, w io.Writer) error {
	_, pos, err := options(args, nil, map[string]string{"-r": "resolve-ip", "--resolve-ip": "resolve-ip"})
	if err != nil {
		return err
	}
	if err := n.checkKeyspaceArg(pos); err != nil {
		return err
	}
	members, err := n.members()
	if err != nil {
		return err
	}
	own := ownership(members, n.rf())
	toks := ring(members)
	width := len("Address")
	vnodes := false
	for _, m := range members {
		width = max(width, len(m.info.Address))
		vnodes = vnodes || len(m.info.Tokens) > 1
	}
	format := "%-" + strconv.Itoa(width) + "s  %-12s%-7s%-8s%-16s%-20s%-44s\n"
	fmt.Fprintln(w)
	var dcs []string
	for _, m := range members {
		if len(dcs) == 0 || dcs[len(dcs)-1] != m.info.DC {
			dcs = append(dcs, m.info.DC)
		}
	}
	for _, dc := range dcs {
		var dcToks []ringToken
		for _, t := range toks {
			if members[t.member].info.DC == dc {
				dcToks = append(dcToks, t)
			}
		}
		fmt.Fprintln(w, "Datacenter: "+dc)
		fmt.Fprintln(w, "==========")
		fmt.Fprintf(w, format, "Address", "Rack", "Status", "State", "Load", "Owns", "Token")
		if len(dcToks) > 1 {
			fmt.Fprintf(w, format, "", "", "", "", "", "", dcToks[len(dcToks)-1].text)
		} else {
			fmt.Fprintln(w)
		}
		for _, t := range dcToks {
			m := members[t.member]
			status, load := "Up", "?"
			if !m.up {
				status = "Down"
			}
			if m.load >= 0 {
				load = FormatSize(m.load)
			}
			fmt.Fprintf(w, format, m.info.Address, m.info.Rack, status, "Normal", load, formatPercent(own[t.member], 2), t.text)
		}
		fmt.Fprintln(w)
	}
	if vnodes {
		fmt.Fprintln(w, `  Warning: "nodetool ring" is used to output all the tokens of a node.`)
		fmt.Fprintln(w, `  To view status related info of a node use "nodetool status" instead.`)
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "\n  ")
	return nil
}

func cmdDescribeRing(n *Node, args []string, w io.Writer) error {
	_, pos, err := options(args, nil, nil)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("Missing required parameter: keyspace")
	}
	if err := messages.ValidateKeyspace(pos[0]); err != nil {
		return err
	}
	members, err := n.members()
	if err != nil {
		return err
	}
	toks := ring(members)
	fmt.Fprintln(w, "Schema Version:"+n.info.SchemaID)
	fmt.Fprintln(w, "TokenRange: ")
	if _, err := n.tables(pos); err != nil {
		var ke *KeyspaceNotFoundError
		if errors.As(err, &ke) {
			// 5.0.6 prints the header, then fails.
			return &noSuchKeyspaceError{ke.Keyspace}
		}
		return err
	}
	for i := range toks {
		start := toks[(i+len(toks)-1)%len(toks)].text
		var eps, details []string
		for _, m := range replicas(toks, i, n.rf()) {
			in := members[m].info
			eps = append(eps, in.Address)
			details = append(details, fmt.Sprintf("EndpointDetails(host:%s, datacenter:%s, rack:%s)", in.Address, in.DC, in.Rack))
		}
		fmt.Fprintf(w, "\tTokenRange(start_token:%s, end_token:%s, endpoints:[%s], rpc_endpoints:[%s], endpoint_details:[%s])\n",
			start, toks[i].text, strings.Join(eps, ", "), strings.Join(eps, ", "), strings.Join(details, ", "))
	}
	return nil
}

// noSuchKeyspaceError is describering's refusal of an unknown keyspace.
type noSuchKeyspaceError struct{ keyspace string }

func (e *noSuchKeyspaceError) Error() string { return "No such keyspace: " + e.keyspace }

func cmdDescribeCluster(n *Node, args []string, w io.Writer) error {
	if len(args) > 0 {
		return usagef("Found unexpected parameters: %v", args)
	}
	members, err := n.members()
	if err != nil {
		return err
	}
	var up, addrs, endpoints []string
	dcs := map[string][2]int{}
	var dcNames []string
	for _, m := range members {
		addrs = append(addrs, m.info.Address)
		endpoints = append(endpoints, m.info.Address+":7000")
		c, ok := dcs[m.info.DC]
		if !ok {
			dcNames = append(dcNames, m.info.DC)
		}
		c[0]++
		if !m.up {
			c[1]++
		} else {
			up = append(up, m.info.Address)
		}
		dcs[m.info.DC] = c
	}
	fmt.Fprintln(w, "Cluster Information:")
	fmt.Fprintf(w, "\tName: %s\n", n.info.ClusterName)
	fmt.Fprintln(w, "\tSnitch: org.apache.cassandra.locator.GossipingPropertyFileSnitch")
	fmt.Fprintln(w, "\tDynamicEndPointSnitch: enabled")
	fmt.Fprintln(w, "\tPartitioner: org.apache.cassandra.dht.Murmur3Partitioner")
	fmt.Fprintln(w, "\tSchema versions:")
	fmt.Fprintf(w, "\t\t%s: [%s]\n\n", n.info.SchemaID, strings.Join(up, ", "))
	fmt.Fprintln(w, "Stats for all nodes:")
	fmt.Fprintf(w, "\tLive: %d\n\tJoining: 0\n\tMoving: 0\n\tLeaving: 0\n\tUnreachable: %d\n\n", len(up), len(addrs)-len(up))
	fmt.Fprintln(w, "Data Centers: ")
	for _, dc := range dcNames {
		fmt.Fprintf(w, "\t%s #Nodes: %d #Down: %d\n", dc, dcs[dc][0], dcs[dc][1])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Database versions:")
	fmt.Fprintf(w, "\t%s: [%s]\n\n", n.info.Version, strings.Join(endpoints, ", "))
	fmt.Fprintln(w, "Keyspaces:")
	repl := fmt.Sprintf("NetworkTopologyStrategy {%s=%d}", n.info.DC, n.rf())
	for _, ks := range n.Keyspaces() {
		fmt.Fprintf(w, "\t%s -> Replication class: %s\n", ks, repl)
	}
	for _, ks := range []string{"system_auth", "system_distributed", "system_traces"} {
		fmt.Fprintf(w, "\t%s -> Replication class: SimpleStrategy {replication_factor=1}\n", ks)
	}
	fmt.Fprintln(w, "\tsystem_schema -> Replication class: LocalStrategy {}")
	fmt.Fprintln(w, "\tsystem -> Replication class: LocalStrategy {}")
	return nil
}

func cmdDataPaths(n *Node, args []string, w io.Writer) error {
	if len(args) > 0 {
		return usagef("Found unexpected parameters: %v", args)
	}
	var last string
	for _, t := range n.allTables() {
		if t.Keyspace != last {
			if last != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "Keyspace: %s\n", t.Keyspace)
			last = t.Keyspace
		} else {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "\tTable: %s\n\tPaths:\n\t\t%s\n", t.Name, t.Dir)
	}
	return nil
}

func cmdVersion(n *Node, args []string, w io.Writer) error {
	if len(args) > 0 {
		return usagef("Found unexpected parameters: %v", args)
	}
	fmt.Fprintln(w, "ReleaseVersion: "+n.info.Version)
	return nil
}

// table lays out rows in padded columns, as Cassandra's TableBuilder does
// (the last column is padded too).
type table struct{ rows [][]string }

func (t *table) add(cols ...string) { t.rows = append(t.rows, cols) }

func (t *table) widths() []int {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	return widths
}

func (t *table) print(w io.Writer, delim string) { t.printWidths(w, delim, t.widths()) }

func (t *table) printWidths(w io.Writer, delim string, widths []int) {
	var b strings.Builder
	for _, r := range t.rows {
		for i, wd := range widths {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", max(0, wd-len(c))))
			if i < len(widths)-1 {
				b.WriteString(delim)
			}
		}
		b.WriteByte('\n')
	}
	_, _ = io.WriteString(w, b.String())
}

// FormatSize renders bytes as Cassandra's FileUtils.stringifyFileSize does:
// "0 bytes", "5.06 KiB", "1.2 MiB".
func FormatSize(n int64) string {
	v := float64(n)
	units := []struct {
		size float64
		name string
	}{{1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}}
	for _, u := range units {
		if v >= u.size {
			return trimDecimal(v/u.size) + " " + u.name
		}
	}
	return trimDecimal(v) + " bytes"
}

func trimDecimal(v float64) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// javaInstant renders t as java.time.Instant.toString does at millisecond
// precision.
func javaInstant(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/int(time.Millisecond) == 0 {
		return t.Format("2006-01-02T15:04:05Z")
	}
	return t.Format("2006-01-02T15:04:05.000Z")
}
