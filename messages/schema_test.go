package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

const schemaPath = "../docs/job-request.schema.json"

// compileSchema compiles the published JSON Schema with format assertions
// on, as a strict validator of another system would use it.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	data, err := os.ReadFile(schemaPath)
	require.NoError(t, err)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const url = "https://github.com/quiesce/quiesce/docs/job-request.schema.json"
	require.NoError(t, c.AddResource(url, doc))
	sch, err := c.Compile(url)
	require.NoError(t, err)
	return sch
}

// schemaAccepts reports whether the JSON Schema accepts data, which must be
// a JSON text a schema validator can read.
func schemaAccepts(t *testing.T, sch *jsonschema.Schema, data string) (bool, error) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(data))
	if err != nil {
		return false, err
	}
	err = sch.Validate(inst)
	return err == nil, err
}

const base = `"schema":"quiesce.job-request/v1","request_id":"r-1","cluster":"orders"`

// agreementCases are requests both the JSON Schema and DecodeJobRequest
// judge: each is I-JSON (RFC 7493), so what a schema validator reads is
// what the decoder reads.
var agreementCases = []struct {
	desc   string
	body   string
	accept bool
}{
	{"minimal", `{` + base + `}`, true},
	{"every field", `{` + base + `,"policy":"nightly","mode":"crash","tag":"t-1","keyspaces":["shop","billing"],"reason":"before upgrade","requested_by":"ops@x","deadline":"2030-01-01T06:00:00Z"}`, true},
	{"application mode", `{` + base + `,"mode":"application"}`, true},
	{"deadline with an offset and fractions", `{` + base + `,"deadline":"2030-01-01T06:00:00.25+01:30"}`, true},
	{"reason of 1024 characters, 2048 bytes", `{` + base + `,"reason":"` + strings.Repeat("é", 1024) + `"}`, true},
	{"reason of 1025 characters", `{` + base + `,"reason":"` + strings.Repeat("é", 1025) + `"}`, false},
	{"requested_by of 256 characters", `{` + base + `,"requested_by":"` + strings.Repeat("ü", 256) + `"}`, true},
	{"requested_by of 257 characters", `{` + base + `,"requested_by":"` + strings.Repeat("a", 257) + `"}`, false},
	{"reason with an escaped pair", `{` + base + `,"reason":"\ud83d\ude00 ok"}`, true},
	{"empty reason", `{` + base + `,"reason":""}`, true},
	{"request id of 200 characters", `{"schema":"quiesce.job-request/v1","cluster":"orders","request_id":"` + strings.Repeat("r", 200) + `"}`, true},
	{"request id of 201 characters", `{"schema":"quiesce.job-request/v1","cluster":"orders","request_id":"` + strings.Repeat("r", 201) + `"}`, false},
	{"request id of 10 KB", `{"schema":"quiesce.job-request/v1","cluster":"orders","request_id":"` + strings.Repeat("r", 10<<10) + `"}`, false},
	{"request id with every allowed sign", `{"schema":"quiesce.job-request/v1","cluster":"orders","request_id":"a_.:@/+=-z"}`, true},
	{"request id with a space", `{"schema":"quiesce.job-request/v1","cluster":"orders","request_id":"a b"}`, false},
	{"request id with a newline at its end", `{"schema":"quiesce.job-request/v1","cluster":"orders","request_id":"ab\n"}`, false},
	{"empty request id", `{"schema":"quiesce.job-request/v1","cluster":"orders","request_id":""}`, false},
	{"missing request id", `{"schema":"quiesce.job-request/v1","cluster":"orders"}`, false},
	{"missing cluster", `{"schema":"quiesce.job-request/v1","request_id":"r"}`, false},
	{"missing schema", `{"request_id":"r","cluster":"orders"}`, false},
	{"other schema", `{"schema":"quiesce.job-request/v2","request_id":"r","cluster":"orders"}`, false},
	{"schema as a number", `{"schema":1,"request_id":"r","cluster":"orders"}`, false},
	{"upper-case cluster", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"Orders"}`, false},
	{"cluster of 64 characters", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"` + strings.Repeat("c", 64) + `"}`, false},
	{"cluster of 63 characters", `{"schema":"quiesce.job-request/v1","request_id":"r","cluster":"` + strings.Repeat("c", 63) + `"}`, true},
	{"empty policy", `{` + base + `,"policy":""}`, false},
	{"empty mode", `{` + base + `,"mode":""}`, false},
	{"empty tag", `{` + base + `,"tag":""}`, false},
	{"empty keyspaces", `{` + base + `,"keyspaces":[]}`, false},
	{"empty keyspace", `{` + base + `,"keyspaces":[""]}`, false},
	{"null policy", `{` + base + `,"policy":null}`, false},
	{"null keyspaces", `{` + base + `,"keyspaces":null}`, false},
	{"null deadline", `{` + base + `,"deadline":null}`, false},
	{"null reason", `{` + base + `,"reason":null}`, false},
	{"unknown mode", `{` + base + `,"mode":"fast"}`, false},
	{"tag with a semicolon", `{` + base + `,"tag":"a;b"}`, false},
	{"tag of 128 characters", `{` + base + `,"tag":"` + strings.Repeat("t", 128) + `"}`, true},
	{"tag of 129 characters", `{` + base + `,"tag":"` + strings.Repeat("t", 129) + `"}`, false},
	{"keyspace with a dash", `{` + base + `,"keyspaces":["a-b"]}`, false},
	{"keyspaces as a string", `{` + base + `,"keyspaces":"shop"}`, false},
	{"keyspace as a number", `{` + base + `,"keyspaces":[1]}`, false},
	{"misspelt field", `{` + base + `,"dedline":"2030-01-01T06:00:00Z"}`, false},
	{"field in other case", `{` + base + `,"Reason":"x"}`, false},
	{"deadline with a lower-case t", `{` + base + `,"deadline":"2030-01-01t06:00:00Z"}`, false},
	{"deadline with a comma", `{` + base + `,"deadline":"2030-01-01T06:00:00,5Z"}`, false},
	{"deadline with offset 24:00", `{` + base + `,"deadline":"2030-01-01T06:00:00+24:00"}`, false},
	{"deadline on 30 February", `{` + base + `,"deadline":"2030-02-30T06:00:00Z"}`, false},
	{"deadline without a zone", `{` + base + `,"deadline":"2030-01-01T06:00:00"}`, false},
	{"deadline as a number", `{` + base + `,"deadline":1893456000}`, false},
	{"array", `[{` + base + `}]`, false},
	{"null", `null`, false},
	{"string", `"r-1"`, false},
}

