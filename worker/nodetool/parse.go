package nodetool

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The parsers read the output of Cassandra 4.1's and 5.0's nodetool (the
// recorded runs of a real 5.0.6 in testdata/cassandra-5.0.6 are their test
// vectors). They accept what
// they do not need loosely (columns are found by position, not width) and
// reject what they do need when it is malformed, so a changed format fails
// loudly instead of yielding zeros.

// maxLine bounds one line of nodetool output.
const maxLine = 1 << 20

func lines(out []byte) *bufio.Scanner {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	return sc
}

// ParseSize reads a size as nodetool prints it ("105.64 KiB", "0 bytes",
// "1.2 GB" from older versions) and returns bytes.
func ParseSize(s string) (int64, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return 0, fmt.Errorf("size %q: want a number and a unit", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q: bad number", s)
	}
	var mult float64
	switch strings.TrimSpace(unit) {
	case "bytes", "B", "byte":
		mult = 1
	case "KiB", "KB":
		mult = 1 << 10
	case "MiB", "MB":
		mult = 1 << 20
	case "GiB", "GB":
		mult = 1 << 30
	case "TiB", "TB":
		mult = 1 << 40
	case "PiB", "PB":
		mult = 1 << 50
	default:
		return 0, fmt.Errorf("size %q: unknown unit", s)
	}
	b := v * mult
	if b > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(b), nil
}

// takeSize reads a size starting at f[i]: "?" (unknown, -1) or a number and
// a unit. It returns the text, the bytes and the next index.
func takeSize(f []string, i int) (string, int64, int, error) {
	if i >= len(f) {
		return "", 0, i, fmt.Errorf("missing size")
	}
	if f[i] == "?" {
		return "?", -1, i + 1, nil
	}
	if i+1 >= len(f) {
		return "", 0, i, fmt.Errorf("size %q has no unit", f[i])
	}
	text := f[i] + " " + f[i+1]
	n, err := ParseSize(text)
	if err != nil {
		return "", 0, i, err
	}
	return text, n, i + 2, nil
}

// Version parses "nodetool version": "ReleaseVersion: 4.1.3".
func ParseVersion(out []byte) (string, error) {
	sc := lines(out)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "ReleaseVersion" {
			v = strings.TrimSpace(v)
			if v == "" || strings.ContainsAny(v, " \t") {
				return "", fmt.Errorf("version: malformed release version %q", v)
			}
			return v, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("version: no ReleaseVersion line")
}

// StatusNode is one node line of "nodetool status".
type StatusNode struct {
	Datacenter string
	// Status is "U" (up) or "D" (down); State is "N" (normal), "L"
	// (leaving), "J" (joining) or "M" (moving).
	Status string
	State  string
	// Address is the node's broadcast address.
	Address string
	// Load is as printed ("105.64 KiB", or "?"); LoadBytes is -1 when unknown.
	Load      string
	LoadBytes int64
	Tokens    int
	// Owns is as printed ("100.0%" or "?").
	Owns   string
	HostID string
	Rack   string
}

// UpNormal reports whether the node is up and in normal state ("UN").
func (n StatusNode) UpNormal() bool { return n.Status == "U" && n.State == "N" }

// ParseStatus parses "nodetool status".
func ParseStatus(out []byte) ([]StatusNode, error) {
	var nodes []StatusNode
	dc := ""
	header := false
	sc := lines(out)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "Datacenter:"):
			dc = strings.TrimSpace(strings.TrimPrefix(line, "Datacenter:"))
			header = false
			continue
		case strings.HasPrefix(line, "==="), strings.HasPrefix(line, "Status="),
			strings.HasPrefix(line, "|/"), strings.HasPrefix(line, "Note:"),
			strings.HasPrefix(line, "WARN"):
			continue
		case strings.HasPrefix(line, "--"):
			header = true
			continue
		}
		if !header {
			continue
		}
		n, err := parseStatusLine(line)
		if err != nil {
			return nil, fmt.Errorf("status: %w in line %q", err, line)
		}
		n.Datacenter = dc
		nodes = append(nodes, n)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !header {
		return nil, fmt.Errorf("status: no node table")
	}
	return nodes, nil
}

