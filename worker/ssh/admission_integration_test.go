//go:build integration

package ssh_test

import (
	"context"
	"fmt"
	"net"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// Many nodes connected at once behind an sshd that takes few unauthenticated
// connections at a time (MaxStartups 4:30:8, dropping the rest): the same
// burst dialled all at once loses nodes, the executor's adaptive admission
// connects every one.
func TestSSHDManyNodesBehindMaxStartups(t *testing.T) {
	t.Parallel()
	const nodes = 100
	dir := t.TempDir()
	keyPath, key := sshtest.UserKey(t, dir)
	me, err := user.Current()
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	// Every 127.0.1.N reaches one sshd listening on all addresses; it
	// admits logins from loopback only.
	sshd := sshtest.StartSSHD(t, sshtest.SSHDOptions{Addr: fmt.Sprintf("0.0.0.0:%d", port), MaxStartups: 4,
		AuthorizedKeys: []gossh.PublicKey{key.PublicKey()}, Extra: []string{"AllowUsers " + me.Username + "@127.0.0.0/8"}})
	var known []string
	var ns []messages.Node
	for i := 1; i <= nodes; i++ {
		addr := fmt.Sprintf("127.0.1.%d:%d", i, port)
		known = append(known, sshtest.KnownHostsLine(addr, sshd.HostKey.PublicKey()))
		ns = append(ns, messages.Node{Name: fmt.Sprintf("n%d", i), Address: addr})
	}
	cfg := ssh.Config{User: sshd.User, IdentityFiles: []string{keyPath}, KnownHosts: []string{sshtest.WriteKnownHosts(t, dir, known...)},
		ConnectTimeout: 20 * time.Second, CommandTimeout: time.Minute}

	// The burst dialled at once, each node once, as a fixed-rate dialler
	// does: the server drops some.
	clientCfg := &gossh.ClientConfig{User: sshd.User, Auth: []gossh.AuthMethod{gossh.PublicKeys(key)},
		HostKeyCallback: gossh.FixedHostKey(sshd.HostKey.PublicKey()), Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	var droppedAtOnce atomic.Int64
	for _, n := range ns {
		wg.Go(func() {
			c, err := gossh.Dial("tcp", n.Address, clientCfg)
			if err != nil {
				droppedAtOnce.Add(1)
				return
			}
			_ = c.Close()
		})
	}
	wg.Wait()
	require.Contains(t, sshd.Log(), "past MaxStartups")
	require.Positive(t, droppedAtOnce.Load(), "the server dropped some of a burst dialled at once")

	// The executor admits handshakes as the server takes them: every node
	// connects.
	e, err := ssh.New(cfg, ssh.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()
	ctx := testCtx(t)
	var failed atomic.Int64
	for _, n := range ns {
		wg.Go(func() {
			if err := e.Check(ctx, n); err != nil {
				failed.Add(1)
				t.Logf("%s: %v", n.Name, err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d nodes dialled at once: %d dropped; through the admission: %d failed", nodes, droppedAtOnce.Load(), failed.Load())
	require.Zero(t, failed.Load(), "every node connected through the adaptive admission")
}

// Through OpenSSH, a command held by its armed session starts only when
// fired, and one withdrawn never starts.
func TestSSHDArmedCommand(t *testing.T) {
	t.Parallel()
	b := setupSSHD(t)
	e := b.executor(t, ssh.Options{})
	mark := filepath.Join(t.TempDir(), "ran")
	ready, fire := make(chan struct{}), make(chan struct{})
	got := make(chan error, 1)
	go func() {
		_, err := e.RunArmed(testCtx(t), b.node, nodetool.Command{Argv: []string{"touch", mark}}, func() { close(ready) }, fire)
		got <- err
	}()
	<-ready
	time.Sleep(200 * time.Millisecond) // time enough for a command that was not held to run
	require.NoFileExists(t, mark)
	close(fire)
	require.NoError(t, <-got, b.sshd.Log())
	require.FileExists(t, mark)

	withdrawn := filepath.Join(t.TempDir(), "withdrawn")
	ctx, cancel := context.WithCancel(testCtx(t))
	ready = make(chan struct{})
	go func() {
		_, err := e.RunArmed(ctx, b.node, nodetool.Command{Argv: []string{"touch", withdrawn}}, func() { close(ready) }, make(chan struct{}))
		got <- err
	}()
	<-ready
	cancel()
	require.Error(t, <-got)
	time.Sleep(200 * time.Millisecond)
	require.NoFileExists(t, withdrawn)
}
