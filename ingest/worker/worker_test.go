package worker

import (
	"context"
	"image"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/ingest/submit"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

func TestWorkerIngestsEachSubmissionOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := testenv.StartNATS(t)

	video := filepath.Join(t.TempDir(), "a.mp4")
	testenv.WriteClip(t, video, testenv.Clip{Width: 320, Height: 240, Frames: 10, FPS: 10,
		Size: 150, From: image.Pt(80, 40), To: image.Pt(80, 40), Face: testenv.Drawn, DrawnRes: 160, Seed: 1})

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
	_, err := srv.JS.Publish(ctx, laev1.SubjectIngestWork, []byte("garbage"))
	require.NoError(t, err)

	// Two ingest processes share the work queue: each video is taken by exactly one. Both
	// report to the same hooks, as two processes report to one Prometheus.
	var mu sync.Mutex
	ended := map[string]int{}                   // Done calls by video
	endedEOS := map[string]*laev1.EndOfStream{} // what Done got
	errs := map[string]int{}                    // Error calls by kind
	last := map[string]pipeline.Progress{}      // the last Progress by video
	var templateCalls atomic.Int64
	hooks := Hooks{
		Done: func(id string, e *laev1.EndOfStream, err error) {
			mu.Lock()
			defer mu.Unlock()
			ended[id]++
			endedEOS[id] = e
			if id == "three" {
				assert.Error(t, err, "a missing file fails")
			} else {
				assert.NoError(t, err)
			}
		},
		Error: func(kind string) { mu.Lock(); errs[kind]++; mu.Unlock() },
		Progress: func(id string, p pipeline.Progress) {
			mu.Lock()
			defer mu.Unlock()
			assert.GreaterOrEqual(t, p.FramesSampled, last[id].FramesSampled, "%s: progress only grows", id)
			last[id] = p
		},
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	for i := 0; i < 2; i++ {
		// The template's Progress is still called next to the hook.
		tmpl := pipeline.Options{Progress: func(pipeline.Progress) { templateCalls.Add(1) }}
		go func() {
			done <- Run(wctx, srv.JS, Options{Concurrency: 2, DefaultSampleFPS: 5, Pipeline: tmpl, Hooks: hooks})
		}()
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
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, map[string]int{"one": 1, "two": 1, "three": 1}, ended, "each video ended once across both processes")
	require.Equal(t, map[string]int{"malformed_submission": 1}, errs)
	for _, id := range []string{"one", "two"} {
		require.True(t, proto.Equal(eos[id], endedEOS[id]), "%s: Done gets the published end-of-stream", id)
		require.Equal(t, eos[id].FramesSampled, last[id].FramesSampled, "%s: the last progress is the final count", id)
	}
	require.NotContains(t, last, "three", "no frame of a missing file")
	require.Equal(t, int64(eos["one"].FramesSampled+eos["two"].FramesSampled), templateCalls.Load(),
		"the template's Progress is called once per sampled frame")
}

// With AbandonPullOnStop a stop does not wait for the idle pull request to run out (here a
// minute, far beyond the bound below).
func TestWorkerAbandonsIdlePullOnStop(t *testing.T) {
	srv := testenv.StartNATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, srv.JS, Options{AbandonPullOnStop: true, pollWait: time.Minute}) }()
	require.Eventually(t, func() bool {
		c, err := srv.JS.Consumer(context.Background(), laev1.StreamIngest, laev1.ConsumerIngest)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumWaiting > 0
	}, 20*time.Second, 10*time.Millisecond, "the worker waits on a pull request")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the worker waited out its pull request")
	}
}
