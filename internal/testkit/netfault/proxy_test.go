package netfault

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo serves a line echo on a loopback port.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string, within time.Duration) (string, error) {
	t.Helper()
	_, err := c.Write([]byte(msg + "\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(within)))
	return r.ReadString('\n')
}

func TestProxyStallsResetsAndDelays(t *testing.T) {
	p := New(t, echo(t))
	c, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)

	got, err := roundTrip(t, c, r, "one", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "one\n", got)

	p.Stall()
	_, err = roundTrip(t, c, r, "two", 300*time.Millisecond)
	require.Error(t, err, "nothing passes a stalled proxy")
	p.Resume()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	got, err = r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "two\n", got, "what was held is forwarded on Resume")

	p.Delay(200 * time.Millisecond)
	start := time.Now()
	got, err = roundTrip(t, c, r, "three", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "three\n", got)
	require.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond, "each direction is delayed")
	p.Delay(0)

	p.Stall()
	p.Reset()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = r.ReadString('\n')
	require.Error(t, err, "a reset closes the client's connection, stalled or not")
	require.Equal(t, 1, p.Resets())
	p.Resume()

	c2, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err)
	defer c2.Close()
	got, err = roundTrip(t, c2, bufio.NewReader(c2), "four", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "four\n", got, "new connections work after a reset")
}
