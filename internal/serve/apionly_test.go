package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/submit"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/core"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// startWorkers starts ingest, detector and aggregator on an embedded NATS server that listens
// on loopback, without any HTTP API: the deployment an API-only server joins. It returns the
// client configuration (URL and token) of that server.
func startWorkers(t *testing.T) config.NATS {
	t.Helper()
	c := startServerConfig(t)
	c.HTTP.Addr = ""
	st, err := core.Start(context.Background(), core.Options{Config: c, Roles: config.AllRoles, Name: "workers"})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st.Close(ctx)
	})
	client, err := config.Load(st.ClientConfig())
	require.NoError(t, err)
	return client.NATS
}

// TestAPIOnly runs `lae serve --api-only` on the NATS server of a separate set of stages: an
// upload is stored in the uploads bucket, scanned by the other stages from there, followed by
// its progress messages, played back with ranges, timed to its verdict and deleted; an upload
// that is gone before ingest reaches it ends in an error verdict that says so.
func TestAPIOnly(t *testing.T) {
	workers := startWorkers(t)
	s := startServer(t, func(o *Options) {
		o.Config.Serve.APIOnly, o.Config.Serve.KeepUploads = true, time.Hour
		o.Config.NATS.URLs, o.Config.NATS.Token = workers.URLs, workers.Token
	})
	require.Empty(t, s.NATSURL(), "no embedded server")
	code, _, _ := get(t, baseURL(s)+"/readyz")
	require.Equal(t, http.StatusOK, code)

	nc, err := nats.Connect(workers.URLs[0], nats.Token(workers.Token))
	require.NoError(t, err)
	defer nc.Close()
	progress := make(chan *nats.Msg, 1024)
	psub, err := nc.ChanSubscribe(laev1.SubjectProgressPrefix+"*", progress)
	require.NoError(t, err)
	defer func() { _ = psub.Unsubscribe() }()

	video := faceVideo(t, t.TempDir(), "clip.mp4", 40)
	content, err := os.ReadFile(video)
	require.NoError(t, err)
	code, body := upload(t, baseURL(s)+"/api/scans", "clip.mp4", bytes.NewReader(content), nil)
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var sub submitted
	require.NoError(t, json.Unmarshal(body, &sub))
	got := waitDone(t, s, sub.VideoID, 3*time.Minute)
	require.Contains(t, []string{laev1.VerdictFake, laev1.VerdictReal}, got.Verdict.Verdict, "error: %s", got.Error)
	require.Equal(t, laev1.UploadURL(sub.VideoID), got.Input, "scanned from the uploads bucket")
	require.Equal(t, "clip.mp4", got.Name)
	require.NotEmpty(t, got.Evidence)

	var seen laev1.IngestProgress
	for len(progress) > 0 {
		m := <-progress
		var p laev1.IngestProgress
		require.NoError(t, json.Unmarshal(m.Data, &p))
		if p.VideoID == sub.VideoID {
			seen = p
		}
	}
	require.Equal(t, sub.VideoID, seen.VideoID, "ingest published progress")
	require.InDelta(t, 1.6, seen.DurationSeconds, 0.05, "40 frames at 25 fps")
	sc, ok := s.tracker.get(sub.VideoID)
	require.True(t, ok)
	require.Positive(t, sc.CropsPublished)
	require.Equal(t, StateDone, sc.State)

	code, img, hdr := get(t, baseURL(s)+"/api/scans/"+sub.VideoID+"/evidence/0")
	require.Equal(t, http.StatusOK, code, "evidence read from the other stages' store")
	require.Equal(t, "image/jpeg", hdr.Get("Content-Type"))
	require.NotEmpty(t, img)

	code, media, _ := get(t, baseURL(s)+"/api/scans/"+sub.VideoID+"/media")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, content, media, "the upload played back whole")
	req, err := http.NewRequest(http.MethodGet, baseURL(s)+"/api/scans/"+sub.VideoID+"/media", nil)
	require.NoError(t, err)
	req.Header.Set("Range", "bytes=1000-1999")
	code, part, hdr := do(t, req)
	require.Equal(t, http.StatusPartialContent, code)
	require.Equal(t, content[1000:2000], part)
	require.Equal(t, "bytes 1000-1999/"+itoa(len(content)), hdr.Get("Content-Range"))

	_, metrics, _ := get(t, baseURL(s)+"/metrics")
	require.Contains(t, string(metrics), "lae_time_to_verdict_seconds_count 1\n",
		"the API times the verdicts of its submissions that other processes aggregate")

	req, err = http.NewRequest(http.MethodDelete, baseURL(s)+"/api/scans/"+sub.VideoID, nil)
	require.NoError(t, err)
	code, body, _ = do(t, req)
	require.Equal(t, http.StatusNoContent, code, "%s", body)
	require.False(t, slices.Contains(uploadObjects(t, s.uploads), sub.VideoID), "the upload went with its scan")
	code, _, _ = get(t, baseURL(s)+"/api/scans/"+sub.VideoID+"/media")
	require.Equal(t, http.StatusNotFound, code)

	t.Run("upload gone before ingest", func(t *testing.T) {
		gone := laev1.SubmitRequest{URL: laev1.UploadURL("never-uploaded"), VideoID: "never-uploaded"}
		require.NoError(t, submit.Enqueue(t.Context(), s.js, &gone))
		got := waitDone(t, s, gone.VideoID, time.Minute)
		require.Equal(t, laev1.VerdictError, got.Verdict.Verdict)
		require.True(t, strings.Contains(got.Error, "no longer in the uploads bucket"), "error: %s", got.Error)
	})
}
