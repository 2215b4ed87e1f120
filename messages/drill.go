package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DrillSchema is the schema of a drill's record.
const DrillSchema = "quiesce.drill/v1"

// Drill outcomes.
const (
	DrillSucceeded = "succeeded"
	DrillFailed    = "failed"
)

// Drill is the record of one restore drill: a backup restored into a
// scratch cluster, verified and torn down. It is kept in the catalog bucket
// under DrillKey, one token deeper than a backup's key, so that a listing
// of a cluster's backups (<cluster>.*) never holds one. Its field names are
// none of a Backup's, so that nothing reading the catalog takes it for one.
type Drill struct {
	Schema  string `json:"schema"`
	DrillID string `json:"drill_id"`
	// Source is the cluster whose backup was restored; Target the scratch
	// cluster it was restored into.
	Source    string `json:"source_cluster"`
	Target    string `json:"target_cluster"`
	BackupJob string `json:"backup_job,omitempty"`
	// Outcome is DrillSucceeded or DrillFailed; Error says why it failed.
	Outcome string    `json:"outcome"`
	Error   string    `json:"error,omitempty"`
	Began   time.Time `json:"began_at"`
	Ended   time.Time `json:"ended_at"`
	// Phases are how long each phase took, in order.
	Phases []DrillPhase `json:"phases,omitempty"`
	// TornDown is set once the scratch cluster was stopped and emptied.
	TornDown bool `json:"torn_down"`
	// Notes are what the nodes reported on the way (a start tried again).
	Notes []string `json:"notes,omitempty"`
	// RequestID and RequestedBy are those of the DrillRequest the drill
	// ran for (a scheduled drill's requested_by is "schedule"); empty for a
	// drill run by quiesce drill.
	RequestID   string `json:"request_id,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
}

// DrillPhase is one phase of a drill and how long it took.
type DrillPhase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// DrillKey is where a drill's record is kept in the catalog bucket.
func DrillKey(cluster, drillID string) string { return cluster + ".drill." + drillID }

// DrillKeys matches the drill records of every cluster in the catalog.
const DrillKeys = "*.drill.*"

// DecodeDrill reads a drill record.
func DecodeDrill(data []byte) (Drill, error) {
	var d Drill
	if err := json.Unmarshal(data, &d); err != nil {
		return Drill{}, err
	}
	if d.Schema != DrillSchema {
		return Drill{}, fmt.Errorf("drill schema %q: want %s", d.Schema, DrillSchema)
	}
	return d, nil
}

// DrillRequestSchema is the schema of a DrillRequest.
const DrillRequestSchema = "quiesce.drill-request/v1"

// SubjectDrillSubmit carries DrillRequests, on the JOBS stream, with the
// request ID as the Nats-Msg-Id. One consumer of the worker processes runs
// them, one drill at a time across the fleet.
const SubjectDrillSubmit = "quiesce.drills.submit"

// SubjectDrillSchedulesAll holds one schedule message per cluster whose
// drill has a schedule: JetStream fires its DrillRequest onto
// SubjectDrillSubmit. It is apart from SubjectSchedulesAll, whose subjects
// the policies' schedule sync owns.
const SubjectDrillSchedulesAll = "quiesce.drill-schedules.>"

// SubjectDrillSchedule is where a cluster's drill schedule message is kept.
func SubjectDrillSchedule(cluster string) string { return "quiesce.drill-schedules." + cluster }

// DrillRequest asks for one drill of a cluster: its newest complete backup
// (or Backup) restored into the scratch cluster its drill section names,
// verified and torn down. It is published as JSON on SubjectDrillSubmit
// with the request ID as the Nats-Msg-Id; a request ID makes one drill
// (DrillIDFor), however often it is delivered.
type DrillRequest struct {
	Schema    string `json:"schema"`
	RequestID string `json:"request_id"`
	Cluster   string `json:"cluster"`
	// Backup is the job ID of the backup to restore; empty for the newest
	// complete one.
	Backup      string `json:"backup,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// DrillID returns the drill ID the request produces.
func (r DrillRequest) DrillID() string { return DrillIDFor(r.RequestID) }

// DrillIDFor derives a drill ID from a request ID: "drill-r" and 12 hex
// digits, never the shape of a drill run from the command line
// (drill-<time>).
func DrillIDFor(requestID string) string {
	sum := sha256.Sum256([]byte("drill:" + requestID))
	return "drill-r" + hex.EncodeToString(sum[:6])
}

// Validate checks a DrillRequest on its own, without the configuration or
// the catalog. It returns every problem found, joined.
func (r DrillRequest) Validate() error {
	var errs []error
	if r.Schema != DrillRequestSchema {
		errs = append(errs, &FieldError{"schema", r.Schema, "must be " + DrillRequestSchema})
	}
	if r.RequestID == "" {
		errs = append(errs, &FieldError{"request_id", "", "is required"})
	} else if err := ValidateRequestID(r.RequestID); err != nil {
		errs = append(errs, err)
	}
	if r.Cluster == "" {
		errs = append(errs, &FieldError{"cluster", "", "is required"})
	} else if err := ValidateCluster(r.Cluster); err != nil {
		errs = append(errs, err)
	}
	if r.Backup != "" {
		switch {
		case ValidateJobID(r.Backup) != nil:
			errs = append(errs, &FieldError{"backup", r.Backup, "must be a backup's job ID (<cluster>-<12 hex digits>); omit it for the newest complete backup"})
		case r.Cluster != "" && !strings.HasPrefix(r.Backup, r.Cluster+"-"):
			errs = append(errs, &FieldError{"backup", r.Backup, "is not a backup of cluster " + r.Cluster})
		}
	}
	errs = append(errs, textErrors(r.Reason, r.RequestedBy)...)
	return errors.Join(errs...)
}

// DecodeDrillRequest parses and validates a DrillRequest. Unknown fields
// are an error, and a request that is not JSON of the request's shape wraps
// ErrMalformed.
func DecodeDrillRequest(data []byte) (DrillRequest, error) {
	var r DrillRequest
	if err := decodeStrict(data, "drill request", DrillRequestSchema, &r); err != nil {
		return r, err
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("invalid drill request: %w", err)
	}
	return r, nil
}
