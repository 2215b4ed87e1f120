package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
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
	// RFC 3339 date-time as JSON Schema's "date-time" and Go's time
	// package both read it: upper-case T and Z, a dot before fractions,
	// offsets of at most 23:59.
	deadlinePattern = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`)
)

// Lengths of the free-text fields, in characters (Unicode code points, as
// JSON Schema's maxLength counts them).
const (
	MaxReasonChars      = 1024
	MaxRequestedByChars = 256
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

// MaxEchoBytes bounds a value quoted back in an error message, a rejection
// event or a log line: a 10 KB request ID is named by its first bytes and its
// length, never echoed whole.
const MaxEchoBytes = 64

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, Bound(e.Value, MaxEchoBytes), e.Reason)
}

// Bound returns s cut to at most n bytes, on a character boundary, with
// "…" and the full length appended when it was cut; invalid UTF-8 is shown
// as Go's quoting would, never passed on raw.
func Bound(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\ufffd")
	}
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:cut], len(s))
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
// returns every problem found, joined. An empty optional field counts as
// absent here; DecodeJobRequest, which sees the JSON, refuses one that is
// present but empty.
func (r JobRequest) Validate() error {
	var errs []error
	for _, f := range []struct{ name, value string }{
		{"schema", r.Schema}, {"request_id", r.RequestID}, {"cluster", r.Cluster}, {"policy", r.Policy},
		{"mode", string(r.Mode)}, {"tag", r.Tag}, {"reason", r.Reason}, {"requested_by", r.RequestedBy},
	} {
		if !utf8.ValidString(f.value) {
			errs = append(errs, &FieldError{f.name, "", "is not valid UTF-8"})
		}
	}
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
	errs = append(errs, textErrors(r.Reason, r.RequestedBy)...)
	return errors.Join(errs...)
}

// textErrors checks the lengths of a request's free-text fields, reason
// and requested_by.
func textErrors(reason, requestedBy string) []error {
	var errs []error
	if n := utf8.RuneCountInString(reason); n > MaxReasonChars {
		errs = append(errs, &FieldError{"reason", "", fmt.Sprintf("is %d characters, more than %d", n, MaxReasonChars)})
	}
	if n := utf8.RuneCountInString(requestedBy); n > MaxRequestedByChars {
		errs = append(errs, &FieldError{"requested_by", "", fmt.Sprintf("is %d characters, more than %d", n, MaxRequestedByChars)})
	}
	return errs
}

// jobRequestFields are the JSON names of JobRequest's fields and the JSON
// type each must have.
var jobRequestFields = map[string]string{
	"schema": "string", "request_id": "string", "cluster": "string", "policy": "string", "mode": "string",
	"tag": "string", "keyspaces": "array", "reason": "string", "requested_by": "string", "deadline": "string",
}

// mustNotBeEmpty are the optional fields whose empty value has no meaning:
// a caller who means "the default" leaves the field out.
var mustNotBeEmpty = map[string]string{
	"policy":    "omit it for the cluster's default policy",
	"mode":      "omit it for " + string(ModeApplication),
	"tag":       "omit it for quiesce-<job id>",
	"keyspaces": "omit it for every keyspace",
}

// DecodeJobRequest parses and validates a JobRequest. It reads the JSON as
// it is written, and takes nothing it would have to guess at: an unknown or
// misspelt field (a caller who writes "dedline" should hear about it, not
// get a job without a deadline), a field given twice, null where a value
// belongs, an empty optional field, anything after the object (a stray "}"
// included), and bytes or escapes that are not valid UTF-8 (which would
// otherwise be replaced without a word) are all errors matching ErrMalformed.
// docs/job-request.schema.json describes the same contract; a test holds the
// two to the same answers.
func DecodeJobRequest(data []byte) (JobRequest, error) {
	var r JobRequest
	if len(data) > MaxJobRequestBytes {
		return r, &malformed{fmt.Errorf("job request is %d bytes, more than the %d allowed", len(data), MaxJobRequestBytes)}
	}
	if err := checkUTF8(data); err != nil {
		return r, &malformed{fmt.Errorf("job request %w", err)}
	}
	fields, err := objectFields(data)
	if err != nil {
		return r, &malformed{fmt.Errorf("job request is not valid JSON for %s: %w", JobRequestSchema, err)}
	}
	var errs []error
	for _, f := range fields {
		want, known := jobRequestFields[f.name]
		switch {
		case !known:
			errs = append(errs, fmt.Errorf("unknown field %q", Bound(f.name, MaxEchoBytes)))
		case f.seen > 1:
			errs = append(errs, fmt.Errorf("field %q appears %d times", f.name, f.seen))
		case jsonType(f.raw) != want:
			errs = append(errs, fmt.Errorf("field %q must be a JSON %s, not %s", f.name, want, jsonType(f.raw)))
		}
	}
	if len(errs) > 0 {
		// What can be read of the request still says where its
		// rejection goes: the job its request ID and cluster name.
		for _, f := range fields {
			switch f.name {
			case "request_id":
				_ = json.Unmarshal(f.raw, &r.RequestID)
			case "cluster":
				_ = json.Unmarshal(f.raw, &r.Cluster)
			}
		}
		return r, &malformed{fmt.Errorf("job request is not valid JSON for %s: %w", JobRequestSchema, errors.Join(errs...))}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, &malformed{fmt.Errorf("job request is not valid JSON for %s: %w", JobRequestSchema, err)}
	}
	for _, f := range fields {
		if hint, ok := mustNotBeEmpty[f.name]; ok && (string(f.raw) == `""` || string(f.raw) == `[]`) {
			errs = append(errs, &FieldError{f.name, "", "is empty: " + hint})
		}
		if f.name == "deadline" {
			var s string
			if json.Unmarshal(f.raw, &s) == nil && !deadlinePattern.MatchString(s) {
				errs = append(errs, &FieldError{"deadline", s, "must be an RFC 3339 date-time such as 2030-01-01T06:00:00Z"})
			}
		}
	}
	if err := r.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("invalid job request: %w", err)
	}
	return r, nil
}

// field is one member of a JSON object as written.
type field struct {
	name string
	raw  json.RawMessage
	seen int
}

// objectFields reads data as exactly one JSON object and returns its members
// in order, each name once with how often it appeared. Whatever follows the
// object other than white space is an error: json.Decoder.More does not see
// a stray closing "}" or "]".
func objectFields(data []byte) ([]*field, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("it is a JSON %s, not an object", tokenType(tok))
	}
	var fields []*field
	byName := map[string]*field{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		if f, ok := byName[name]; ok {
			f.seen++
			continue
		}
		f := &field{name: name, raw: raw, seen: 1}
		byName[name] = f
		fields = append(fields, f)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	rest := data[dec.InputOffset():]
	if trimmed := bytes.TrimLeft(rest, " \t\r\n"); len(trimmed) > 0 {
		return nil, fmt.Errorf("data after the JSON object at byte %d: %q", len(data)-len(trimmed), Bound(string(trimmed), 16))
	}
	return fields, nil
}

// jsonType names the JSON type of a raw value.
func jsonType(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "string"
	case '[':
		return "array"
	case '{':
		return "object"
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	}
	return "number"
}

func tokenType(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "array"
	case string:
		return "string"
	case nil:
		return "null"
	case bool:
		return "boolean"
	}
	return "number"
}

// checkUTF8 refuses bytes that are not UTF-8 and \u escapes of lone UTF-16
// surrogates: encoding/json would replace either with U+FFFD and carry on.
// Every backslash of valid JSON starts an escape inside a string, so one
// pass over the bytes finds them all.
func checkUTF8(data []byte) error {
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return fmt.Errorf("is not valid UTF-8 (byte %d)", i)
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' || i+1 >= len(data) {
			continue
		}
		if data[i+1] != 'u' {
			i++ // an escaped character, a backslash included
			continue
		}
		u, ok := hex4(data, i+2)
		if !ok {
			continue // the JSON decoder reports it
		}
		switch {
		case u >= 0xD800 && u <= 0xDBFF:
			lo, ok := hex4(data, i+8)
			if !ok || data[i+6] != '\\' || data[i+7] != 'u' || lo < 0xDC00 || lo > 0xDFFF {
				return fmt.Errorf("has an unpaired UTF-16 surrogate escape at byte %d", i)
			}
			i += 11
		case u >= 0xDC00 && u <= 0xDFFF:
			return fmt.Errorf("has an unpaired UTF-16 surrogate escape at byte %d", i)
		default:
			i += 5
		}
	}
	return nil
}

// hex4 reads four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var v rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// CheckDeadline rejects a deadline already past at now.
func (r JobRequest) CheckDeadline(now time.Time) error {
	if !r.Deadline.IsZero() && !r.Deadline.After(now) {
		return &FieldError{"deadline", r.Deadline.Format(time.RFC3339), "is already past"}
	}
	return nil
}
