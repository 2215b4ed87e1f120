package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Schema versions of the objects workers store for the coordinator.
const (
	NodeFactsSchema = "quiesce.node-facts/v1"
	ListingSchema   = "quiesce.listing/v1"
)

// Topology is what a backup's catalog record keeps of the cluster it was
// taken from: enough to rebuild it when the original is gone. The cluster
// settings and the schema come from the nodes' own words (nodetool
// describecluster, info, status and each table's schema.cql), the volumes
// from the snapshot driver (EC2 DescribeVolumes).
type Topology struct {
	ClusterName      string `json:"cluster_name,omitempty"`
	Partitioner      string `json:"partitioner,omitempty"`
	Snitch           string `json:"snitch,omitempty"`
	CassandraVersion string `json:"cassandra_version,omitempty"`
	// NumTokens is the largest number of tokens a node holds (num_tokens).
	NumTokens     int    `json:"num_tokens,omitempty"`
	SchemaVersion string `json:"schema_version,omitempty"`
	// Schema is CQL that recreates the backed-up user keyspaces and tables:
	// each keyspace with the replication it had, then each table as its
	// snapshot's schema.cql gives it (table IDs, indexes and types
	// included).
	Schema    string          `json:"schema_cql,omitempty"`
	Keyspaces []KeyspaceFacts `json:"keyspaces,omitempty"`
	Nodes     []NodeFacts     `json:"nodes,omitempty"`
	Volumes   []VolumeFacts   `json:"volumes,omitempty"`
}

// KeyspaceFacts is one keyspace's replication, as describecluster prints it.
type KeyspaceFacts struct {
	Name string `json:"name"`
	// Class is the replication strategy ("NetworkTopologyStrategy");
	// Options its settings ({"dc1": "3"}, or {"replication_factor": "3"}).
	Class   string            `json:"class"`
	Options map[string]string `json:"options,omitempty"`
}

// NodeFacts is what one node said about itself and its snapshot, gathered
// by the clear task before it cleared the tag.
type NodeFacts struct {
	Schema string `json:"schema"`
	// Node is the node's name in quiesce's inventory.
	Node       string `json:"node"`
	HostID     string `json:"host_id,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	Rack       string `json:"rack,omitempty"`
	// Address is the node's broadcast address, as nodetool status lists it.
	Address string   `json:"address,omitempty"`
	Tokens  []string `json:"tokens,omitempty"`
	Version string   `json:"cassandra_version,omitempty"`
	// The cluster as this node saw it (nodetool describecluster).
	ClusterName   string          `json:"cluster_name,omitempty"`
	Partitioner   string          `json:"partitioner,omitempty"`
	Snitch        string          `json:"snitch,omitempty"`
	SchemaVersion string          `json:"schema_version,omitempty"`
	Keyspaces     []KeyspaceFacts `json:"keyspaces,omitempty"`
	Dirs          NodeDirs        `json:"dirs"`
	// Tables is what the snapshot holds, one entry per table directory.
	Tables     []TableSnapshot `json:"tables,omitempty"`
	GatheredAt time.Time       `json:"gathered_at"`
	// Errors name the facts that could not be gathered, and why.
	Errors []string `json:"errors,omitempty"`
	// Parts and SHA256, set alone (with Schema and Node), say the facts
	// were too large for one value of the jobs bucket: they are the
	// concatenation of the values under NodeFactsPartKey 1 to Parts, whose
	// SHA-256 is SHA256 (hex).
	Parts  int    `json:"parts,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// TableSnapshot is one table's snapshots/<tag> directory on one node.
type TableSnapshot struct {
	Keyspace string `json:"keyspace"`
	Table    string `json:"table"`
	// ID is the table ID that names its directory (<table>-<id>).
	ID string `json:"id,omitempty"`
	// DataDir is the data directory holding the table's directory.
	DataDir string `json:"data_dir,omitempty"`
	// SSTables is how many SSTables manifest.json lists (one Data.db each).
	SSTables int `json:"sstables"`
	// Files and Bytes count every file of the snapshot but manifest.json
	// and schema.cql: the SSTables' components, index files included.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// Missing lists files manifest.json names that the directory lacks.
	Missing []string `json:"missing,omitempty"`
	// CQL is the table's schema.cql (user tables only). The catalog keeps
	// it once, in Topology.Schema, not per node.
	CQL string `json:"schema_cql,omitempty"`
}

// VolumeFacts is one data volume of a backup, as the snapshot driver
// described it when the job's snapshots had completed.
type VolumeFacts struct {
	VolumeID   string `json:"volume_id"`
	Node       string `json:"node,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	AZ         string `json:"az,omitempty"`
	// SizeGiB is the EBS volume size; SizeBytes what the fs driver copied.
	SizeGiB   int32  `json:"size_gib,omitempty"`
	SizeBytes int64  `json:"size_bytes,omitempty"`
	Type      string `json:"type,omitempty"`
	IOPS      int32  `json:"iops,omitempty"`
	// Throughput is gp3's provisioned throughput in MiB/s.
	Throughput int32  `json:"throughput,omitempty"`
	Encrypted  bool   `json:"encrypted,omitempty"`
	KMSKeyID   string `json:"kms_key_id,omitempty"`
	Device     string `json:"device,omitempty"`
	MountPoint string `json:"mount_point,omitempty"`
}

// Listing is what an await task stores under SnapshotListing(job) once
// every snapshot of the job has completed: the catalog's one source.
type Listing struct {
	Schema    string        `json:"schema"`
	Snapshots []SnapshotRef `json:"snapshots"`
	Volumes   []VolumeFacts `json:"volumes,omitempty"`
	// Warnings say what the listing lacks (volumes that could not be
	// described, say).
	Warnings []string `json:"warnings,omitempty"`
}

// DecodeListing reads a listing, also in the form the previous release
// stored (a bare array of snapshots), so jobs in flight during an upgrade
// are catalogued.
func DecodeListing(data []byte) (Listing, error) {
	var l Listing
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &l.Snapshots); err != nil {
			return Listing{}, err
		}
		l.Schema = ListingSchema
		return l, nil
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return Listing{}, err
	}
	if l.Schema != ListingSchema {
		return Listing{}, fmt.Errorf("listing schema %q: want %s", l.Schema, ListingSchema)
	}
	return l, nil
}

// DecodeNodeFacts reads a node's facts, as stored in the jobs bucket.
func DecodeNodeFacts(data []byte) (NodeFacts, error) {
	var f NodeFacts
	if err := json.Unmarshal(data, &f); err != nil {
		return NodeFacts{}, err
	}
	if f.Schema != NodeFactsSchema {
		return NodeFacts{}, errors.New("node facts schema " + fmt.Sprintf("%q", f.Schema) + ": want " + NodeFactsSchema)
	}
	return f, nil
}