// The JSON Schema other systems validate with and DecodeJobRequest give
// the same answer for every request in the table.
func TestSchemaAndDecoderAgree(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	for _, tc := range agreementCases {
		byGo, goErr := messages.DecodeJobRequest([]byte(tc.body))
		bySchema, schemaErr := schemaAccepts(t, sch, tc.body)
		require.Equal(t, tc.accept, goErr == nil, "%s: DecodeJobRequest: %v", tc.desc, goErr)
		require.Equal(t, tc.accept, bySchema, "%s: JSON Schema: %v", tc.desc, schemaErr)
		if goErr == nil {
			require.NoError(t, byGo.Validate(), tc.desc)
		}
	}
}

// The fuzz corpus is run through both as well: whatever both can read, both
// judge alike.
func TestSchemaAndDecoderAgreeOnTheFuzzCorpus(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	entries, err := os.ReadDir("testdata/fuzz/FuzzDecodeJobRequest")
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	checked := 0
	for _, e := range entries {
		raw, err := os.ReadFile("testdata/fuzz/FuzzDecodeJobRequest/" + e.Name())
		require.NoError(t, err)
		body, ok := corpusBytes(string(raw))
		if !ok || !plainIJSON(body) {
			continue
		}
		_, goErr := messages.DecodeJobRequest(body)
		bySchema, schemaErr := schemaAccepts(t, sch, string(body))
		require.Equal(t, bySchema, goErr == nil, "%s %q: schema says %v (%v), decoder says %v", e.Name(), body, bySchema, schemaErr, goErr)
		checked++
	}
	t.Logf("%d corpus entries judged alike", checked)
}

