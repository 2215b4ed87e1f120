// Package deploy_test checks the deployment files against the code: every
// metric the dashboard and the alert rules use is one quiesce exports, the
// alert rules pass promtool, the Kubernetes manifests decode strictly into
// their API types and agree with each other, and the NATS and systemd files
// are well-formed.
package deploy_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
