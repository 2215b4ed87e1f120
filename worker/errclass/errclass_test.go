package errclass_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quiesce/quiesce/worker/errclass"
)

type coded struct{ error }

func (coded) Code() string   { return "RequestLimitExceeded" }
func (coded) Stderr() string { return "stderr text" }

func TestClassesSurviveWrapping(t *testing.T) {
	t.Parallel()
	base := coded{errors.New("throttled")}
	p := fmt.Errorf("snapshot vol-1: %w", errclass.Permanent(base))
	require.True(t, errclass.IsPermanent(p))
	require.Equal(t, "RequestLimitExceeded", errclass.Code(p))
	require.Equal(t, "stderr text", errclass.Stderr(p))
	require.ErrorIs(t, p, base)

	r := fmt.Errorf("wrapped: %w", errclass.RetryAfter(base, 15*time.Second))
	d, ok := errclass.Delay(r)
	require.True(t, ok)
	require.Equal(t, 15*time.Second, d)
	require.False(t, errclass.IsPermanent(r))

	require.Nil(t, errclass.Permanent(nil))
	require.Nil(t, errclass.RetryAfter(nil, time.Second))
	_, ok = errclass.Delay(errors.New("plain"))
	require.False(t, ok)
	require.Empty(t, errclass.Code(errors.New("plain")))
}
