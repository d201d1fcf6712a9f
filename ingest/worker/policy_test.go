package worker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/ingest/submit"
	"github.com/lae-screening/lae/internal/natsembed"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestWorkerHoldsQueuedURLsToThePolicy: a work item published straight to the work queue (past
// the lae.submit responder and its check) is still held to the source policy when ingest opens
// it: the loopback server it names is never asked, and the video ends with the generic error.
func TestWorkerHoldsQueuedURLsToThePolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := natsembed.Start(ctx, natsembed.Options{Retention: laev1.Retention{Memory: true}})
	require.NoError(t, err)
	defer srv.Close()
	var hits atomic.Int32
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer web.Close()
	t.Setenv("no_proxy", "")
	p, err := source.NewPolicy(source.PolicyOptions{})
	require.NoError(t, err)
	defer p.Close()

	req := laev1.SubmitRequest{URL: web.URL + "/clip.mp4", VideoID: "bypass"}
	require.NoError(t, submit.Enqueue(ctx, srv.JS, &req), "Enqueue does not consult the policy")

	type end struct {
		eos *laev1.EndOfStream
		err error
	}
	ended := make(chan end, 1)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(wctx, srv.JS, Options{Pipeline: pipeline.Options{Source: source.Options{Policy: p}},
			Hooks: Hooks{Done: func(_ string, e *laev1.EndOfStream, err error) { ended <- end{e, err} }}})
	}()
	var e end
	select {
	case e = <-ended:
	case <-ctx.Done():
		t.Fatal("the video never ended")
	}
	stop()
	require.NoError(t, <-done)
	require.ErrorIs(t, e.err, source.ErrUnavailable)
	require.Equal(t, "open "+req.URL+": source refused or unavailable", e.eos.Failure)
	require.Zero(t, hits.Load(), "the refused server was never asked")
}