func parseStatusLine(line string) (StatusNode, error) {
	f := strings.Fields(line)
	if len(f) < 6 {
		return StatusNode{}, fmt.Errorf("too few columns")
	}
	st := f[0]
	if len(st) != 2 || !strings.ContainsRune("UD?", rune(st[0])) || !strings.ContainsRune("NLJM?", rune(st[1])) {
		return StatusNode{}, fmt.Errorf("bad status %q", st)
	}
	n := StatusNode{Status: st[:1], State: st[1:], Address: f[1]}
	var err error
	var i int
	n.Load, n.LoadBytes, i, err = takeSize(f, 2)
	if err != nil {
		return StatusNode{}, err
	}
	rest := f[i:]
	if len(rest) != 4 {
		return StatusNode{}, fmt.Errorf("want tokens, owns, host id and rack after load")
	}
	if n.Tokens, err = strconv.Atoi(rest[0]); err != nil || n.Tokens < 0 {
		return StatusNode{}, fmt.Errorf("bad token count %q", rest[0])
	}
	n.Owns, n.HostID, n.Rack = rest[1], rest[2], rest[3]
	if n.Owns != "?" && !strings.HasSuffix(n.Owns, "%") {
		return StatusNode{}, fmt.Errorf("bad ownership %q", n.Owns)
	}
	if !isUUID(n.HostID) {
		return StatusNode{}, fmt.Errorf("bad host id %q", n.HostID)
	}
	return n, nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// Info is what "nodetool info" says about the node it runs on.
type Info struct {
	HostID     string
	Datacenter string
	Rack       string
	// Load is the live data size as printed; LoadBytes in bytes (-1 unknown).
	Load                  string
	LoadBytes             int64
	GossipActive          bool
	NativeTransportActive bool
	Generation            int64
	Uptime                time.Duration
	// Tokens are listed only by "nodetool info -T".
	Tokens []string
	// Lines 5.0 prints and 4.1 does not: the live data size uncompressed
	// (-1 when not printed), and the node's bootstrap and decommission
	// state.
	UncompressedLoadBytes int64
	BootstrapState        string
	BootstrapFailed       bool
	Decommissioning       bool
	DecommissionFailed    bool
}

// ParseInfo parses "nodetool info" (with or without -T).
func ParseInfo(out []byte) (Info, error) {
	info := Info{LoadBytes: -1, UncompressedLoadBytes: -1}
	seen := map[string]bool{}
	sc := lines(out)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		seen[k] = true
		var err error
		switch k {
		case "ID":
			if !isUUID(v) {
				return Info{}, fmt.Errorf("info: bad host id %q", v)
			}
			info.HostID = v
		case "Data Center":
			info.Datacenter = v
		case "Rack":
			info.Rack = v
		case "Load":
			info.Load = v
			if v != "?" {
				info.LoadBytes, err = ParseSize(v)
			}
		case "Uncompressed load":
			if v != "?" {
				info.UncompressedLoadBytes, err = ParseSize(v)
			}
		case "Bootstrap state":
			info.BootstrapState = v
		case "Bootstrap failed":
			info.BootstrapFailed, err = strconv.ParseBool(v)
		case "Decommissioning":
			info.Decommissioning, err = strconv.ParseBool(v)
		case "Decommission failed":
			info.DecommissionFailed, err = strconv.ParseBool(v)
		case "Gossip active":
			info.GossipActive, err = strconv.ParseBool(v)
		case "Native Transport active":
			info.NativeTransportActive, err = strconv.ParseBool(v)
		case "Generation No":
			info.Generation, err = strconv.ParseInt(v, 10, 64)
		case "Uptime (seconds)":
			var s int64
			s, err = strconv.ParseInt(v, 10, 64)
			if err == nil && (s < 0 || s > math.MaxInt64/int64(time.Second)) {
				err = fmt.Errorf("out of range")
			}
			info.Uptime = time.Duration(s) * time.Second
		case "Token":
			if !strings.HasPrefix(v, "(") {
				if !isToken(v) {
					return Info{}, fmt.Errorf("info: bad token %q", v)
				}
				info.Tokens = append(info.Tokens, v)
			}
		}
		if err != nil {
			return Info{}, fmt.Errorf("info: %s %q: %w", k, v, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Info{}, err
	}
	if !seen["ID"] {
		return Info{}, fmt.Errorf("info: no ID line")
	}
	return info, nil
}

// isToken accepts Murmur3/Random partitioner tokens (integers) and
// ByteOrdered ones (hex).
func isToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return true
	}
	for _, c := range strings.TrimPrefix(s, "-") {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// RingEntry is one token line of "nodetool ring".
type RingEntry struct {
	Datacenter string
	Address    string
	Rack       string
	// Status is "Up", "Down" or "?"; State "Normal", "Leaving", "Joining",
	// "Moving" or "?".
	Status string
	State  string
	Load   string
	Owns   string
	Token  string
}

// ParseRing parses "nodetool ring [keyspace]".
func ParseRing(out []byte) ([]RingEntry, error) {
	var entries []RingEntry
	dc := ""
	header, seenHeader := false, false
	sc := lines(out)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			// A table ends at a blank line; what follows is another
			// datacenter or a trailing warning.
			header = false
			continue
		case strings.HasPrefix(line, "Datacenter:"):
			dc = strings.TrimSpace(strings.TrimPrefix(line, "Datacenter:"))
			header = false
			continue
		case strings.HasPrefix(line, "==="), strings.HasPrefix(line, "Note:"),
			strings.HasPrefix(line, "Warning:"), strings.HasPrefix(line, "WARN"):
			continue
		case strings.HasPrefix(line, "Address") && strings.HasSuffix(line, "Token"):
			header, seenHeader = true, true
			continue
		}
		if !header {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 1 {
			// The ring's last token, printed above the first node to show
			// the wrap-around.
			if !isToken(f[0]) {
				return nil, fmt.Errorf("ring: bad token %q", f[0])
			}
			continue
		}
		if len(f) < 6 {
			return nil, fmt.Errorf("ring: too few columns in %q", line)
		}
		e := RingEntry{Datacenter: dc, Address: f[0], Rack: f[1], Status: f[2], State: f[3]}
		load, _, i, err := takeSize(f, 4)
		if err != nil {
			return nil, fmt.Errorf("ring: %w in %q", err, line)
		}
		e.Load = load
		if len(f)-i != 2 {
			return nil, fmt.Errorf("ring: want owns and token after load in %q", line)
		}
		e.Owns, e.Token = f[i], f[i+1]
		if !isToken(e.Token) {
			return nil, fmt.Errorf("ring: bad token %q", e.Token)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !seenHeader {
		return nil, fmt.Errorf("ring: no token table")
	}
	return entries, nil
}

// Endpoint is one replica of a token range.
type Endpoint struct {
	Host       string
	Datacenter string
	Rack       string
}

// TokenRange is one range of "nodetool describering KEYSPACE".
type TokenRange struct {
	Start     string
	End       string
	Endpoints []string
	Details   []Endpoint
}

// ParseDescribeRing parses "nodetool describering KEYSPACE".
func ParseDescribeRing(out []byte) (schemaVersion string, ranges []TokenRange, err error) {
	sc := lines(out)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Schema Version:"):
			schemaVersion = strings.TrimSpace(strings.TrimPrefix(line, "Schema Version:"))
		case strings.HasPrefix(line, "TokenRange("):
			r, err := parseTokenRange(line)
			if err != nil {
				return "", nil, fmt.Errorf("describering: %w in %q", err, line)
			}
			ranges = append(ranges, r)
		}
	}
	if err := sc.Err(); err != nil {
		return "", nil, err
	}
	if schemaVersion == "" {
		return "", nil, fmt.Errorf("describering: no Schema Version line")
	}
	if len(ranges) == 0 {
		// What 5.0.6 prints for a keyspace that does not exist, before its
		// error on stderr.
		return "", nil, fmt.Errorf("describering: no token ranges (does the keyspace exist?)")
	}
	return schemaVersion, ranges, nil
}

// parseTokenRange reads "TokenRange(start_token:A, end_token:B,
// endpoints:[h1, h2], rpc_endpoints:[…], endpoint_details:[EndpointDetails(host:h1,
// datacenter:dc, rack:r), …])".
func parseTokenRange(line string) (TokenRange, error) {
	body, ok := strings.CutPrefix(line, "TokenRange(")
	if !ok || !strings.HasSuffix(body, ")") {
		return TokenRange{}, fmt.Errorf("not a TokenRange")
	}
	body = strings.TrimSuffix(body, ")")
	var r TokenRange
	var err error
	if r.Start, body, err = field(body, "start_token:", ", "); err != nil {
		return TokenRange{}, err
	}
	if r.End, body, err = field(body, "end_token:", ", "); err != nil {
		return TokenRange{}, err
	}
	if !isToken(r.Start) || !isToken(r.End) {
		return TokenRange{}, fmt.Errorf("bad token")
	}
	var list string
	if list, body, err = field(body, "endpoints:[", "]"); err != nil {
		return TokenRange{}, err
	}
	r.Endpoints = splitList(list)
	if i := strings.Index(body, "endpoint_details:["); i >= 0 {
		details := strings.TrimSuffix(body[i+len("endpoint_details:["):], "]")
		for _, d := range strings.Split(details, "EndpointDetails(") {
			d = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(d), ",")), ")"))
			if d == "" {
				continue
			}
			var ep Endpoint
			for _, kv := range strings.Split(d, ",") {
				k, v, ok := strings.Cut(strings.TrimSpace(kv), ":")
				if !ok {
					return TokenRange{}, fmt.Errorf("bad endpoint detail %q", d)
				}
				switch k {
				case "host":
					ep.Host = v
				case "datacenter":
					ep.Datacenter = v
				case "rack":
					ep.Rack = v
				}
			}
			r.Details = append(r.Details, ep)
		}
	}
	return r, nil
}

