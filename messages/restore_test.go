package messages_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// The documented example decodes and validates.
func TestExampleRestoreRequestIsValid(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/examples/restore-request.json")
	require.NoError(t, err)
	r, err := messages.DecodeRestoreRequest(data)
	require.NoError(t, err)
	require.Equal(t, messages.TargetNewCluster, r.Target)
	require.True(t, messages.IsRestoreID(r.RestoreID()), r.RestoreID())
}

// schemaFields lists the properties of an object schema and those of its
// nested object properties as "parent.child".
func schemaFields(t *testing.T, raw json.RawMessage, prefix string) []string {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Items      json.RawMessage            `json:"items"`
	}
	require.NoError(t, json.Unmarshal(raw, &s))
	if s.Items != nil {
		return schemaFields(t, s.Items, prefix)
	}
	var out []string
	for k, v := range s.Properties {
		out = append(out, prefix+k)
		out = append(out, schemaFields(t, v, prefix+k+".")...)
	}
	return out
}

// typeFields lists the JSON fields of a struct type and of its nested
// request-side struct fields.
func typeFields(rt reflect.Type, prefix string) []string {
	for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice {
		rt = rt.Elem()
	}
	if rt.Kind() != reflect.Struct || rt == reflect.TypeOf(time.Time{}) {
		return nil
	}
	var out []string
	for i := 0; i < rt.NumField(); i++ {
		name := strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]
		out = append(out, prefix+name)
		out = append(out, typeFields(rt.Field(i).Type, prefix+name+".")...)
	}
	return out
}

// The JSON Schema lists exactly the fields of RestoreRequest, nested ones
// included, so the contract other systems read cannot drift from the code.
func TestRestoreRequestSchemaMatchesType(t *testing.T) {
	t.Parallel()
	requireSchemaOf(t, "../docs/restore-request.schema.json", messages.RestoreRequest{}, "schema", "request_id", "cluster", "backup", "target")
}

// requireSchemaOf holds the JSON Schema at path to the fields of v's type,
// nested ones included, and to the required fields given.
func requireSchemaOf(t *testing.T, path string, v any, required ...string) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	inSchema := schemaFields(t, data, "")
	inType := typeFields(reflect.TypeOf(v), "")
	sort.Strings(inSchema)
	sort.Strings(inType)
	require.Equal(t, inType, inSchema)
	var s struct {
		Required []string `json:"required"`
	}
	require.NoError(t, json.Unmarshal(data, &s))
	require.ElementsMatch(t, required, s.Required)
}

func validRestore() messages.RestoreRequest {
	return messages.RestoreRequest{Schema: messages.RestoreRequestSchema, RequestID: "r1", Cluster: "orders",
		Backup: "latest", Target: messages.TargetInPlace}
}

