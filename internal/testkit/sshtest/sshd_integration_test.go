//go:build integration

package sshtest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
)

func TestSSHDStarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, user := sshtest.UserKey(t, dir)
	sshd := sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
	client, err := gossh.Dial("tcp", sshd.Addr, &gossh.ClientConfig{
		User:            sshd.User,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(user)},
		HostKeyCallback: gossh.FixedHostKey(sshd.HostKey.PublicKey()),
		Timeout:         10 * time.Second,
	})
	require.NoError(t, err, sshd.Log())
	defer client.Close()
	sess, err := client.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	out, err := sess.Output("echo from-sshd")
	require.NoError(t, err)
	require.Equal(t, "from-sshd\n", string(out))
}
