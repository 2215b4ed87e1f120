//go:build chaos

package chaos

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
)

func TestMain(m *testing.M) {
	opts := append(testenv.LeakOptions(),
		// nats.go: an object-store Get abandoned when its server stopped
		// mid-transfer parks writing to a pipe no one reads.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats.go/jetstream.(*obs).Get.func2"),
		// nats-server: a server stopped while a stream was being restored
		// leaves its store's flush loop and timer registration behind.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
	)
	goleak.VerifyTestMain(m, opts...)
}