// corpusBytes reads the one []byte value of a Go fuzz corpus file.
func corpusBytes(file string) ([]byte, bool) {
	lines := strings.Split(strings.TrimSpace(file), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
		return nil, false
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		return nil, false
	}
	return []byte(s), true
}

// plainIJSON reports whether data is plainly one I-JSON value (RFC 7493),
// which a schema validator reads as it is written: one valid JSON value and
// nothing after it, UTF-8, no \u escape (so no unpaired surrogate), no
// member named twice. What is not is the decoder's alone to refuse
// (TestDecoderRefusesWhatIsNotIJSON).
func plainIJSON(data []byte) bool {
	if !utf8.Valid(data) || !json.Valid(data) || bytes.Contains(data, []byte(`\u`)) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	type object struct{ names map[string]bool }
	var stack []*object
	expectName := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &object{names: map[string]bool{}})
				expectName = true
				continue
			case '[':
				stack = append(stack, nil)
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		case string:
			if expectName && len(stack) > 0 && stack[len(stack)-1] != nil {
				top := stack[len(stack)-1]
				if top.names[v] {
					return false
				}
				top.names[v] = true
				expectName = false
				continue
			}
		}
		expectName = len(stack) > 0 && stack[len(stack)-1] != nil
	}
}

// What is not I-JSON (RFC 7493) a schema validator cannot judge: it reads
// the last of two members of one name, replaces bytes that are not UTF-8,
// and stops reading at the end of the first value. DecodeJobRequest refuses
// all of it as malformed, never guessing which reading was meant.
func TestDecoderRefusesWhatIsNotIJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ desc, body string }{
		{"a stray closing brace", `{` + base + `}}`},
		{"a stray closing bracket", `{` + base + `}]`},
		{"a second object", `{` + base + `} {}`},
		{"a second value after white space", "{" + base + "}\n\t1"},
		{"a member named twice", `{` + base + `,"cluster":"billing"}`},
		{"a member named twice, once in another case", `{` + base + `,"Cluster":"billing"}`},
		{"a byte that is not UTF-8 in reason", "{" + base + ",\"reason\":\"nightly \xff\"}"},
		{"an overlong encoding in requested_by", "{" + base + ",\"requested_by\":\"\xc0\xaf\"}"},
		{"a lone high surrogate escape in reason", `{` + base + `,"reason":"\ud800"}`},
		{"a lone low surrogate escape in reason", `{` + base + `,"reason":"x\udc00y"}`},
		{"a high surrogate followed by no low one", `{` + base + `,"reason":"\ud83d\u0041"}`},
		{"an escaped backslash before a lone surrogate", `{` + base + `,"reason":"\\\ud800"}`},
	} {
		_, err := messages.DecodeJobRequest([]byte(tc.body))
		require.Error(t, err, tc.desc)
		require.True(t, errors.Is(err, messages.ErrMalformed), "%s: %v", tc.desc, err)
	}
	// An escaped backslash followed by the letters of an escape is text.
	r, err := messages.DecodeJobRequest([]byte(`{` + base + `,"reason":"C:\\ud800"}`))
	require.NoError(t, err)
	require.Equal(t, `C:\ud800`, r.Reason)
}

// The schema's patterns are the very patterns the code checks.
func TestSchemaPatternsAreTheCodes(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(schemaPath)
	require.NoError(t, err)
	var schema struct {
		Properties map[string]struct {
			Pattern string `json:"pattern"`
			Items   struct {
				Pattern string `json:"pattern"`
			} `json:"items"`
		} `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(data, &schema))
	for field, re := range messages.FieldPatterns {
		p, ok := schema.Properties[field]
		require.True(t, ok, field)
		got := p.Pattern
		if got == "" {
			got = p.Items.Pattern
		}
		require.Equal(t, re.String(), got, field)
	}
}
