package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/natsembed"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

func TestIsLocal(t *testing.T) {
	for _, c := range []struct {
		url   string
		local bool
	}{
		{"/data/a.mp4", true},
		{"a.mp4", true},
		{"file:///data/a.mp4", true},
		{"FILE:///data/a.mp4", true},
		{"C:\\clips\\a.mp4", true},
		{"concat:a|b", true},
		{"", true},
		{"http://host/a.mp4", false},
		{"HTTPS://host/a.m3u8", false},
		{"rtsp://cam/stream", false},
		{"rtmps://x/y", false},
		{"srt://x:9000", false},
		{"udp://239.0.0.1:1234", false},
		{"tcp://x:1", false},
	} {
		require.Equal(t, c.local, isLocal(c.url), c.url)
	}
}

func TestStoredName(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"clip.mp4", "clip.mp4"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\me\My Clip (1).mp4`, "My_Clip_1_.mp4"},
		{".hidden.mp4", "hidden.mp4"},
		{"..", "upload"},
		{"", "upload"},
		{"日本語.mkv", "_.mkv"},
		{"/", "upload"},
		{"a/b/", "upload"},
		{strings.Repeat("x", 300) + ".mp4", strings.Repeat("x", 96) + ".mp4"},
	} {
		require.Equal(t, c.want, storedName(c.in), "storedName(%q)", c.in)
	}
}

// FuzzStoredName: whatever a client names its file, the stored name stays one safe path element.
func FuzzStoredName(f *testing.F) {
	for _, s := range []string{"clip.mp4", "../x", `a\..\b`, "\x00", ".", "...", "a/.", strings.Repeat("é", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := storedName(name)
		if got == "" || len(got) > 100 || strings.HasPrefix(got, ".") || strings.ContainsAny(got, `/\`) || unsafeName.MatchString(got) {
			t.Fatalf("storedName(%q) = %q", name, got)
		}
		if filepath.Base(got) != got {
			t.Fatalf("storedName(%q) = %q is not a base name", name, got)
		}
	})
}

func TestSetField(t *testing.T) {
	var req laev1.SubmitRequest
	for _, c := range []struct {
		field, val string
		ok         bool
	}{
		{"sample_fps", "2.5", true},
		{"sample_fps", "fast", false},
		{"max_duration_s", "30", true},
		{"max_duration_s", "1e", false},
		{"priority", "3", true},
		{"priority", "3.5", false},
		{"reference", "case 9", true},
		{"unknown", "ignored", true},
		{"sample_fps", "", true}, // empty = not given
	} {
		err := setField(&req, c.field, c.val)
		require.Equal(t, c.ok, err == nil, "%s=%q: %v", c.field, c.val, err)
	}
	require.Equal(t, 2.5, *req.SampleFPS)
	require.Equal(t, 30.0, req.MaxDurationSeconds)
	require.Equal(t, 3, req.Priority)
	require.Equal(t, "case 9", req.Reference)
}

func TestHubDropsSlowClient(t *testing.T) {
	h := newHub()
	slow, fast := h.subscribe(), h.subscribe()
	got := 0
	for i := 0; i < clientBuffer+10; i++ {
		h.publish("scan", map[string]int{"i": i})
		select { // the fast client keeps up
		case <-fast:
			got++
		default:
		}
	}
	require.Equal(t, clientBuffer+10, got)
	n := 0
	for range slow { // buffered events, then closed
		n++
	}
	require.Equal(t, clientBuffer, n)
	h.unsubscribe(slow) // already dropped: no double close
	h.unsubscribe(fast)
	_, open := <-fast
	require.False(t, open)
}

func TestTrackerProgressAndPrune(t *testing.T) {
	h := newHub()
	events := h.subscribe()
	tr := newTracker(h)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tr.now = func() time.Time { return now }
	fps := 2.0
	tr.submitted(laev1.SubmitRequest{VideoID: "v1", URL: "http://x/a.mp4", SampleFPS: &fps, MaxDurationSeconds: 10}, "a.mp4")
	require.Equal(t, "scan", (<-events).Name)
	for i := 1; i <= 5; i++ {
		tr.progress(laev1.IngestProgress{VideoID: "v1", CropsPublished: uint64(i), MediaSeconds: float64(i) / 2, DurationSeconds: 60})
	}
	tr.progress(laev1.IngestProgress{VideoID: "v1", CropsPublished: 4, MediaSeconds: 1}) // older, overtaken
	tr.scored("v1")
	require.Empty(t, events, "progress is batched until flush")
	tr.flush()
	ev := <-events
	var sc Scan
	require.NoError(t, json.Unmarshal(ev.Data, &sc))
	require.Equal(t, Scan{VideoID: "v1", Input: "http://x/a.mp4", Name: "a.mp4", State: StatePending, Stage: StageIngest,
		SubmittedAt: now, SampleFPS: &fps, CropsPublished: 5, CropsScored: 1, MediaSeconds: 2.5, DurationSeconds: 10,
		UpdatedAt: now}, sc, "a 60 s source read for max_duration_s 10")

	tr.ingestDone(&laev1.EndOfStream{VideoId: "v1", CropsPublished: 6, ExpectedSeconds: 10, ReadSeconds: 2.5})
	require.NoError(t, json.Unmarshal((<-events).Data, &sc))
	require.Equal(t, StageScoring, sc.Stage)
	require.Equal(t, uint64(6), sc.CropsPublished)
	require.Equal(t, 2.5, sc.MediaSeconds, "the end-of-stream's read time")
	require.Equal(t, 10.0, sc.DurationSeconds, "the end-of-stream's expected time")
	tr.progress(laev1.IngestProgress{VideoID: "v1", CropsPublished: 9, MediaSeconds: 9}) // late: the end-of-stream's counts are final
	got, _ := tr.get("v1")
	require.Equal(t, uint64(6), got.CropsPublished)
	require.Equal(t, 2.5, got.MediaSeconds)

	share := 0.25
	tr.verdict(laev1.Verdict{VideoID: "v1", Verdict: laev1.VerdictFake, Score: 0.9, Final: true, CropsScored: 6, ReadShare: &share})
	require.Equal(t, "verdict", (<-events).Name)
	require.NoError(t, json.Unmarshal((<-events).Data, &sc))
	require.Equal(t, StateDone, sc.State)
	require.Equal(t, StageFinished, sc.Stage)
	require.Equal(t, laev1.VerdictFake, sc.Verdict)
	require.True(t, sc.Partial, "an incomplete final verdict is partial")
	require.Equal(t, &share, sc.ReadShare)

	now = now.Add(keepDone / 2)
	tr.flush()
	_, ok := tr.get("v1")
	require.True(t, ok, "kept for a while after its verdict")
	now = now.Add(keepDone)
	tr.flush()
	_, ok = tr.get("v1")
	require.False(t, ok, "forgotten an hour after its verdict")

	tr.progress(laev1.IngestProgress{VideoID: "v2"}) // a scan that never finishes
	now = now.Add(keepStale - time.Minute)
	tr.flush()
	_, ok = tr.get("v2")
	require.True(t, ok)
	now = now.Add(2 * time.Minute)
	tr.flush()
	_, ok = tr.get("v2")
	require.False(t, ok, "a silent pending scan is dropped after a day")
}

// FuzzUpload feeds arbitrary multipart bodies to the upload reader: it never panics, a
// success stores exactly one object, the scan's, in the uploads bucket, a failure leaves none.
func FuzzUpload(f *testing.F) {
	seed := func(fields map[string]string, name, content string) []byte {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		_ = mw.SetBoundary("BOUNDARY")
		for k, v := range fields {
			_ = mw.WriteField(k, v)
		}
		if name != "" {
			w, _ := mw.CreateFormFile("file", name)
			_, _ = w.Write([]byte(content))
		}
		_ = mw.Close()
		return b.Bytes()
	}
	f.Add(seed(map[string]string{"sample_fps": "5"}, "a.mp4", "data"))
	f.Add(seed(nil, "../../x", "data"))
	f.Add(seed(map[string]string{"sample_fps": "x"}, "a.mp4", "data"))
	f.Add(seed(nil, "", ""))
	f.Add([]byte("--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nxx"))
	srv := testenv.StartNATS(f)
	uploads, err := srv.JS.ObjectStore(context.Background(), laev1.BucketUploads)
	require.NoError(f, err)
	s := &Server{o: Options{Config: config.Config{Serve: config.Serve{MaxUpload: 1 << 16}}}, uploads: uploads, log: zap.NewNop()}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := uploadObjects(t, uploads)
		r := httptest.NewRequest(http.MethodPost, "/api/scans", bytes.NewReader(body))
		r.Header.Set("Content-Type", "multipart/form-data; boundary=BOUNDARY")
		req, err := s.receiveUpload(httptest.NewRecorder(), r)
		added := slices.DeleteFunc(uploadObjects(t, uploads), func(n string) bool { return slices.Contains(before, n) })
		if err != nil {
			if len(added) != 0 {
				t.Fatalf("failed upload (%v) left %v", err, added)
			}
			return
		}
		if len(added) != 1 || laev1.UploadURL(added[0]) != req.URL || added[0] != req.VideoID {
			t.Fatalf("upload stored %v, submitted %q", added, req.URL)
		}
	})
}

// TestShutdownFinishesScan stops the server while a video is being scanned: the graceful stop
// lets ingest finish and the pipeline drain, so the final verdict is in the store when Shutdown
// returns, without any worker running afterwards.
func TestShutdownFinishesScan(t *testing.T) {
	store := t.TempDir()
	// A generous bound: on a loaded machine ingest must not be cut short, which would end the
	// scan in an "error" verdict and hide whether the drain works.
	s := startServer(t, func(o *Options) {
		o.Config.Store, o.Config.Retention.Memory, o.Config.ShutdownTimeout = store, false, 2*time.Minute
	})
	video := faceVideo(t, t.TempDir(), "clip.mp4", 50)
	f, err := os.Open(video)
	require.NoError(t, err)
	defer f.Close()
	code, body := upload(t, baseURL(s)+"/api/scans", "clip.mp4", f, nil)
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var sub submitted
	require.NoError(t, json.Unmarshal(body, &sub))
	require.Eventually(t, func() bool {
		sc, ok := s.tracker.get(sub.VideoID)
		return ok && sc.Stage != StageQueued
	}, time.Minute, 20*time.Millisecond, "ingest never started")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s.Shutdown(ctx)
	_, err = http.Get(baseURL(s) + "/healthz")
	require.Error(t, err, "the HTTP server is stopped")

	// Only the store now: no worker could have produced the verdict after Shutdown.
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: filepath.Join(store, "nats")})
	require.NoError(t, err)
	defer srv.Close()
	kv, err := srv.JS.KeyValue(ctx, laev1.BucketVerdicts)
	require.NoError(t, err)
	e, err := kv.Get(ctx, sub.VideoID)
	require.NoError(t, err, "final verdict stored before shutdown returned")
	var v laev1.Verdict
	require.NoError(t, json.Unmarshal(e.Value(), &v))
	require.True(t, v.Final)
	require.Contains(t, []string{laev1.VerdictFake, laev1.VerdictReal}, v.Verdict, "error: %s", v.Error)
	require.Equal(t, uint64(10), v.FramesSampled, "ingest ran to the end (50 frames at 5 fps)")
	cons, err := srv.JS.Consumer(ctx, laev1.StreamFaces, laev1.ConsumerDetector)
	require.NoError(t, err)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.NumPending+uint64(info.NumAckPending), "detector drained")
}

func TestTrackerLive(t *testing.T) {
	h := newHub()
	tr := newTracker(h)
	tr.submitted(laev1.SubmitRequest{VideoID: "l1", URL: "rtsp://cam/1"}, "")
	tr.submitted(laev1.SubmitRequest{VideoID: "f1", URL: "https://x/a.mp4"}, "")
	tr.progress(laev1.IngestProgress{VideoID: "l1", MediaSeconds: 30, DurationSeconds: 5})
	l, _ := tr.get("l1")
	f, _ := tr.get("f1")
	require.True(t, l.Live)
	require.Equal(t, 30.0, l.MediaSeconds)
	require.Zero(t, l.DurationSeconds, "a live stream has no duration")
	require.False(t, f.Live)
	tr.ingestDone(&laev1.EndOfStream{VideoId: "f1", Live: true})
	f, _ = tr.get("f1")
	require.True(t, f.Live, "ingest found no duration: live")
}