// field cuts prefix from s and returns what precedes end, and the rest.
func field(s, prefix, end string) (string, string, error) {
	rest, ok := strings.CutPrefix(strings.TrimLeft(s, ", "), prefix)
	if !ok {
		return "", "", fmt.Errorf("missing %q", prefix)
	}
	v, after, ok := strings.Cut(rest, end)
	if !ok {
		return "", "", fmt.Errorf("unterminated %q", prefix)
	}
	return strings.TrimSpace(v), after, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ParseSnapshot reads the tag from "nodetool snapshot" output ("Snapshot
// directory: TAG"); "" when the line is missing.
func ParseSnapshot(out []byte) string {
	sc := lines(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Snapshot directory:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Cluster is what "nodetool describecluster" says about the cluster.
type Cluster struct {
	Name        string
	Snitch      string
	Partitioner string
	// SchemaVersions maps each schema version to the nodes that hold it:
	// more than one means the schema is not in agreement.
	SchemaVersions map[string][]string
	// Versions maps each Cassandra release to the nodes that run it
	// ("127.0.0.1:7000"); 4.0 and later print it.
	Versions map[string][]string
	// Keyspaces and their replication, in the order printed.
	Keyspaces []Keyspace
}

// Keyspace is one keyspace's replication, as describecluster prints it
// ("shop -> Replication class: NetworkTopologyStrategy {dc1=3}").
type Keyspace struct {
	Name    string
	Class   string
	Options map[string]string
}

// ParseDescribeCluster parses "nodetool describecluster".
func ParseDescribeCluster(out []byte) (Cluster, error) {
	c := Cluster{SchemaVersions: map[string][]string{}, Versions: map[string][]string{}}
	section := ""
	sc := lines(out)
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		indented := raw != strings.TrimLeft(raw, " \t")
		if !indented {
			section = strings.TrimSuffix(line, ":")
			continue
		}
		switch section {
		case "Cluster Information":
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "Name":
				c.Name = v
			case "Snitch":
				c.Snitch = v
			case "Partitioner":
				c.Partitioner = v
			case "Schema versions":
				section = "Schema versions"
			default:
				// "<uuid>: [hosts]" lines are indented deeper than
				// "Schema versions:" and keep its section.
				if isUUID(k) {
					c.SchemaVersions[k] = bracketed(v)
				}
			}
		case "Schema versions":
			if k, v, ok := strings.Cut(line, ":"); ok && isUUID(strings.TrimSpace(k)) {
				c.SchemaVersions[strings.TrimSpace(k)] = bracketed(v)
			}
		case "Database versions":
			k, v, ok := strings.Cut(line, ":")
			if ok {
				c.Versions[strings.TrimSpace(k)] = bracketed(v)
			}
		case "Keyspaces":
			name, repl, ok := strings.Cut(line, " -> ")
			if !ok {
				return Cluster{}, fmt.Errorf("describecluster: keyspace line %q", line)
			}
			ks := Keyspace{Name: strings.TrimSpace(name)}
			repl = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(repl), "Replication class:"))
			class, opts, _ := strings.Cut(repl, " ")
			ks.Class = class
			opts = strings.TrimSpace(opts)
			if strings.HasPrefix(opts, "{") && strings.HasSuffix(opts, "}") {
				for _, kv := range strings.Split(strings.Trim(opts, "{}"), ",") {
					if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
						if ks.Options == nil {
							ks.Options = map[string]string{}
						}
						ks.Options[k] = v
					}
				}
			}
			c.Keyspaces = append(c.Keyspaces, ks)
		}
	}
	if err := sc.Err(); err != nil {
		return Cluster{}, err
	}
	if c.Name == "" || c.Partitioner == "" {
		return Cluster{}, fmt.Errorf("describecluster: no cluster name or partitioner")
	}
	return c, nil
}

