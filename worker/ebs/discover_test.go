package ebs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/config"
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
		sel    config.Discovery
		device string
		tags   map[string]string
		want   bool
	}{
		{desc: "no selector takes every data volume", device: "/dev/sdf", want: true},
		{desc: "device match", sel: config.Discovery{Devices: []string{"/dev/sdf"}}, device: "/dev/sdf", want: true},
		{desc: "device match without /dev/", sel: config.Discovery{Devices: []string{"xvdf"}}, device: "/dev/xvdf", want: true},
		{desc: "device mismatch", sel: config.Discovery{Devices: []string{"/dev/sdg"}}, device: "/dev/sdf", want: false},
		{desc: "tag match", sel: config.Discovery{VolumeTags: map[string]string{"role": "data"}}, device: "/dev/sdf", tags: map[string]string{"role": "data", "x": "y"}, want: true},
		{desc: "tag mismatch", sel: config.Discovery{VolumeTags: map[string]string{"role": "data"}}, device: "/dev/sdf", tags: map[string]string{"role": "logs"}, want: false},
		{desc: "device and tag must both hold", sel: config.Discovery{Devices: []string{"/dev/sdf"}, VolumeTags: map[string]string{"role": "data"}}, device: "/dev/sdf", tags: map[string]string{"role": "logs"}, want: false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, selected(&tt.sel, tt.device, tt.tags), tt.desc)
	}
}
