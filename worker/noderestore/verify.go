package noderestore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/errclass"
)

// Verify is what a restored cluster must look like.
type Verify struct {
	// RestoreID names the progress record the verification is written to.
	RestoreID string
	// Nodes are every node of the restored cluster.
	Nodes []ExpectNode
	// ClusterName, when set, is the name the cluster must have.
	ClusterName string
	// SchemaVersion, when set, is the one schema version every node must
	// hold; empty: any, but only one.
	SchemaVersion string
	// CQL queries to run at consistency ALL, each with its expected count.
	CQL []CQLCheck
}

// ExpectNode is one node of a restored cluster.
type ExpectNode struct {
	Address string
	// HostID is the node's host ID; empty for any (a new identity).
	HostID string
	// Tokens are the node's tokens.
	Tokens []string
}

// CQLCheck is a query whose result is a count ("SELECT count(*) ...") or
// whose rows are counted.
type CQLCheck struct {
	Query string
	// Expect is the count the query must return.
	Expect int64
}

// Verification is what Verify found.
type Verification struct {
	// Problems are what differs from the expectation; none when verified.
	Problems []string
	// Took is how long it took until the cluster was as expected (or the
	// verification gave up).
	Took time.Duration
}

// VerifyNode checks the restored cluster as one of its nodes sees it, again
// and again until it is as expected or ctx ends: every expected node UN and
// no other in nodetool status; this node's host ID and tokens; one schema
// version (the expected one, when set); system.peers_v2 naming exactly the
// other restored nodes; each CQL check's count at consistency ALL. The
// error lists what differed at the last look.
func (r *Restorer) VerifyNode(ctx context.Context, node messages.Node, address string, v Verify) (Report, error) {
	rep := Report{Step: StepVerified}
	if address == "" {
		address = node.Address
	}
	var problems []string
	for {
		problems = r.verifyOnce(ctx, node, address, v, &rep)
		if len(problems) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return rep, fmt.Errorf("node %s: the restored cluster is not as expected (%w): %s", node.Name, context.Cause(ctx), strings.Join(problems, "; "))
		case <-time.After(r.s.Poll):
		}
	}
	if v.RestoreID != "" && node.Dirs != nil && len(node.Dirs.Data) > 0 {
		spec := Spec{RestoreID: v.RestoreID, Dirs: *node.Dirs}
		if err := r.record(ctx, node, spec, string(StepVerified)); err != nil {
			rep.Notes = append(rep.Notes, err.Error())
		}
	}
	return rep, nil
}

func (r *Restorer) verifyOnce(ctx context.Context, node messages.Node, address string, v Verify, rep *Report) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	want := map[string]ExpectNode{}
	for _, n := range v.Nodes {
		want[n.Address] = n
	}
	status, err := r.tool.Status(ctx, node, "")
	if err != nil {
		add("nodetool status: %v", err)
		return problems
	}
	seen := map[string]bool{}
	for _, s := range status {
		seen[s.Address] = true
		if _, ok := want[s.Address]; !ok {
			add("%s is in the ring (%s%s), not a restored node", s.Address, s.Status, s.State)
			continue
		}
		if s.Status+s.State != "UN" {
			add("%s is %s%s, not UN", s.Address, s.Status, s.State)
		}
		if w := want[s.Address]; w.HostID != "" && s.HostID != w.HostID {
			add("%s has host ID %s, want %s", s.Address, s.HostID, w.HostID)
		}
	}
	for a := range want {
		if !seen[a] {
			add("%s is not in the ring", a)
		}
	}
	info, err := r.tool.Info(ctx, node, true)
	if err != nil {
		add("nodetool info -T: %v", err)
	} else {
		rep.HostID, rep.Tokens = info.HostID, info.Tokens
		if w, ok := want[address]; ok {
			if w.HostID != "" && info.HostID != w.HostID {
				add("%s: host ID %s, want %s", address, info.HostID, w.HostID)
			}
			if len(w.Tokens) > 0 && !sameSet(info.Tokens, w.Tokens) {
				add("%s: tokens %v, want %v", address, info.Tokens, w.Tokens)
			}
		}
	}
	cl, err := r.tool.DescribeCluster(ctx, node)
	if err != nil {
		add("nodetool describecluster: %v", err)
	} else {
		if v.ClusterName != "" && cl.Name != v.ClusterName {
			add("cluster name %q, want %q", cl.Name, v.ClusterName)
		}
		var versions []string
		for sv, hosts := range cl.SchemaVersions {
			if sv != "UNREACHABLE" {
				versions = append(versions, sv)
			} else {
				add("schema version unreachable on %v", hosts)
			}
		}
		sort.Strings(versions)
		switch {
		case len(versions) != 1:
			add("schema versions %v: not in agreement", versions)
		case v.SchemaVersion != "" && versions[0] != v.SchemaVersion:
			add("schema version %s, want %s (the backup's)", versions[0], v.SchemaVersion)
		}
	}
	if len(problems) > 0 {
		return problems
	}
	problems = append(problems, r.verifyCQL(ctx, address, v)...)
	return problems
}

