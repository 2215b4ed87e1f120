package drivers

import (
	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
)

func init() {
	RegisterSnapshotter("ebs", func(env Env, cl config.Cluster) (worker.Snapshotter, error) {
		return ebs.New(env.Ctx, cl, ebs.Options{OnAPIError: env.Hooks.EC2Error})
	})
	RegisterDiscoverer("ec2", func(env Env, _ config.Cluster) (Discoverer, error) {
		return ebs.NewDiscoverer(ebs.Options{OnAPIError: env.Hooks.EC2Error}), nil
	})
}

var _ worker.Copier = (*ebs.Driver)(nil)
