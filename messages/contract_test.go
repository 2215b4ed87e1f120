package messages_test

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

// The documented example decodes and validates.
func TestExampleJobRequestIsValid(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/examples/job-request.json")
	require.NoError(t, err)
	r, err := messages.DecodeJobRequest(data)
	require.NoError(t, err)
	require.Equal(t, "orders", r.Cluster)
}

// The JSON Schema lists exactly the fields of JobRequest, so the contract
// other systems read cannot drift from the code.
func TestJobRequestSchemaMatchesType(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/job-request.schema.json")
	require.NoError(t, err)
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	require.NoError(t, json.Unmarshal(data, &schema))
	var inSchema, inType []string
	for k := range schema.Properties {
		inSchema = append(inSchema, k)
	}
	rt := reflect.TypeOf(messages.JobRequest{})
	for i := 0; i < rt.NumField(); i++ {
		name := strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]
		inType = append(inType, name)
	}
	sort.Strings(inSchema)
	sort.Strings(inType)
	require.Equal(t, inType, inSchema)
	require.ElementsMatch(t, []string{"schema", "request_id", "cluster"}, schema.Required)
}
