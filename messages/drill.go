package messages

import (
	"encoding/json"
	"fmt"
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
