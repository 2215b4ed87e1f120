//go:build integration

package mototest

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStartAnswersAndStops(t *testing.T) {
	t.Parallel()
	s := Start(t)
	resp, err := http.Get(s.URL + "/moto-api/data.json")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s.stop()
	select {
	case <-s.exited:
	default:
		t.Fatal("moto_server still running after stop")
	}
}