// verifyCQL checks system.peers_v2 on the node and runs the checks,
// through a session that talks to this node only.
func (r *Restorer) verifyCQL(ctx context.Context, address string, v Verify) []string {
	cfg := gocql.NewCluster(address)
	cfg.Port = r.s.CQLPort
	cfg.Timeout = 30 * time.Second
	cfg.ConnectTimeout = 30 * time.Second
	cfg.HostFilter = gocql.WhiteListHostFilter(address)
	cfg.NumConns = 1
	if r.s.CQLUsername != "" {
		cfg.Authenticator = gocql.PasswordAuthenticator{Username: r.s.CQLUsername, Password: r.s.CQLPassword}
	}
	s, err := cfg.CreateSession()
	if err != nil {
		return []string{fmt.Sprintf("CQL session on %s: %v", address, err)}
	}
	defer s.Close()
	var problems []string
	var peers []string
	it := s.Query(`SELECT peer FROM system.peers_v2`).Consistency(gocql.One).IterContext(ctx)
	var peer net.IP
	for it.Scan(&peer) {
		peers = append(peers, peer.String())
	}
	if err := it.Close(); err != nil {
		return []string{fmt.Sprintf("system.peers_v2 on %s: %v", address, err)}
	}
	var others []string
	for _, n := range v.Nodes {
		if n.Address != address {
			others = append(others, n.Address)
		}
	}
	if !sameSet(peers, others) {
		problems = append(problems, fmt.Sprintf("system.peers_v2 on %s lists %v, want %v", address, sorted(peers), sorted(others)))
	}
	for _, c := range v.CQL {
		n, err := count(ctx, s, c.Query)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", c.Query, err))
		case n != c.Expect:
			problems = append(problems, fmt.Sprintf("%s: %d, want %d", c.Query, n, c.Expect))
		}
	}
	return problems
}

// count runs a query at consistency ALL: the value of a one-row, one-column
// count result, or the number of rows.
func count(ctx context.Context, s *gocql.Session, q string) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	it := s.Query(q).Consistency(gocql.All).IterContext(qctx)
	cols := it.Columns()
	if len(cols) == 1 && strings.HasPrefix(strings.ToLower(cols[0].Name), "count") {
		var n int64
		it.Scan(&n)
		return n, it.Close()
	}
	var rows int64
	for it.Scanner().Next() {
		rows++
	}
	return rows, it.Close()
}

func sameSet(a, b []string) bool {
	return slices.Equal(sorted(a), sorted(b))
}

func sorted(a []string) []string {
	out := slices.Clone(a)
	sort.Strings(out)
	return out
}

// waitCQL waits until the node's native transport accepts connections,
// failing early when Cassandra stopped running.
func (r *Restorer) waitCQL(ctx context.Context, node messages.Node, address string) error {
	hp := net.JoinHostPort(address, strconv.Itoa(r.s.CQLPort))
	var d net.Dialer
	for i := 0; ; i++ {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := d.DialContext(dctx, "tcp", hp)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if i%10 == 9 {
			if running, rerr := r.svc.Running(ctx, node); rerr == nil && !running {
				return errclass.Permanent(fmt.Errorf("node %s: Cassandra exited before serving CQL on %s (see its system.log)", node.Name, hp))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: CQL on %s not answering: %w", node.Name, hp, errors.Join(context.Cause(ctx), err))
		case <-time.After(r.s.Poll / 2):
		}
	}
}
