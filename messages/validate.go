package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// Patterns every value must match before it is used in a subject, a KV key, a
// snapshot tag or a remote command. They admit no shell metacharacter, no
// whitespace and no NATS wildcard or token separator (except where noted).
var (
	clusterPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,199}$`)
	policyPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	// Cassandra snapshot tags become directory names under snapshots/.
	tagPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	// Cassandra keyspace and table names: letters, digits and underscores.
	keyspacePattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,48}$`)
	// Node names and volume IDs become subject tokens and task ID parts.
	targetPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	jobIDPattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}-[0-9a-f]{12}$`)
	// Directories on a node that reach its shell: absolute, and nothing a
	// shell or an option parser could read as more than a path.
	dirPattern = regexp.MustCompile(`^/[A-Za-z0-9_./@+,:=-]*$`)
)

// maxDir bounds a directory's path.
const maxDir = 1024

// MaxJobRequestBytes bounds a JobRequest's encoded size.
const MaxJobRequestBytes = 64 << 10

// ErrMalformed is wrapped by DecodeJobRequest's error when the request is not
// JSON of the request's shape at all (as opposed to a well-formed request
// with a wrong value); match it with errors.Is.
var ErrMalformed = errors.New("malformed job request")

// malformed keeps err's message and makes it match ErrMalformed.
type malformed struct{ err error }

func (e *malformed) Error() string   { return e.err.Error() }
func (e *malformed) Unwrap() []error { return []error{ErrMalformed, e.err} }

// FieldError names the field of a message that is wrong and why.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

// ValidateCluster checks a cluster name.
func ValidateCluster(s string) error {
	if !clusterPattern.MatchString(s) {
		return &FieldError{"cluster", s, "must match " + clusterPattern.String()}
	}
	return nil
}

// ValidateTag checks a Cassandra snapshot tag.
func ValidateTag(s string) error {
	if !tagPattern.MatchString(s) {
		return &FieldError{"tag", s, "must match " + tagPattern.String() + " (no spaces or shell metacharacters)"}
	}
	return nil
}

// ValidateKeyspace checks a keyspace or table name.
func ValidateKeyspace(s string) error {
	if !keyspacePattern.MatchString(s) {
		return &FieldError{"keyspace", s, "must match " + keyspacePattern.String()}
	}
	return nil
}

// ValidateTarget checks a node name or volume ID.
func ValidateTarget(field, s string) error {
	if !targetPattern.MatchString(s) {
		return &FieldError{field, s, "must match " + targetPattern.String()}
	}
	return nil
}

// ValidateDir checks a directory of a node (a data directory, say): an
// absolute, clean path of letters, digits and _ . / @ + , : = -, with no
// "." or ".." component.
func ValidateDir(field, s string) error {
	if len(s) > maxDir || !dirPattern.MatchString(s) {
		return &FieldError{field, s, fmt.Sprintf("must be an absolute path of at most %d bytes matching %s", maxDir, dirPattern)}
	}
	if path.Clean(s) != s {
		return &FieldError{field, s, "must be a clean path (no //, trailing /, . or .. component)"}
	}
	return nil
}

// Validate checks every directory of d.
func (d NodeDirs) Validate() error {
	var errs []error
	for _, p := range d.Data {
		errs = append(errs, ValidateDir("data directory", p))
	}
	for _, x := range []struct{ field, path string }{
		{"commitlog directory", d.CommitLog}, {"hints directory", d.Hints},
		{"saved caches directory", d.SavedCaches}, {"cdc_raw directory", d.CDCRaw},
	} {
		if x.path != "" {
			errs = append(errs, ValidateDir(x.field, x.path))
		}
	}
	return errors.Join(errs...)
}

// ValidateRequestID checks a request ID.
func ValidateRequestID(s string) error {
	if !requestIDPattern.MatchString(s) {
		return &FieldError{"request_id", s, "must match " + requestIDPattern.String()}
	}
	return nil
}

// ValidateJobID checks a job ID's shape.
func ValidateJobID(s string) error {
	if !jobIDPattern.MatchString(s) {
		return &FieldError{"job_id", s, "is not a quiesce job ID (<cluster>-<12 hex digits>)"}
	}
	return nil
}

// Validate checks a JobRequest on its own, without the configuration. It
// returns every problem found, joined.
func (r JobRequest) Validate() error {
	var errs []error
	if r.Schema != JobRequestSchema {
		errs = append(errs, &FieldError{"schema", r.Schema, "must be " + JobRequestSchema})
	}
	if r.RequestID == "" {
		errs = append(errs, &FieldError{"request_id", "", "is required"})
	} else if !requestIDPattern.MatchString(r.RequestID) {
		errs = append(errs, &FieldError{"request_id", r.RequestID, "must match " + requestIDPattern.String()})
	}
	if r.Cluster == "" {
		errs = append(errs, &FieldError{"cluster", "", "is required"})
	} else if err := ValidateCluster(r.Cluster); err != nil {
		errs = append(errs, err)
	}
	if r.Policy != "" && !policyPattern.MatchString(r.Policy) {
		errs = append(errs, &FieldError{"policy", r.Policy, "must match " + policyPattern.String()})
	}
	switch r.Mode {
	case "", ModeApplication, ModeCrash:
	default:
		errs = append(errs, &FieldError{"mode", string(r.Mode), fmt.Sprintf("must be %q or %q", ModeApplication, ModeCrash)})
	}
	if r.Tag != "" {
		if err := ValidateTag(r.Tag); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ks := range r.Keyspaces {
		if err := ValidateKeyspace(ks); err != nil {
			errs = append(errs, err)
		}
	}
	if len(r.Reason) > 1024 {
		errs = append(errs, &FieldError{"reason", "", "is longer than 1024 bytes"})
	}
	if len(r.RequestedBy) > 256 {
		errs = append(errs, &FieldError{"requested_by", "", "is longer than 256 bytes"})
	}
	return errors.Join(errs...)
}

// DecodeJobRequest parses and validates a JobRequest. Unknown fields are an
// error: a caller who misspells "deadline" should hear about it, not get a job
// without one.
func DecodeJobRequest(data []byte) (JobRequest, error) {
	var r JobRequest
	if len(data) > MaxJobRequestBytes {
		return r, &malformed{fmt.Errorf("job request is %d bytes, more than the %d allowed", len(data), MaxJobRequestBytes)}
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, &malformed{fmt.Errorf("job request is not valid JSON for %s: %w", JobRequestSchema, err)}
	}
	if dec.More() {
		return r, &malformed{errors.New("job request has data after the JSON object")}
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("invalid job request: %w", err)
	}
	return r, nil
}

// CheckDeadline rejects a deadline already past at now.
func (r JobRequest) CheckDeadline(now time.Time) error {
	if !r.Deadline.IsZero() && !r.Deadline.After(now) {
		return &FieldError{"deadline", r.Deadline.Format(time.RFC3339), "is already past"}
	}
	return nil
}
