package sshtest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/testkit/sshtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestServerRunsCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, user := sshtest.UserKey(t, dir)
	srv := sshtest.Start(t, sshtest.Options{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
	client, err := gossh.Dial("tcp", srv.Addr, &gossh.ClientConfig{
		User:            "test",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(user)},
		HostKeyCallback: gossh.FixedHostKey(srv.HostKey.PublicKey()),
		Timeout:         10 * time.Second,
	})
	require.NoError(t, err)
	defer client.Close()
	sess, err := client.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	out, err := sess.Output("echo hello; exit 0")
	require.NoError(t, err)
	require.Equal(t, "hello\n", string(out))

	sess2, err := client.NewSession()
	require.NoError(t, err)
	defer sess2.Close()
	err = sess2.Run("exit 7")
	var ee *gossh.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 7, ee.ExitStatus())
	require.EqualValues(t, 1, srv.Handshakes())
	require.EqualValues(t, 2, srv.Sessions())
}

func TestKnownHostsName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "[127.0.0.1]:2222", sshtest.KnownHostsName("127.0.0.1:2222"))
	require.Equal(t, "10.0.0.1", sshtest.KnownHostsName("10.0.0.1:22"))
}
