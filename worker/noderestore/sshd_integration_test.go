//go:build integration

package noderestore_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/worker/noderestore"
	"github.com/quiesce/quiesce/worker/nodetool"
	"github.com/quiesce/quiesce/worker/ssh"
)

// The node steps through a real OpenSSH sshd: the scripts and their
// arguments reach the remote shell word by word, quoted, whatever they hold.
func TestPrepareOverRealSSHD(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath, user := sshtest.UserKey(t, dir)
	sshd := sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
	e, err := ssh.New(ssh.Config{User: sshd.User, IdentityFiles: []string{keyPath},
		KnownHosts:     []string{sshtest.WriteKnownHosts(t, dir, sshd.KnownHosts())},
		ConnectTimeout: 30 * time.Second, CommandTimeout: 2 * time.Minute}, ssh.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })

	n := newNode(t)
	layout(t, n)
	// A table directory whose file names hold what a shell would act on,
	// were they not quoted: the step would exit 7.
	odd := filepath.Join(n.data, "shop", "odd-1234")
	write(t, filepath.Join(odd, "snapshots", "T", "nb-1-big-SAI+aa+`exit 7`;exit 7;+Meta.db"), "quoted")
	write(t, filepath.Join(odd, "it's-live.db"), "displaced")

	svc := &fakeService{}
	r := noderestore.New(e, nodetool.New(e, nodetool.Settings{Base: []string{"false"}}), svc, noderestore.Settings{})
	msg := n.msg()
	msg.Address = sshd.Addr
	spec := noderestore.Spec{RestoreID: "r-ssh", Target: noderestore.InPlace, Tag: "T", Address: "127.0.0.1"}
	rep, err := r.Prepare(t.Context(), msg, spec)
	require.NoError(t, err, sshd.Log())
	require.Equal(t, 5, rep.Files)
	require.ElementsMatch(t, []string{"nb-1-big-SAI+aa+`exit 7`;exit 7;+Meta.db", "snapshots/T/nb-1-big-SAI+aa+`exit 7`;exit 7;+Meta.db",
		"snapshots/quiesce-displaced-r-ssh/it's-live.db"}, files(t, odd))
	require.Equal(t, []string{".quiesce-displaced-r-ssh/CommitLog-7-1.log"}, files(t, n.commitlog))
	progress, err := os.ReadFile(noderestore.ProgressPath(*msg.Dirs, "r-ssh"))
	require.NoError(t, err)
	require.Equal(t, "restore r-ssh tag T target in-place\nprepared\n", string(progress))

	rep, err = r.Prepare(t.Context(), msg, spec)
	require.NoError(t, err)
	require.True(t, rep.Again)
}
