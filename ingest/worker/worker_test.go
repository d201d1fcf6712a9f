package worker

import (
	"context"
	"image"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/ingest/submit"
	"github.com/lae-screening/lae/ingest/testvideo"
	"github.com/lae-screening/lae/internal/metrics"
	"github.com/lae-screening/lae/internal/natsembed"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

func TestWorkerIngestsEachSubmissionOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := natsembed.Start(ctx, natsembed.Options{Retention: laev1.Retention{Memory: true}})
	require.NoError(t, err)
	defer srv.Close()

	face := testvideo.SyntheticFace(160, 1)
	defer face.Close()
	mats, _, err := testvideo.FaceVideo(testvideo.VideoSpec{Width: 320, Height: 240, Frames: 10, Background: testvideo.Noise,
		Faces: []testvideo.Placement{{Face: face, Size: 150, From: image.Pt(80, 40), To: image.Pt(80, 40)}}})
	require.NoError(t, err)
	video := filepath.Join(t.TempDir(), "a.mp4")
	require.NoError(t, testvideo.Write(ctx, video, mats, 10))
	testvideo.CloseFrames(mats)

	fps := 0.0
	reqs := []laev1.SubmitRequest{
		{URL: video, VideoID: "one", SampleFPS: &fps},
		{URL: video, VideoID: "two"},
		{URL: filepath.Join(t.TempDir(), "missing.mp4"), VideoID: "three"},
	}
	for i := range reqs {
		require.NoError(t, submit.Enqueue(ctx, srv.JS, &reqs[i]))
	}
	// A malformed work item (not JSON) must be terminated, not retried forever.
	_, err = srv.JS.Publish(ctx, laev1.SubjectIngestWork, []byte("garbage"))
	require.NoError(t, err)

	// Two ingest processes share the work queue: each video is taken by exactly one.
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	ms := []*metrics.Metrics{metrics.New(prometheus.NewRegistry()), metrics.New(prometheus.NewRegistry())}
	for _, m := range ms {
		go func() { done <- Run(wctx, srv.JS, Options{Concurrency: 2, DefaultSampleFPS: 5, Metrics: m}) }()
	}

	eos := map[string]*laev1.EndOfStream{}
	st, err := srv.JS.Stream(ctx, laev1.StreamScores)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		for _, r := range reqs {
			m, err := st.GetLastMsgForSubject(ctx, laev1.EOSSubject(r.VideoID))
			if err != nil {
				return false
			}
			var e laev1.EndOfStream
			require.NoError(t, proto.Unmarshal(m.Data, &e))
			eos[r.VideoID] = &e
		}
		return true
	}, time.Minute, 50*time.Millisecond)
	require.Equal(t, uint64(10), eos["one"].FramesSampled, "sample_fps 0 from the submission: every frame")
	require.Equal(t, uint64(5), eos["two"].FramesSampled, "default 5 fps over 1 s")
	require.Empty(t, eos["one"].Failure)
	require.Contains(t, eos["three"].Failure, "missing.mp4")

	// Every work item is acknowledged or terminated: nothing pending.
	c, err := srv.JS.Consumer(ctx, laev1.StreamIngest, laev1.ConsumerIngest)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, 30*time.Second, 50*time.Millisecond)
	ingestStream, err := srv.JS.Stream(ctx, laev1.StreamIngest)
	require.NoError(t, err)
	info, err := ingestStream.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs, "work queue emptied")

	stop()
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	ingested := 0.0
	for _, m := range ms {
		for _, outcome := range []string{"ok", "failed"} {
			ingested += testutil.ToFloat64(m.VideosIngested.WithLabelValues(outcome))
		}
	}
	require.Equal(t, float64(len(reqs)), ingested, "each submission ingested once across both processes")
}
