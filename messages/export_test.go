package messages

import "regexp"

// FieldPatterns are the patterns each JobRequest field is checked against,
// for the test that holds the JSON Schema to them.
var FieldPatterns = map[string]*regexp.Regexp{
	"request_id": requestIDPattern,
	"cluster":    clusterPattern,
	"policy":     policyPattern,
	"tag":        tagPattern,
	"keyspaces":  keyspacePattern,
	"deadline":   deadlinePattern,
}
