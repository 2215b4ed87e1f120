package ebs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// policyDoc is the shape of an IAM policy document; Action and Resource may
// be a string or a list.
type policyDoc struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Action    stringList
		NotAction stringList
		Resource  stringList
		Condition map[string]map[string]stringList
	}
}

type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// TestIAMPolicy checks deploy/aws/iam-policy.json: every EC2 call the driver
// makes is allowed, nothing else is, and the tag conditions that keep
// quiesce to its own snapshots are in place.
func TestIAMPolicy(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "aws", "iam-policy.json"))
	require.NoError(t, err)
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var doc policyDoc
	require.NoError(t, dec.Decode(&doc))
	require.Equal(t, "2012-10-17", doc.Version)

	used := []string{
		"ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeSnapshots",
		"ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:CopySnapshot",
		"ec2:DeleteSnapshot", "ec2:CreateTags", "sts:AssumeRole",
		"ec2:CreateVolume", "ec2:AttachVolume", "ec2:DetachVolume", "ec2:DeleteVolume",
	}
	allowed := map[string]bool{}
	sids := map[string]bool{}
	for _, st := range doc.Statement {
		require.Equal(t, "Allow", st.Effect, st.Sid)
		require.NotEmpty(t, st.Sid)
		require.False(t, sids[st.Sid], "duplicate sid %s", st.Sid)
		sids[st.Sid] = true
		require.Empty(t, st.NotAction, "%s: NotAction grants too much", st.Sid)
		for _, a := range st.Action {
			require.NotContains(t, a, "*", "%s: wildcard action %s", st.Sid, a)
			require.Contains(t, used, a, "%s: %s is not a call quiesce makes", st.Sid, a)
			allowed[a] = true
		}
		for _, r := range st.Resource {
			if r == "*" {
				for _, a := range st.Action {
					require.True(t, strings.HasPrefix(a, "ec2:Describe"), "%s: %s on every resource", st.Sid, a)
				}
			}
		}

		cond := func(op, key string) []string { return st.Condition[op][key] }
		snapshotResource := slices.ContainsFunc(st.Resource, func(r string) bool { return strings.Contains(r, ":snapshot/") })
		for _, a := range st.Action {
			switch a {
			case "ec2:DeleteSnapshot":
				require.Equal(t, []string{"true"}, cond("StringEquals", "ec2:ResourceTag/quiesce:managed"),
					"%s: deletes only snapshots carrying the managed tag", st.Sid)
				require.Equal(t, []string{"arn:aws:ec2:*::snapshot/*"}, []string(st.Resource))
			case "ec2:CreateTags":
				want := []string{"CreateSnapshot", "CreateSnapshots", "CopySnapshot"}
				if slices.Contains([]string(st.Resource), "arn:aws:ec2:*:*:volume/*") {
					want = []string{"CreateVolume"}
				}
				require.ElementsMatch(t, want, cond("StringEquals", "ec2:CreateAction"), "%s: tags only while creating", st.Sid)
				require.Equal(t, []string{"true"}, cond("StringEquals", "aws:RequestTag/quiesce:managed"), "%s: tags only managed resources", st.Sid)
			case "ec2:CreateVolume":
				// From managed snapshots only, into managed volumes only.
				switch {
				case slices.Equal([]string(st.Resource), []string{"arn:aws:ec2:*::snapshot/*"}):
					require.Equal(t, []string{"true"}, cond("StringEquals", "ec2:ResourceTag/quiesce:managed"), st.Sid)
				case slices.Equal([]string(st.Resource), []string{"arn:aws:ec2:*:*:volume/*"}):
					require.Equal(t, []string{"true"}, cond("StringEquals", "aws:RequestTag/quiesce:managed"), st.Sid)
				default:
					t.Fatalf("%s: CreateVolume on %v", st.Sid, st.Resource)
				}
			case "ec2:DeleteVolume":
				require.Equal(t, []string{"arn:aws:ec2:*:*:volume/*"}, []string(st.Resource), st.Sid)
				require.Equal(t, []string{"true"}, cond("StringEquals", "ec2:ResourceTag/quiesce:managed"),
					"%s: deletes only volumes carrying the managed tag", st.Sid)
			case "ec2:AttachVolume", "ec2:DetachVolume":
				// Only managed volumes; any instance.
				switch {
				case slices.Equal([]string(st.Resource), []string{"arn:aws:ec2:*:*:volume/*"}):
					require.Equal(t, []string{"true"}, cond("StringEquals", "ec2:ResourceTag/quiesce:managed"), st.Sid)
				case slices.Equal([]string(st.Resource), []string{"arn:aws:ec2:*:*:instance/*"}):
				default:
					t.Fatalf("%s: %s on %v", st.Sid, a, st.Resource)
				}
			case "ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:CopySnapshot":
				if snapshotResource || a == "ec2:CopySnapshot" {
					require.Equal(t, []string{"true"}, cond("StringEquals", "aws:RequestTag/quiesce:managed"),
						"%s: %s creates only managed snapshots", st.Sid, a)
				}
			}
		}
	}
	for _, a := range used {
		require.True(t, allowed[a], "%s is not allowed", a)
	}
}
