package proc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Packages the suites build.
const (
	QuiescePkg    = "github.com/quiesce/quiesce/cmd/quiesce"
	NATSServerPkg = "github.com/nats-io/nats-server/v2"
)

// buildTimeout bounds one `go build`: a cold build cache on a loaded
// two-core machine takes minutes for nats-server.
const buildTimeout = 10 * time.Minute

// Build compiles the main package pkg into dir and returns the binary's
// path. The module's go.mod pins the version of a dependency's package, so
// nats-server is the very version the embedded tests use.
func Build(t testing.TB, dir, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("proc: the go command is needed to build %s: %v", pkg, err)
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		t.Fatalf("proc: %v", err)
	}
	name := filepath.Base(strings.TrimSuffix(pkg, "/v2"))
	out := filepath.Join(dir, name)
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("proc: go build %s: %v", pkg, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(buildTimeout):
		_ = cmd.Process.Kill()
		<-done
		err = fmt.Errorf("no result within %s", buildTimeout)
	}
	if err != nil {
		t.Fatalf("proc: go build %s: %v\n%s", pkg, err, stderr.String())
	}
	t.Logf("built %s in %s", name, time.Since(start).Round(100*time.Millisecond))
	return out
}

func moduleRoot(goBin string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the module (go env GOMOD is %q)", mod)
	}
	return filepath.Dir(mod), nil
}
