package submit

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/natsembed"
	"github.com/lae-screening/lae/internal/testenv"
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
	go func() { done <- Serve(sctx, srv.NC, srv.JS, zap.NewNop(), Options{}) }()
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
		{name: "huge url", req: laev1.SubmitRequest{URL: "https://x/" + strings.Repeat("a", MaxURLBytes)}, err: "url of"},
		{name: "huge reference", req: laev1.SubmitRequest{URL: "a.mp4", Reference: strings.Repeat("r", 900<<10)}, err: "reference of"},
		{name: "priority", req: laev1.SubmitRequest{URL: "a.mp4", Priority: 1 << 30}, err: "priority"},
	}
	accepted := 1 // the warm-up
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := Request(ctx, srv.NC, tc.req)
			require.NoError(t, err)
			if len(tc.req.Reference) <= MaxReferenceBytes {
				require.Equal(t, tc.req.Reference, reply.Reference)
			}
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

	// A video id in use is refused, never queued again: queued moments ago, with crops
	// archived, or with a verdict.
	_, err = srv.JS.Publish(ctx, laev1.FacesSubject("ingested-1"), []byte("crop"))
	require.NoError(t, err)
	kv, err := srv.JS.KeyValue(ctx, laev1.BucketVerdicts)
	require.NoError(t, err)
	_, err = kv.Put(ctx, "judged-1", []byte(`{"final":true}`))
	require.NoError(t, err)
	for _, id := range []string{"my-video_1", "ingested-1", "judged-1"} {
		reply, err := Request(ctx, srv.NC, laev1.SubmitRequest{URL: "https://x/other.mp4", VideoID: id})
		require.NoError(t, err)
		require.Contains(t, reply.Error, "video id already in use", id)
		require.Empty(t, reply.VideoID)
	}
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

func testPolicy(t *testing.T) *source.Policy {
	t.Helper()
	p, err := source.NewPolicy(source.PolicyOptions{
		Resolver: testenv.MapResolver{"cdn.test": "203.0.113.7", "metadata.test": "169.254.169.254", "intranet.test": "10.1.2.3"},
		Dial: func(_ context.Context, _, addr string) (net.Conn, error) {
			t.Errorf("a submission made the policy connect to %s", addr)
			return nil, errors.New("test: no connections")
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestAdmit(t *testing.T) {
	p := testPolicy(t)
	ctx := context.Background()
	tests := []struct {
		url  string
		want error // nil = accepted
		msg  string
	}{
		{url: "https://cdn.test/live/index.m3u8"},
		{url: "rtsp://cdn.test:554/cam"},
		{url: "/uploads/a.mp4"},      // local files are not the network policy's business
		{url: laev1.UploadURL("v1")}, // nor objects of the uploads bucket
		{url: "http://metadata.test/latest/meta-data/", want: source.ErrUnavailable, msg: "source refused or unavailable"},
		{url: "http://169.254.169.254/latest/meta-data/", want: source.ErrUnavailable, msg: "source refused or unavailable"},
		{url: "rtsp://intranet.test/cam", want: source.ErrUnavailable, msg: "source refused or unavailable"},
		{url: "http://127.0.0.1:6379/", want: source.ErrUnavailable, msg: "source refused or unavailable"},
		{url: "http://nowhere.test/", want: source.ErrUnavailable, msg: "source refused or unavailable"},
		{url: "tcp://cdn.test:22", want: source.ErrSchemeNotAllowed, msg: `"tcp" (allowed: http, https, rtsp, rtsps, rtmp, rtmps, srt)`},
		{url: "udp://cdn.test:1234", want: source.ErrSchemeNotAllowed, msg: `"udp"`},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			req := laev1.SubmitRequest{URL: tc.url}
			err := Admit(ctx, nil, &req, p)
			if tc.want == nil {
				require.NoError(t, err)
				require.NotEmpty(t, req.VideoID)
				return
			}
			require.ErrorIs(t, err, tc.want)
			require.Contains(t, err.Error(), tc.msg)
			// Without a policy (lae scan) the same URL is accepted.
			require.NoError(t, Admit(ctx, nil, &laev1.SubmitRequest{URL: tc.url}, nil))
		})
	}
	// An upload URL names an object by a video id, nothing else: anything more is a URL of an
	// unknown scheme, with or without a policy.
	for _, pol := range []*source.Policy{p, nil} {
		require.ErrorContains(t, Admit(ctx, nil, &laev1.SubmitRequest{URL: "upload:../etc/passwd"}, pol), `unsupported URL scheme "upload"`)
	}
	// Validation comes first: a malformed request is answered as such.
	require.ErrorContains(t, Admit(ctx, nil, &laev1.SubmitRequest{URL: "http://127.0.0.1/", SampleFPS: ptr(-1.0)}, p), "sample_fps")
}

// TestResponderHoldsSubmissionsToThePolicy: refused URLs get the generic answer on lae.submit
// and are never queued.
func TestResponderHoldsSubmissionsToThePolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := natsembed.Start(ctx, natsembed.Options{Retention: laev1.Retention{Memory: true}})
	require.NoError(t, err)
	defer srv.Close()
	stop, err := Listen(ctx, srv.NC, srv.JS, zap.NewNop(), Options{Policy: testPolicy(t)})
	require.NoError(t, err)
	defer func() { require.NoError(t, stop()) }()

	for _, u := range []string{"http://metadata.test/latest/meta-data/", "http://[::1]:8080/", "rtsp://10.0.0.8/cam"} {
		reply, err := Request(ctx, srv.NC, laev1.SubmitRequest{URL: u, Reference: "r"})
		require.NoError(t, err)
		require.Equal(t, "source refused or unavailable", reply.Error, u)
		require.Equal(t, "r", reply.Reference)
		require.Empty(t, reply.VideoID)
	}
	reply, err := Request(ctx, srv.NC, laev1.SubmitRequest{URL: "tcp://cdn.test:22"})
	require.NoError(t, err)
	require.Contains(t, reply.Error, "URL scheme not allowed")
	reply, err = Request(ctx, srv.NC, laev1.SubmitRequest{URL: "https://cdn.test/a.m3u8"})
	require.NoError(t, err)
	require.Empty(t, reply.Error)

	st, err := srv.JS.Stream(ctx, laev1.StreamIngest)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "only the accepted submission was queued")
}
