package submit

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/internal/natsembed"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

func ptr[T any](v T) *T { return &v }

func TestSubmitRequestReply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := natsembed.Start(ctx, natsembed.Options{Retention: laev1.Retention{Memory: true}})
	require.NoError(t, err)
	defer srv.Close()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Serve(sctx, srv.NC, srv.JS, zap.NewNop()) }()
	// The responder is subscribed once a request gets through.
	require.Eventually(t, func() bool {
		_, err := Request(ctx, srv.NC, laev1.SubmitRequest{URL: "warmup.mp4", VideoID: "warmup"})
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)

	tests := []struct {
		name string
		req  laev1.SubmitRequest
		err  string
	}{
		{name: "file", req: laev1.SubmitRequest{URL: "/videos/a.mp4", Reference: "ref-1"}},
		{name: "rtsp with options", req: laev1.SubmitRequest{URL: "rtsp://cam/1", SampleFPS: ptr(2.0), MaxDurationSeconds: 60, Priority: 1}},
		{name: "given id", req: laev1.SubmitRequest{URL: "https://x/y.m3u8", VideoID: "my-video_1"}},
		{name: "empty url", req: laev1.SubmitRequest{}, err: "url is required"},
		{name: "unknown scheme", req: laev1.SubmitRequest{URL: "gopher://x"}, err: "unsupported URL scheme"},
		{name: "bad id", req: laev1.SubmitRequest{URL: "a.mp4", VideoID: "a.b"}, err: "invalid video id"},
		{name: "negative fps", req: laev1.SubmitRequest{URL: "a.mp4", SampleFPS: ptr(-1.0)}, err: "sample_fps"},
	}
	accepted := 1 // the warm-up
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := Request(ctx, srv.NC, tc.req)
			require.NoError(t, err)
			require.Equal(t, tc.req.Reference, reply.Reference)
			if tc.err != "" {
				require.Contains(t, reply.Error, tc.err)
				require.Empty(t, reply.VideoID)
				return
			}
			require.Empty(t, reply.Error)
			require.NoError(t, laev1.ValidateVideoID(reply.VideoID))
			if tc.req.VideoID != "" {
				require.Equal(t, tc.req.VideoID, reply.VideoID)
			}
			accepted++
		})
	}
	// Malformed JSON gets a clear rejection, not silence.
	msg, err := srv.NC.RequestWithContext(ctx, laev1.SubjectSubmit, []byte("{not json"))
	require.NoError(t, err)
	var reply laev1.SubmitReply
	require.NoError(t, json.Unmarshal(msg.Data, &reply))
	require.Contains(t, reply.Error, "malformed submit request")

	// Re-submitting a video id is de-duplicated by the work queue.
	_, err = Request(ctx, srv.NC, laev1.SubmitRequest{URL: "https://x/y.m3u8", VideoID: "my-video_1"})
	require.NoError(t, err)
	st, err := srv.JS.Stream(ctx, laev1.StreamIngest)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(accepted), info.State.Msgs)

	stop()
	require.NoError(t, <-done)
}

func FuzzHandle(f *testing.F) {
	f.Add([]byte(`{"url":"a.mp4"}`))
	f.Add([]byte(`{"url":"foo://x","sample_fps":-3}`))
	f.Add([]byte(`{"url":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req laev1.SubmitRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		if err := Validate(&req); err == nil {
			require.NoError(t, laev1.ValidateVideoID(req.VideoID))
			require.NotEmpty(t, req.URL)
		}
	})
}
