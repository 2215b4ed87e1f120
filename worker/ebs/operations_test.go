package ebs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// opName finds the EC2 operation each error of the driver names.
var opName = regexp.MustCompile(`(?:classify|permanentf)\("([A-Za-z]+)"|Op: +"([A-Za-z]+)"`)

// Operations lists every operation the driver's errors name, so a process
// starts an error series at zero for each EC2 call it can make.
func TestOperationsListsEveryCall(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range opName.FindAllStringSubmatch(string(src), -1) {
			seen[m[1]+m[2]] = true
		}
	}
	require.NotEmpty(t, seen)
	for op := range seen {
		require.Contains(t, Operations, op, "an error names %s, which Operations does not list", op)
	}
	for _, op := range Operations {
		require.True(t, seen[op], "Operations lists %s, which no error names", op)
	}
}
