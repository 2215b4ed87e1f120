package simnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

const peersFile = "peers.json"

// Join makes the nodes at roots one cluster: each node's status, ring and
// describering then show all of them, with token ownership computed from
// every node's tokens. Calling it again replaces the membership.
func Join(roots ...string) error {
	var abs []string
	for _, r := range roots {
		a, err := filepath.Abs(r)
		if err != nil {
			return err
		}
		if _, err := Open(a); err != nil {
			return err
		}
		abs = append(abs, a)
	}
	data, err := json.Marshal(abs)
	if err != nil {
		return err
	}
	for _, r := range abs {
		if err := writeFileAtomic(filepath.Join(r, peersFile), data); err != nil {
			return err
		}
	}
	return nil
}

// member is one node of the cluster as this node sees it.
type member struct {
	info Info
	up   bool
	load int64 // -1 when unknown (the node is down)
}

// members returns this node and its peers, sorted by datacenter and address.
func (n *Node) members() ([]member, error) {
	roots := []string{n.root}
	data, err := os.ReadFile(filepath.Join(n.root, peersFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		var peers []string
		if err := json.Unmarshal(data, &peers); err != nil {
			return nil, fmt.Errorf("simnode: %s: %w", peersFile, err)
		}
		roots = append(roots, peers...)
	}
	seen := map[string]bool{}
	var out []member
	for _, r := range roots {
		p, err := Open(r)
		if err != nil {
			continue // a peer removed from disk has left the cluster
		}
		if seen[p.info.HostID] {
			continue
		}
		seen[p.info.HostID] = true
		m := member{info: p.info, up: true, load: -1}
		if f, err := readFaults(p.root); err == nil && f.Down {
			m.up = false
		}
		if m.up {
			if size, err := p.LiveDataSize(); err == nil {
				m.load = size
			}
		}
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].info, out[j].info
		if a.DC != b.DC {
			return a.DC < b.DC
		}
		if a.Address != b.Address {
			return a.Address < b.Address
		}
		return a.Name < b.Name
	})
	return out, nil
}

// ringToken is one token of the cluster's ring and the member that owns it.
type ringToken struct {
	value  *big.Int
	text   string
	member int
}

func ring(members []member) []ringToken {
	var toks []ringToken
	for i, m := range members {
		for _, t := range m.info.Tokens {
			v, ok := new(big.Int).SetString(t, 10)
			if !ok {
				continue
			}
			toks = append(toks, ringToken{value: v, text: t, member: i})
		}
	}
	sort.Slice(toks, func(i, j int) bool { return toks[i].value.Cmp(toks[j].value) < 0 })
	return toks
}

// replicas returns, for the range ending at toks[i], the members holding it:
// the owner and the next distinct members clockwise (SimpleStrategy).
func replicas(toks []ringToken, i, rf int) []int {
	var out []int
	seen := map[int]bool{}
	for k := 0; k < len(toks) && len(out) < rf; k++ {
		m := toks[(i+k)%len(toks)].member
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// ownership returns each member's effective ownership, a fraction of the
// ring counted once per replica it holds.
func ownership(members []member, rf int) []float64 {
	toks := ring(members)
	own := make([]float64, len(members))
	if len(toks) == 0 {
		return own
	}
	span := new(big.Float).SetInt(new(big.Int).Lsh(big.NewInt(1), 64))
	for i := range toks {
		prev := toks[(i+len(toks)-1)%len(toks)].value
		width := new(big.Int).Sub(toks[i].value, prev)
		if width.Sign() <= 0 {
			width.Add(width, new(big.Int).Lsh(big.NewInt(1), 64))
		}
		frac, _ := new(big.Float).Quo(new(big.Float).SetInt(width), span).Float64()
		for _, m := range replicas(toks, i, rf) {
			own[m] += frac
		}
	}
	return own
}

func (n *Node) rf() int {
	if n.info.ReplicationFactor > 0 {
		return n.info.ReplicationFactor
	}
	return 3
}

// formatPercent renders a fraction as Java's DecimalFormat("##0.0%") or,
// with two decimals, "##0.00%".
func formatPercent(f float64, decimals int) string {
	return strconv.FormatFloat(f*100, 'f', decimals, 64) + "%"
}
