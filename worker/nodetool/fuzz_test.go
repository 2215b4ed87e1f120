package nodetool_test

import (
	"strings"
	"testing"

	"github.com/quiesce/quiesce/worker/nodetool"
)

// The parsers read what a remote host printed: whatever it prints, they
// return an error or well-formed values, never panic.

func FuzzParseStatus(f *testing.F) {
	f.Add(sample(f, "status.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		nodes, err := nodetool.ParseStatus(b)
		if err != nil {
			return
		}
		for _, n := range nodes {
			if len(n.HostID) != 36 || n.Tokens < 0 || (n.LoadBytes < 0 && n.Load != "?") {
				t.Fatalf("malformed node accepted: %+v", n)
			}
		}
	})
}

func FuzzParseInfo(f *testing.F) {
	f.Add(sample(f, "info.txt"))
	f.Add(sample(f, "info-tokens.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := nodetool.ParseInfo(b)
		if err != nil {
			return
		}
		if len(info.HostID) != 36 || info.Uptime < 0 {
			t.Fatalf("malformed info accepted: %+v", info)
		}
		for _, tok := range info.Tokens {
			if tok == "" || strings.ContainsAny(tok, " \t") {
				t.Fatalf("malformed token accepted: %q", tok)
			}
		}
	})
}

func FuzzParseRing(f *testing.F) {
	f.Add(sample(f, "ring.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := nodetool.ParseRing(b)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.Token == "" || e.Address == "" {
				t.Fatalf("malformed ring entry accepted: %+v", e)
			}
		}
	})
}

func FuzzParseDescribeRing(f *testing.F) {
	f.Add(sample(f, "describering.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, ranges, err := nodetool.ParseDescribeRing(b)
		if err != nil {
			return
		}
		for _, r := range ranges {
			if r.Start == "" || r.End == "" {
				t.Fatalf("range without tokens accepted: %+v", r)
			}
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	f.Add(sample(f, "version.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := nodetool.ParseVersion(b)
		if err == nil && (v == "" || strings.ContainsAny(v, " \t\n")) {
			t.Fatalf("malformed version accepted: %q", v)
		}
	})
}

func FuzzParseListSnapshots(f *testing.F) {
	f.Add(sample(f, "listsnapshots.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := nodetool.ParseListSnapshots(b)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.Tag == "" {
				t.Fatalf("entry without tag accepted: %+v", e)
			}
		}
	})
}

func FuzzParseSize(f *testing.F) {
	f.Add("105.64 KiB")
	f.Add("0 bytes")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := nodetool.ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("%q: negative size %d", s, n)
		}
	})
}

func FuzzParseDescribeCluster(f *testing.F) {
	f.Add(readRecorded(f, "describecluster.txt").out.Stdout)
	f.Add(readRecorded(f, "3n-describecluster.txt").out.Stdout)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := nodetool.ParseDescribeCluster(b)
		if err != nil {
			return
		}
		if c.Name == "" || c.Partitioner == "" {
			t.Fatalf("cluster without name or partitioner accepted: %+v", c)
		}
		for _, ks := range c.Keyspaces {
			if ks.Name == "" {
				t.Fatalf("keyspace without name accepted: %+v", ks)
			}
		}
	})
}

func FuzzParseDataPaths(f *testing.F) {
	f.Add(readRecorded(f, "datapaths.txt").out.Stdout)
	f.Fuzz(func(t *testing.T, b []byte) {
		tables, err := nodetool.ParseDataPaths(b)
		if err != nil {
			return
		}
		for _, d := range nodetool.DataDirs(tables) {
			if !strings.HasPrefix(d, "/") || d == "/" {
				t.Fatalf("data directory %q accepted", d)
			}
		}
	})
}

func FuzzParseSnapshotFiles(f *testing.F) {
	f.Add([]byte("\x00C /d/ks/t-1/snapshots/T/manifest.json\x00{\"files\":[\"a\"]}\x00F 3 /d/ks/t-1/snapshots/T/a\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tables, err := nodetool.ParseSnapshotFiles(b, "T")
		if err != nil {
			return
		}
		for _, tb := range tables {
			if tb.Files < 0 || tb.Bytes < 0 || tb.Keyspace == "" {
				t.Fatalf("malformed table accepted: %+v", tb)
			}
		}
	})
}
