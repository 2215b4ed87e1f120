package drivers

import (
	"io"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/worker/local"
	"github.com/quiesce/quiesce/worker/nodetool"
)

func init() {
	RegisterRunner("local", func(_ Env, _ config.Cluster) (nodetool.Runner, io.Closer, error) {
		return &local.Runner{}, nil, nil
	})
}