func TestRestoreRequestValidation(t *testing.T) {
	t.Parallel()
	neg := int64(-1)
	for _, tc := range []struct {
		desc string
		mod  func(r *messages.RestoreRequest)
		want []string // every one must be named
	}{
		{"valid in place", func(*messages.RestoreRequest) {}, nil},
		{"valid volumes attached", func(r *messages.RestoreRequest) {
			r.Target = messages.TargetVolumes
			r.Nodes = []messages.NodeMapping{{Source: "n1", InstanceID: "i-0123456789abcdef0", AZ: "us-east-1b"}}
			r.Volumes = &messages.VolumeOverrides{Type: "gp3", Attach: true}
		}, nil},
		{"everything missing", func(r *messages.RestoreRequest) { *r = messages.RestoreRequest{} },
			[]string{"schema", "request_id", "cluster", "backup", "target"}},
		{"backup of another cluster", func(r *messages.RestoreRequest) { r.Backup = "billing-0123456789ab" }, []string{"not a backup of cluster orders"}},
		{"backup not a job ID", func(r *messages.RestoreRequest) { r.Backup = "yesterday" }, []string{"backup \"yesterday\""}},
		{"unknown target", func(r *messages.RestoreRequest) { r.Target = "elsewhere" }, []string{"target \"elsewhere\""}},
		{"restore point", func(r *messages.RestoreRequest) { r.RestorePoint = "2026-01-01" }, []string{"restore_point"}},
		{"new cluster without target cluster", func(r *messages.RestoreRequest) { r.Target = messages.TargetNewCluster }, []string{"target_cluster: is required"}},
		{"new cluster onto itself", func(r *messages.RestoreRequest) {
			r.Target, r.TargetCluster = messages.TargetNewCluster, "orders"
		}, []string{"never joins its source"}},
		{"mapping twice and elsewhere in place", func(r *messages.RestoreRequest) {
			r.Nodes = []messages.NodeMapping{{Source: "n1", Target: "n2"}, {Source: "n1"}}
		}, []string{"nodes[1].source \"n1\": is mapped twice", "nodes[0].target \"n2\": must be the source node itself"}},
		{"attach without instance", func(r *messages.RestoreRequest) {
			r.Target = messages.TargetVolumes
			r.Nodes = []messages.NodeMapping{{Source: "n1"}}
			r.Volumes = &messages.VolumeOverrides{Attach: true}
		}, []string{"nodes[0].instance_id: is required to attach"}},
		{"bad overrides", func(r *messages.RestoreRequest) {
			r.Target = messages.TargetVolumes
			r.Volumes = &messages.VolumeOverrides{Type: "ssd", AZ: "moon", SizeGiB: -1}
		}, []string{"volumes.type", "volumes.az", "volumes.size_gib"}},
		{"verify on volumes, negative rows", func(r *messages.RestoreRequest) {
			r.Target = messages.TargetVolumes
			r.Verify = &messages.RestoreVerification{CQL: "SELECT 1", ExpectRows: &neg}
		}, []string{"verify.expect_rows", "starts no Cassandra"}},
		{"force and stop on volumes", func(r *messages.RestoreRequest) {
			r.Target, r.Force, r.StopRunning = messages.TargetVolumes, true, true
		}, []string{"force", "stop_running"}},
		{"cluster name in place", func(r *messages.RestoreRequest) { r.ClusterName = "x" }, []string{"cluster_name"}},
		{"shell in keyspace", func(r *messages.RestoreRequest) { r.Keyspaces = []string{"ks;rm"} }, []string{"keyspace"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := validRestore()
			tc.mod(&r)
			err := r.Validate()
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			var fe *messages.FieldError
			require.True(t, errors.As(err, &fe))
		})
	}
}

func TestDecodeRestoreRequestRejectsUnknownAndMalformed(t *testing.T) {
	t.Parallel()
	_, err := messages.DecodeRestoreRequest([]byte(`{"schema":"quiesce.restore-request/v1","request_id":"a","cluster":"c","backup":"latest","target":"in-place","deadlne":"2030-01-01T00:00:00Z"}`))
	require.ErrorIs(t, err, messages.ErrMalformed)
	require.Contains(t, err.Error(), "deadlne")
	_, err = messages.DecodeRestoreRequest([]byte(`{"schema":"quiesce.restore-request/v1","request_id":"a","cluster":"c","backup":"latest","target":"in-place","verify":{"rows":1}}`))
	require.ErrorIs(t, err, messages.ErrMalformed)
	_, err = messages.DecodeRestoreRequest([]byte(`not json`))
	require.ErrorIs(t, err, messages.ErrMalformed)
	_, err = messages.DecodeRestoreRequest([]byte(`{"schema":"quiesce.restore-request/v1","request_id":"a","cluster":"c","backup":"latest","target":"sideways"}`))
	require.Error(t, err)
	require.NotErrorIs(t, err, messages.ErrMalformed)
}

// A restore ID never has a job ID's shape, so the two never share events.
func TestRestoreIDIsNoJobID(t *testing.T) {
	t.Parallel()
	id := messages.RestoreIDFor("orders", "x")
	require.True(t, messages.IsRestoreID(id))
	require.Error(t, messages.ValidateJobID(id))
	require.False(t, messages.IsRestoreID(messages.JobIDFor("orders", "x")))
	require.NotEqual(t, id, messages.RestoreIDFor("orders", "y"))
}
