package core

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/config"
)

// TestStageFailureEndsTheRun: a stage that stops on its own (here: every stage loses its NATS
// connection for good) closes Failed with the reason, and readiness reports it, so the
// caller ends the run instead of waiting for verdicts that cannot come.
func TestStageFailureEndsTheRun(t *testing.T) {
	c := scanConfig(t)
	c.HTTP.Addr = "127.0.0.1:0"
	st := startStack(t, c)
	ready := func() int {
		resp, err := http.Get("http://" + st.HTTPAddr() + "/readyz")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, ready())
	require.NoError(t, st.Err())

	st.NC.Close()
	select {
	case <-st.Failed():
	case <-time.After(time.Minute):
		t.Fatal("no stage reported the lost connection")
	}
	require.ErrorContains(t, st.Err(), "stage stopped")
	require.Equal(t, http.StatusServiceUnavailable, ready())
	_, err := st.WaitFinal(context.Background(), "v20260101T000000-0000000000000000", nil)
	require.Error(t, err, "a wait for a verdict ends with the failure")
}

// TestCloseStopsInReverseAndIsIdempotent: a graceful Close returns with every stage stopped
// (no goroutine of the stack left to leak), and a second Close is a no-op.
func TestCloseStopsInReverseAndIsIdempotent(t *testing.T) {
	st, err := Start(context.Background(), Options{Config: scanConfig(t), Roles: config.AllRoles})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() {
		st.Close(ctx)
		st.Close(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
	require.NoError(t, st.Err(), "stopping is not a failure")
}
