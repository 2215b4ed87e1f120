// Package ec2sim is an in-process EC2 endpoint for fleet simulations: the
// part of the EC2 Query API quiesce calls (CreateSnapshot, CreateSnapshots,
// DescribeSnapshots, DeleteSnapshot, DescribeInstances), served over HTTP so
// that the AWS SDK, its retries and quiesce's pacer run unchanged against
// it, and holding EC2's limits where quiesce meets them:
//
//   - a token bucket per account, region and operation (AWS's defaults, or
//     Config.Limit), refilled continuously; a call finding it empty is
//     answered RequestLimitExceeded (HTTP 503) and spends nothing;
//   - at most Config.MaxPending pending snapshots per volume
//     (ConcurrentSnapshotLimitExceeded);
//   - Config.VolumeInterval between snapshot calls on one volume
//     (SnapshotCreationPerVolumeRateExceeded).
//
// Time is a Clock running many times faster than real time, shared with the
// pacers of the simulation, so an hour of EC2 budget passes in seconds.
// Every call is recorded with its simulated time, for figures.
//
// It is a test kit: resources are kept in memory, signatures are not
// checked (the account is read from the access key, the region from the
// signature's scope), and only what quiesce sends is understood.
package ec2sim

import (
	"cmp"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quiesce/quiesce/pace"
	"github.com/quiesce/quiesce/worker/ebs"
)

// DefaultAccount owns calls signed with an access key Config.Accounts does
// not name.
const DefaultAccount = "123456789012"

// Config shapes a simulator. Zero values take the defaults in comments.
type Config struct {
	// Limit is each operation's bucket per account and region (default
	// AWS's: ebs.DefaultLimit).
	Limit func(op string) pace.Limit
	// MaxPending is the most pending snapshots of one volume (default 5).
	MaxPending int
	// VolumeInterval is the least time between two snapshot calls on one
	// volume (default 15s).
	VolumeInterval time.Duration
	// CompleteAfter is how long a snapshot stays pending (default 5m).
	CompleteAfter time.Duration
	// Accounts maps access key IDs to account IDs.
	Accounts map[string]string
}

func (c Config) withDefaults() Config {
	if c.Limit == nil {
		c.Limit = ebs.DefaultLimit
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 5
	}
	if c.VolumeInterval <= 0 {
		c.VolumeInterval = 15 * time.Second
	}
	if c.CompleteAfter <= 0 {
		c.CompleteAfter = 5 * time.Minute
	}
	return c
}

// Sim is a running simulated EC2.
type Sim struct {
	// URL is the endpoint, http://127.0.0.1:<port>.
	URL string

	cfg   Config
	clock *Clock
	srv   *httptest.Server

	mu        sync.Mutex
	seq       int
	buckets   map[Key]*bucket
	snaps     map[string]*snapshot
	tags      map[scope]map[tagKV]map[string]struct{}
	volumes   map[string]*volume
	instances map[string]*instance
	calls     map[Key][]Call
	refusals  map[string]int
}

// Key names a bucket: an account's operation in a region.
type Key struct{ Account, Region, Op string }

// Call is one request as the simulator answered it.
type Call struct {
	// At is the simulated time it arrived.
	At time.Time
	// Throttled: answered RequestLimitExceeded.
	Throttled bool
}

type scope struct{ account, region string }

type tagKV struct{ k, v string }

type bucket struct {
	tokens float64
	at     time.Time
}

type snapshot struct {
	id, volume, desc string
	where            scope
	start            time.Time
	tags             map[string]string
}

type volume struct {
	id, instance, device, az string
	where                    scope
	starts                   []time.Time // of its snapshots, oldest first
	last                     time.Time   // last snapshot call
}

type instance struct {
	id, az  string
	where   scope
	root    string   // root volume ID, at /dev/xvda
	volumes []string // data volumes, at /dev/sdf, /dev/sdg, ...
}

// Start serves a simulated EC2 on a loopback port until the test ends.
func Start(t interface{ Cleanup(func()) }, clock *Clock, cfg Config) *Sim {
	s := &Sim{cfg: cfg.withDefaults(), clock: clock,
		buckets: map[Key]*bucket{}, snaps: map[string]*snapshot{}, tags: map[scope]map[tagKV]map[string]struct{}{},
		volumes: map[string]*volume{}, instances: map[string]*instance{}, calls: map[Key][]Call{}, refusals: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// AddInstance adds a running instance with a root volume and dataVolumes
// data volumes, and returns the data volumes' IDs.
func (s *Sim) AddInstance(account, region, instanceID, az string, dataVolumes int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	where := scope{account, region}
	in := &instance{id: instanceID, az: az, where: where, root: "vol-" + instanceID + "-root"}
	s.volumes[in.root] = &volume{id: in.root, instance: instanceID, device: "/dev/xvda", az: az, where: where}
	for i := range dataVolumes {
		id := fmt.Sprintf("vol-%s-%d", instanceID, i)
		dev := fmt.Sprintf("/dev/sd%c", 'f'+i)
		s.volumes[id] = &volume{id: id, instance: instanceID, device: dev, az: az, where: where}
		in.volumes = append(in.volumes, id)
	}
	s.instances[instanceID] = in
	return slices.Clone(in.volumes)
}

// PutSnapshot adds a snapshot of a volume carrying tags, already completed
// or just started, as if taken earlier, and returns its ID.
func (s *Sim) PutSnapshot(account, region, volumeID string, tags map[string]string, completed bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := s.clock.Now()
	if completed {
		start = start.Add(-s.cfg.CompleteAfter)
	}
	return s.addSnapshot(scope{account, region}, volumeID, "", tags, start).id
}

// Count returns how many snapshots of an account and region carry every
// tag of filter.
func (s *Sim) Count(account, region string, filter map[string]string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.match(scope{account, region}, filter))
}

// Span returns when the first and the last snapshot carrying every tag of
// filter started, and how many there are.
func (s *Sim) Span(account, region string, filter map[string]string) (first, last time.Time, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.match(scope{account, region}, filter) {
		start := s.snaps[id].start
		if n == 0 || start.Before(first) {
			first = start
		}
		if start.After(last) {
			last = start
		}
		n++
	}
	return first, last, n
}

// Calls returns every call of one operation in an account and region, in
// the order they arrived.
func (s *Sim) Calls(account, region, op string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls[Key{account, region, op}])
}

