package drill_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.LeakOptions()...)
}