// bracketed splits "[a, b]" into its items.
func bracketed(s string) []string {
	s = strings.TrimSpace(s)
	return splitList(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
}

// TablePaths is one table of "nodetool datapaths" and the directories that
// hold it.
type TablePaths struct {
	Keyspace string
	Table    string
	Paths    []string
}

// ParseDataPaths parses "nodetool datapaths".
func ParseDataPaths(out []byte) ([]TablePaths, error) {
	var tables []TablePaths
	ks := ""
	var cur *TablePaths
	inPaths := false
	sc := lines(out)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			inPaths = false
		case strings.HasPrefix(line, "Keyspace:"):
			ks, cur, inPaths = strings.TrimSpace(strings.TrimPrefix(line, "Keyspace:")), nil, false
		case strings.HasPrefix(line, "Table:"):
			if ks == "" {
				return nil, fmt.Errorf("datapaths: table before any keyspace in %q", line)
			}
			tables = append(tables, TablePaths{Keyspace: ks, Table: strings.TrimSpace(strings.TrimPrefix(line, "Table:"))})
			cur, inPaths = &tables[len(tables)-1], false
		case line == "Paths:":
			inPaths = cur != nil
		case inPaths && strings.HasPrefix(line, "/"):
			cur.Paths = append(cur.Paths, line)
		default:
			return nil, fmt.Errorf("datapaths: unexpected line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		return nil, fmt.Errorf("datapaths: no tables")
	}
	return tables, nil
}

// DataDirs returns the data directories that hold the tables: each table
// path is <data dir>/<keyspace>/<table>-<id>. Sorted, without duplicates.
func DataDirs(tables []TablePaths) []string {
	seen := map[string]bool{}
	var dirs []string
	for _, t := range tables {
		for _, p := range t.Paths {
			d := path.Dir(path.Dir(path.Clean(p)))
			if path.Base(path.Dir(p)) != t.Keyspace || d == "/" || seen[d] {
				continue
			}
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	return dirs
}