// Refusals counts the calls refused for a per-volume limit, by EC2 error
// code.
func (s *Sim) Refusals() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.refusals {
		out[k] = v
	}
	return out
}

// take spends a token of k's bucket at now, if it has one.
func (s *Sim) take(k Key, now time.Time) bool {
	lim := s.cfg.Limit(k.Op)
	b, ok := s.buckets[k]
	if !ok {
		b = &bucket{tokens: float64(lim.Burst), at: now}
		s.buckets[k] = b
	}
	if now.After(b.at) {
		b.tokens = min(float64(lim.Burst), b.tokens+now.Sub(b.at).Seconds()*lim.Rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (s *Sim) addSnapshot(where scope, volumeID, desc string, tags map[string]string, start time.Time) *snapshot {
	s.seq++
	sn := &snapshot{id: fmt.Sprintf("snap-%017x", s.seq), volume: volumeID, desc: desc, where: where, start: start, tags: tags}
	s.snaps[sn.id] = sn
	idx := s.tags[where]
	if idx == nil {
		idx = map[tagKV]map[string]struct{}{}
		s.tags[where] = idx
	}
	for k, v := range tags {
		set := idx[tagKV{k, v}]
		if set == nil {
			set = map[string]struct{}{}
			idx[tagKV{k, v}] = set
		}
		set[sn.id] = struct{}{}
	}
	if v, ok := s.volumes[volumeID]; ok {
		v.starts = append(v.starts, start)
	}
	return sn
}

func (s *Sim) deleteSnapshot(sn *snapshot) {
	delete(s.snaps, sn.id)
	idx := s.tags[sn.where]
	for k, v := range sn.tags {
		delete(idx[tagKV{k, v}], sn.id)
	}
}

// match returns the IDs of where's snapshots carrying every tag of filter,
// sorted.
func (s *Sim) match(where scope, filter map[string]string) []string {
	idx := s.tags[where]
	var smallest map[string]struct{}
	first := true
	for k, v := range filter {
		set := idx[tagKV{k, v}]
		if first || len(set) < len(smallest) {
			smallest, first = set, false
		}
	}
	var out []string
	if first {
		for id, sn := range s.snaps {
			if sn.where == where {
				out = append(out, id)
			}
		}
	} else {
		for id := range smallest {
			if matches(s.snaps[id].tags, filter) {
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return out
}

func matches(tags, filter map[string]string) bool {
	for k, v := range filter {
		if tags[k] != v {
			return false
		}
	}
	return true
}

// pending is how many snapshots of v are pending at now.
func (s *Sim) pending(v *volume, now time.Time) int {
	done := now.Add(-s.cfg.CompleteAfter)
	k := 0
	for k < len(v.starts) && !v.starts[k].After(done) {
		k++
	}
	v.starts = v.starts[k:]
	return len(v.starts)
}

// refuseVolume says why a snapshot of v cannot start at now, or "".
func (s *Sim) refuseVolume(v *volume, now time.Time) string {
	switch {
	case s.pending(v, now) >= s.cfg.MaxPending:
		return ebs.CodeConcurrentSnapshotLimit
	case !v.last.IsZero() && now.Sub(v.last) < s.cfg.VolumeInterval:
		return ebs.CodeSnapshotPerVolumeRate
	}
	return ""
}

func (s *Sim) state(sn *snapshot, now time.Time) (state, progress string) {
	if !now.Before(sn.start.Add(s.cfg.CompleteAfter)) {
		return "completed", "100%"
	}
	return "pending", fmt.Sprintf("%d%%", int(100*now.Sub(sn.start)/s.cfg.CompleteAfter))
}

// sortedKeys returns a map's keys in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// signedScope reads the access key and region of a SigV4 Authorization
// header: "AWS4-HMAC-SHA256 Credential=AKID/20261124/us-east-1/ec2/aws4_request, ...".
func signedScope(r *http.Request) (accessKey, region string) {
	_, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if !ok {
		return "", ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(cred, "/")
	if len(parts) < 3 {
		return "", ""
	}
	return parts[0], parts[2]
}

func (s *Sim) account(accessKey string) string {
	return cmp.Or(s.cfg.Accounts[accessKey], DefaultAccount)
}
