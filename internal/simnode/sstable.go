package simnode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SSTable components written for every generation, in TOC order. TOC.txt is
// written last: a generation without it is incomplete.
var components = []string{"Data.db", "Index.db", "Summary.db", "Statistics.db", "Digest.crc32", "TOC.txt"}

// CompactionThreshold is how many live generations a table may hold before a
// flush compacts them into one, as size-tiered compaction would. Snapshots
// keep the replaced files through their hard links, which is what gives a
// snapshot a non-zero true size.
const CompactionThreshold = 8

// compact merges the live generations of dir into a new one once there are
// CompactionThreshold of them. The new generation records its ancestors, so
// a process that dies before removing them leaves a state recoverTable
// finishes: no row is lost or counted twice.
func compact(dir string) error {
	gens, err := liveGenerations(dir)
	if err != nil || len(gens) < CompactionThreshold {
		return err
	}
	var data []byte
	for _, g := range gens {
		d, err := os.ReadFile(componentPath(dir, g, "Data.db"))
		if err != nil {
			return err
		}
		data = append(data, d...)
	}
	next := gens[len(gens)-1] + 1
	if err := writeSSTableData(dir, next, data, gens); err != nil {
		return err
	}
	for _, g := range gens {
		if err := removeGeneration(dir, g); err != nil {
			return err
		}
	}
	return nil
}

// liveGenerations lists the complete generations of dir, ascending.
func liveGenerations(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var gens []int
	for _, e := range ents {
		if g, c, ok := parseComponent(e.Name()); ok && c == "TOC.txt" {
			gens = append(gens, g)
		}
	}
	sort.Ints(gens)
	return gens, nil
}

// removeGeneration deletes a generation, TOC.txt first so that it stops
// being live before any component goes.
func removeGeneration(dir string, gen int) error {
	for i := len(components) - 1; i >= 0; i-- {
		if err := os.Remove(componentPath(dir, gen, components[i])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// ancestors reads the generations a compacted generation replaced.
func ancestors(dir string, gen int) []int {
	data, err := os.ReadFile(componentPath(dir, gen, "Statistics.db"))
	if err != nil {
		return nil
	}
	var out []int
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(line, "ancestors=")
		if !ok {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if g, err := strconv.Atoi(f); err == nil {
				out = append(out, g)
			}
		}
	}
	return out
}

func (n *Node) recoverTable(t Table) error {
	// A compaction that died before removing what it replaced.
	gens, err := liveGenerations(t.Dir)
	if err != nil {
		return err
	}
	live := map[int]bool{}
	for _, g := range gens {
		live[g] = true
	}
	for _, g := range gens {
		for _, a := range ancestors(t.Dir, g) {
			if live[a] {
				if err := removeGeneration(t.Dir, a); err != nil {
					return err
				}
				live[a] = false
			}
		}
	}
	segs, err := filepath.Glob(filepath.Join(n.root, commitlogDir, t.Keyspace+"."+t.Name+".flushing-*"))
	if err != nil {
		return err
	}
	for _, seg := range segs {
		gen, err := strconv.Atoi(seg[strings.LastIndexByte(seg, '-')+1:])
		if err != nil {
			continue
		}
		if _, err := os.Stat(componentPath(t.Dir, gen, "TOC.txt")); err != nil {
			if err := writeSSTable(t.Dir, gen, seg); err != nil {
				return err
			}
		}
		if err := os.Remove(seg); err != nil {
			return err
		}
	}
	return nil
}

func componentPath(dir string, gen int, comp string) string {
	return filepath.Join(dir, fmt.Sprintf("nb-%d-big-%s", gen, comp))
}

// parseComponent splits "nb-<gen>-big-<component>".
func parseComponent(name string) (gen int, comp string, ok bool) {
	rest, found := strings.CutPrefix(name, "nb-")
	if !found {
		return 0, "", false
	}
	g, comp, found := strings.Cut(rest, "-big-")
	if !found {
		return 0, "", false
	}
	gen, err := strconv.Atoi(g)
	if err != nil || gen <= 0 {
		return 0, "", false
	}
	return gen, comp, true
}

func nextGeneration(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	max := 0
	for _, e := range ents {
		if g, _, ok := parseComponent(e.Name()); ok && g > max {
			max = g
		}
	}
	return max + 1, nil
}

// writeSSTable writes generation gen from the rows in segment seg.
func writeSSTable(dir string, gen int, seg string) error {
	data, err := os.ReadFile(seg)
	if err != nil {
		return err
	}
	// A torn last line (a writer killed mid-append) is not a row.
	if i := bytes.LastIndexByte(data, '\n'); i < len(data)-1 {
		data = data[:i+1]
	}
	return writeSSTableData(dir, gen, data, nil)
}

// writeSSTableData writes generation gen holding data, newline-separated rows.
func writeSSTableData(dir string, gen int, data []byte, ancestors []int) error {
	var index bytes.Buffer
	rows := 0
	for off := 0; off < len(data); {
		_ = binary.Write(&index, binary.BigEndian, uint64(off))
		rows++
		off += bytes.IndexByte(data[off:], '\n') + 1
	}
	var summary bytes.Buffer
	_ = binary.Write(&summary, binary.BigEndian, uint32(rows))
	_ = binary.Write(&summary, binary.BigEndian, uint64(len(data)))
	stats := fmt.Sprintf("format=nb\nrows=%d\nbytes=%d\nflushed_at=%d\n", rows, len(data), time.Now().UnixNano())
	if len(ancestors) > 0 {
		as := make([]string, len(ancestors))
		for i, a := range ancestors {
			as[i] = strconv.Itoa(a)
		}
		stats += "ancestors=" + strings.Join(as, ",") + "\n"
	}
	digest := strconv.FormatUint(uint64(crc32.ChecksumIEEE(data)), 10)
	contents := map[string][]byte{
		"Data.db":       data,
		"Index.db":      index.Bytes(),
		"Summary.db":    summary.Bytes(),
		"Statistics.db": []byte(stats),
		"Digest.crc32":  []byte(digest),
		"TOC.txt":       []byte(strings.Join(components, "\n") + "\n"),
	}
	for _, c := range components {
		if err := writeFileAtomic(componentPath(dir, gen, c), contents[c]); err != nil {
			return err
		}
	}
	return nil
}

// liveFiles lists the complete live SSTable files of a table directory.
func liveFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	complete := map[int]bool{}
	for _, e := range ents {
		if g, c, ok := parseComponent(e.Name()); ok && c == "TOC.txt" {
			complete[g] = true
		}
	}
	var out []string
	for _, e := range ents {
		if g, _, ok := parseComponent(e.Name()); ok && complete[g] && e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
