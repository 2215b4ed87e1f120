package drivers

import (
	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/fs"
)

func init() {
	RegisterSnapshotter("fs", func(_ Env, cl config.Cluster) (worker.Snapshotter, error) {
		return fs.New(cl.FS.Store)
	})
}
