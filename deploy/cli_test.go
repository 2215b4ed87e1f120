package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/internal/cli"
)

// acceptsArgs runs the real command line with args and --help: cobra parses
// every flag before it prints help, so an unknown subcommand or flag fails.
func acceptsArgs(t *testing.T, where string, args []string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(append(append([]string{}, args...), "--help"), &out, &errb)
	require.Zero(t, code, "%s: quiesce %s: %s", where, strings.Join(args, " "), errb.String())
}

// The subcommands and flags the manifests, units and image pass are ones the
// binary has.
func TestDeployedCommandLinesParse(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	require.NotZero(t, cli.Main([]string{"worker", "--no-such-flag", "--help"}, &out, &errb), "the check must catch an unknown flag")

	m := loadManifests(t)
	for name, d := range m.deployments {
		acceptsArgs(t, name, d.Spec.Template.Spec.Containers[0].Args)
	}

	units, err := filepath.Glob(filepath.Join("systemd", "quiesce-*.service"))
	require.NoError(t, err)
	for _, u := range units {
		data, err := os.ReadFile(u)
		require.NoError(t, err)
		line := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/quiesce (.*)$`).FindSubmatch(data)
		require.NotNil(t, line, u)
		acceptsArgs(t, u, strings.Fields(string(line[1])))
	}

	data, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	cmd := regexp.MustCompile(`(?m)^CMD (\[.*\])$`).FindSubmatch(data)
	require.NotNil(t, cmd, "Dockerfile CMD")
	var args []string
	require.NoError(t, json.Unmarshal(cmd[1], &args))
	acceptsArgs(t, "Dockerfile", args)
}
