package messages_test

import (
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

func TestDrillRequestDecodes(t *testing.T) {
	t.Parallel()
	r, err := messages.DecodeDrillRequest([]byte(`{"schema":"quiesce.drill-request/v1","request_id":"weekly-1",
		"cluster":"orders","backup":"orders-0123456789ab","requested_by":"ops","reason":"audit"}`))
	require.NoError(t, err)
	require.Equal(t, "orders", r.Cluster)
	require.Equal(t, messages.DrillIDFor("weekly-1"), r.DrillID())
	require.Regexp(t, `^drill-r[0-9a-f]{12}$`, r.DrillID())
	require.NotEqual(t, messages.DrillIDFor("weekly-2"), r.DrillID())
}

// A bad request names each field that is wrong; one that is not of the
// request's shape (an unknown field, trailing data) is malformed.
func TestDrillRequestRejections(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc, data string
		malformed  bool
		want       []string
	}{
		{desc: "unknown field", malformed: true,
			data: `{"schema":"quiesce.drill-request/v1","request_id":"a","cluster":"c","target":"x"}`, want: []string{`"target"`}},
		{desc: "trailing data", malformed: true,
			data: `{"schema":"quiesce.drill-request/v1","request_id":"a","cluster":"c"} {}`, want: []string{"after the JSON object"}},
		{desc: "not JSON", malformed: true, data: `drill`, want: []string{"not valid JSON"}},
		{desc: "every problem named",
			data: `{"schema":"quiesce.drill/v1","request_id":"","cluster":"Orders!","backup":"nope"}`,
			want: []string{"schema", "request_id: is required", "cluster", "backup"}},
		{desc: "backup of another cluster",
			data: `{"schema":"quiesce.drill-request/v1","request_id":"a","cluster":"c","backup":"d-0123456789ab"}`,
			want: []string{"backup", "is not a backup of cluster c"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			_, err := messages.DecodeDrillRequest([]byte(tc.data))
			require.Error(t, err)
			require.Equal(t, tc.malformed, errors.Is(err, messages.ErrMalformed), err.Error())
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestScheduleExpr(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"0 2 * * *": "0 0 2 * * *", "0 0 2 * * 1": "0 0 2 * * 1", " @every 1s ": "@every 1s", "@daily": "@daily"} {
		got, err := messages.ScheduleExpr(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	_, err := messages.ScheduleExpr("every tuesday")
	require.ErrorContains(t, err, `schedule "every tuesday"`)
}

// The documented example decodes, and the JSON Schema lists exactly the
// fields of DrillRequest.
func TestDrillRequestSchemaMatchesType(t *testing.T) {
	t.Parallel()
	example, err := os.ReadFile("../docs/examples/drill-request.json")
	require.NoError(t, err)
	r, err := messages.DecodeDrillRequest(example)
	require.NoError(t, err)
	require.Equal(t, "orders", r.Cluster)

	requireSchemaOf(t, "../docs/drill-request.schema.json", messages.DrillRequest{}, "schema", "request_id", "cluster")
}
