package ebs

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/messages"
)

func TestNodeName(t *testing.T) {
	t.Parallel()
	tests := []struct{ tag, want string }{
		{"cass-a-1", "cass-a-1"},
		{"cass a 1", "cass-a-1"},
		{"prod/cassandra.1", "prod-cassandra-1"},
		{"  -leading", "leading"},
		{"trailing.", "trailing"},
		{"$(rm -rf /)", "rm--rf"},
		{"ünïcode", "n-code"},
		{"", ""},
		{"...", ""},
		{string(make([]byte, 200)), ""},
	}
	for _, tt := range tests {
		got := NodeName(tt.tag)
		require.Equal(t, tt.want, got, "tag %q", tt.tag)
		if got != "" {
			require.NoError(t, messages.ValidateTarget("name", got))
		}
	}
	long := NodeName(stringOf('a', 300))
	require.Len(t, long, 128)
}

func stringOf(c byte, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func TestSelected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc   string
		sel    Discovery
		device string
		tags   map[string]string
		want   bool
	}{
		{desc: "no selector takes every data volume", device: "/dev/sdf", want: true},
		{desc: "device match", sel: Discovery{Devices: []string{"/dev/sdf"}}, device: "/dev/sdf", want: true},
		{desc: "device match without /dev/", sel: Discovery{Devices: []string{"xvdf"}}, device: "/dev/xvdf", want: true},
		{desc: "device mismatch", sel: Discovery{Devices: []string{"/dev/sdg"}}, device: "/dev/sdf", want: false},
		{desc: "tag match", sel: Discovery{VolumeTags: map[string]string{"role": "data"}}, device: "/dev/sdf", tags: map[string]string{"role": "data", "x": "y"}, want: true},
		{desc: "tag mismatch", sel: Discovery{VolumeTags: map[string]string{"role": "data"}}, device: "/dev/sdf", tags: map[string]string{"role": "logs"}, want: false},
		{desc: "device and tag must both hold", sel: Discovery{Devices: []string{"/dev/sdf"}, VolumeTags: map[string]string{"role": "data"}}, device: "/dev/sdf", tags: map[string]string{"role": "logs"}, want: false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, selected(tt.sel, tt.device, tt.tags), tt.desc)
	}
}

func TestWithVolumeTags(t *testing.T) {
	t.Parallel()
	ours := map[string]string{messages.TagManaged: "true", messages.TagName: "quiesce c1 n1 job"}
	got := withVolumeTags(ours, map[string]string{"Name": "theirs", "team": "db", "aws:cloudformation:stack-name": "x"})
	require.Equal(t, map[string]string{messages.TagManaged: "true", messages.TagName: "quiesce c1 n1 job", "team": "db"}, got)

	many := map[string]string{}
	for i := range 60 {
		many[fmt.Sprintf("k%02d", i)] = "v"
	}
	got = withVolumeTags(ours, many)
	require.Len(t, got, maxTags)
	require.Equal(t, "true", got[messages.TagManaged], "quiesce's tags always fit")
	require.Contains(t, got, "k00")
	require.NotContains(t, got, "k59")
}
