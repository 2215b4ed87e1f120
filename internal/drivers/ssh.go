package drivers

import (
	"errors"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

func init() {
	RegisterRunner("ssh", func(env Env, cl config.Cluster) (nodetool.Runner, io.Closer, error) {
		opts := ssh.Options{OnError: env.Hooks.SSHError, Logger: &env.Log}
		if cl.SSH.TrustOnFirstUse {
			// Pins are shared by the whole fleet through a KV bucket, so
			// every worker trusts the same first key.
			js, ok := env.Extras["nats.jetstream"].(jetstream.JetStream)
			if !ok {
				return nil, nil, errors.New("trust_on_first_use needs a JetStream connection for the pinned keys")
			}
			replicas, _ := env.Extras["nats.replicas"].(int)
			if replicas == 0 {
				replicas = 1
			}
			ks, err := ssh.OpenKVKeyStore(env.Ctx, js, replicas)
			if err != nil {
				return nil, nil, err
			}
			opts.KeyStore = ks
		}
		ex, err := ssh.New(cl.SSH, opts)
		if err != nil {
			return nil, nil, err
		}
		return ex, ex, nil
	})
}
