package simnode

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	faultsFile = "faults.json"
	callsFile  = "calls.json"
	eventsFile = "events.log"

	opSnapshot = "snapshot"
	opClear    = "clearsnapshot"
)

// Duration is a time.Duration that reads and writes JSON as "200ms".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Faults make a node's snapshot and clearsnapshot misbehave, for tests. They
// live in root/faults.json so that every process working on the node, the
// nodetool CLI included, sees them.
type Faults struct {
	// SnapshotError fails Snapshot with this message: the first
	// SnapshotFailTimes calls after SetFaults, or every call when that is 0.
	SnapshotError     string   `json:"snapshot_error,omitempty"`
	SnapshotFailTimes int      `json:"snapshot_fail_times,omitempty"`
	SnapshotDelay     Duration `json:"snapshot_delay,omitempty"`
	// ClearError, ClearFailTimes and ClearDelay do the same for ClearSnapshot.
	ClearError     string   `json:"clearsnapshot_error,omitempty"`
	ClearFailTimes int      `json:"clearsnapshot_fail_times,omitempty"`
	ClearDelay     Duration `json:"clearsnapshot_delay,omitempty"`
	// Down makes the node unreachable to nodetool: the CLI fails to connect,
	// Fleet calls fail with a transient error, and its peers' status shows
	// it "DN". The node's Go API still works.
	Down bool `json:"down,omitempty"`
}

// FaultError is an injected failure.
type FaultError struct {
	Op  string
	Msg string
}

func (e *FaultError) Error() string { return e.Msg }

// SetFaults replaces the faults of the node at root (the zero Faults removes
// them) and restarts the call counts the fail-times fields are measured by.
func SetFaults(root string, f Faults) error {
	n, err := Open(root)
	if err != nil {
		return err
	}
	unlock, err := n.lock(nil)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(filepath.Join(n.root, callsFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	path := filepath.Join(n.root, faultsFile)
	if f == (Faults{}) {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}

func readFaults(root string) (Faults, error) {
	var f Faults
	data, err := os.ReadFile(filepath.Join(root, faultsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("simnode: %s: %w", filepath.Join(root, faultsFile), err)
	}
	return f, nil
}

// Calls counts the snapshot and clearsnapshot calls a node received since it
// was created or SetFaults was last called, failed ones included.
type Calls struct {
	Snapshot      int `json:"snapshot"`
	ClearSnapshot int `json:"clearsnapshot"`
}

// CallCounts returns the call counts of the node at root.
func CallCounts(root string) (Calls, error) {
	var c Calls
	data, err := os.ReadFile(filepath.Join(root, callsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	err = json.Unmarshal(data, &c)
	return c, err
}

// countCall counts one call of op and returns the count; the caller holds the lock.
func (n *Node) countCall(op string) (int, error) {
	c, err := CallCounts(n.root)
	if err != nil {
		return 0, err
	}
	v := 0
	switch op {
	case opSnapshot:
		c.Snapshot++
		v = c.Snapshot
	case opClear:
		c.ClearSnapshot++
		v = c.ClearSnapshot
	}
	data, err := json.Marshal(c)
	if err != nil {
		return 0, err
	}
	return v, writeFileAtomic(filepath.Join(n.root, callsFile), data)
}

// Event is one successful snapshot or clear, timed by the node itself when it
// finished, while it still held the node's lock.
type Event struct {
	// Kind is "snapshot" or "clear".
	Kind string
	Tag  string
	Time time.Time
}

// appendEvent records an event; the caller holds the lock.
func (n *Node) appendEvent(kind, tag string) error {
	f, err := os.OpenFile(filepath.Join(n.root, eventsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s %s %d\n", kind, tag, time.Now().UnixNano())
	if _, err := f.WriteString(line); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Events reads the events of the node at root, oldest first.
func Events(root string) ([]Event, error) {
	data, err := os.ReadFile(filepath.Join(root, eventsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return nil, fmt.Errorf("simnode: events.log: malformed line %q", sc.Text())
		}
		ns, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("simnode: events.log: malformed line %q", sc.Text())
		}
		out = append(out, Event{Kind: f[0], Tag: f[1], Time: time.Unix(0, ns)})
	}
	return out, sc.Err()
}
