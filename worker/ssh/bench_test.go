package ssh_test

import (
	"testing"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// BenchmarkRun measures a command round trip (session, remote wrapper,
// /bin/true, exit status) on a shared connection against one that is dialled,
// handshaken and authenticated for every command.
func BenchmarkRun(b *testing.B) {
	bu := setup(b, sshtest.Options{})
	cmd := nodetool.Command{Argv: []string{"true"}}
	b.Run("reused", func(b *testing.B) {
		e := bu.executor(b, ssh.Options{})
		ctx := testCtx(b)
		if _, err := e.Run(ctx, bu.node, cmd); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			if _, err := e.Run(ctx, bu.node, cmd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh", func(b *testing.B) {
		ctx := testCtx(b)
		for b.Loop() {
			e, err := ssh.New(bu.cfg, ssh.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.Run(ctx, bu.node, cmd); err != nil {
				b.Fatal(err)
			}
			if err := e.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("connect-only", func(b *testing.B) {
		ctx := testCtx(b)
		for b.Loop() {
			e, err := ssh.New(bu.cfg, ssh.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Check(ctx, bu.node); err != nil {
				b.Fatal(err)
			}
			if err := e.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
