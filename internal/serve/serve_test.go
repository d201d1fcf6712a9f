package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image/jpeg"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/aggregator/evidence"
	"github.com/lae-screening/lae/ingest/submit"
	"github.com/lae-screening/lae/internal/config"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	ID   string
	Name string
	Data string
}

// subscribeEvents opens /api/events and delivers its events until the test ends.
func subscribeEvents(t *testing.T, s *Server) <-chan sseEvent {
	t.Helper()
	ch, _ := subscribeEventsFrom(t, s, "")
	return ch
}

// subscribeEventsFrom opens /api/events resuming after lastID ("" = from now); cancel closes
// the stream (a client going away).
func subscribeEventsFrom(t *testing.T, s *Server, lastID string) (<-chan sseEvent, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL(s)+"/api/events", nil)
	require.NoError(t, err)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	out := make(chan sseEvent, 1024)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Name != "" {
					select {
					case out <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.Name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.Data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return out, cancel
}

// TestServeEndToEnd uploads a video over HTTP, follows it on the event stream to its final
// verdict, and reads every route of the API about it.
func TestServeEndToEnd(t *testing.T) {
	s := startServer(t, nil)
	events := subscribeEvents(t, s)
	video := faceVideo(t, t.TempDir(), "interview <1>.mp4", 40)
	f, err := os.Open(video)
	require.NoError(t, err)
	defer f.Close()

	code, body := upload(t, baseURL(s)+"/api/scans", `C:\clips\interview <1>.mp4`, f, map[string]string{"sample_fps": "10", "reference": "case-7"})
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var sub submitted
	require.NoError(t, json.Unmarshal(body, &sub))
	require.NoError(t, laev1.ValidateVideoID(sub.VideoID))
	require.Equal(t, "case-7", sub.Reference)
	id := sub.VideoID

	// Right after the submission the scan is known and pending.
	code, body, _ = get(t, baseURL(s)+"/api/scans/"+id)
	require.Equal(t, http.StatusOK, code)
	var early map[string]any
	require.NoError(t, json.Unmarshal(body, &early))
	if early["state"] != StateDone { // a fast machine may already be done
		require.Equal(t, StatePending, early["state"])
	}

	// The event stream carries the scan's progress and then its final verdict.
	var final laev1.Verdict
	sawScan := false
	deadline := time.After(3 * time.Minute)
	for final.VideoID == "" {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "event stream ended")
			switch ev.Name {
			case "scan":
				var sc Scan
				require.NoError(t, json.Unmarshal([]byte(ev.Data), &sc))
				if sc.VideoID == id {
					sawScan = true
					require.Equal(t, "interview <1>.mp4", sc.Name)
				}
			case "verdict":
				var v laev1.Verdict
				require.NoError(t, json.Unmarshal([]byte(ev.Data), &v))
				if v.VideoID == id && v.Final {
					final = v
				}
			}
		case <-deadline:
			t.Fatal("no final verdict event within 3 minutes")
		}
	}
	require.True(t, sawScan, "scan progress events")
	require.Contains(t, []string{laev1.VerdictFake, laev1.VerdictReal}, final.Verdict, "error: %s", final.Error)
	require.NotEmpty(t, final.Evidence)
	// 40 frames at 25 fps sampled at the submission's 10 fps, not the server's 5.
	require.Equal(t, uint64(16), final.FramesSampled)

	// GET /api/scans/{id}: the same verdict, done.
	got := waitDone(t, s, id, 10*time.Second)
	require.Equal(t, final.Verdict, got.Verdict.Verdict)
	require.Equal(t, final.Score, got.Score)
	require.Equal(t, "interview <1>.mp4", got.Name)
	require.Len(t, got.Evidence, len(final.Evidence))
	// The upload was stored as the scan's object, with a safe name, and submitted by reference.
	require.Equal(t, laev1.UploadURL(id), got.Input)
	info, err := s.uploads.GetInfo(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, "interview_1_.mp4", info.Metadata[laev1.UploadNameKey])

	// Evidence images are the composite JPEGs (crop, heatmap, legend, frame thumbnail).
	for n := range final.Evidence {
		code, img, hdr := get(t, baseURL(s)+"/api/scans/"+id+"/evidence/"+itoa(n))
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "image/jpeg", hdr.Get("Content-Type"))
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(img))
		require.NoError(t, err)
		require.Equal(t, evidence.Width, cfg.Width)
		require.Equal(t, evidence.Height, cfg.Height)
	}
	code, _, _ = get(t, baseURL(s)+"/api/scans/"+id+"/evidence/"+itoa(len(final.Evidence)))
	require.Equal(t, http.StatusNotFound, code)
	code, _, _ = get(t, baseURL(s)+"/api/scans/"+id+"/evidence/-1")
	require.Equal(t, http.StatusBadRequest, code)

	// The report is the self-contained HTML of the same verdict, with the images inline.
	code, rep, hdr := get(t, baseURL(s)+"/api/scans/"+id+"/report")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, hdr.Get("Content-Type"), "text/html")
	require.Contains(t, hdr.Get("Content-Security-Policy"), "default-src 'none'")
	html := string(rep)
	require.Contains(t, html, `id="verdict">`+final.Verdict+`<`)
	require.Equal(t, len(final.Evidence), strings.Count(html, `src="data:image/jpeg;base64,`))
	require.Contains(t, html, "interview &lt;1&gt;.mp4 (uploaded)")
	require.Contains(t, html, "10 frames/s")
	require.Contains(t, html, `id="timeline"`)

	// The list has it, done.
	code, body, _ = get(t, baseURL(s)+"/api/scans")
	require.Equal(t, http.StatusOK, code)
	var list struct{ Scans []Scan }
	require.NoError(t, json.Unmarshal(body, &list))
	require.NotEmpty(t, list.Scans)
	require.Equal(t, id, list.Scans[0].VideoID)
	require.Equal(t, StateDone, list.Scans[0].State)
	require.Equal(t, final.Verdict, list.Scans[0].Verdict)

	// History: one final revision; revision 0 is addressable, revision 5 is not.
	code, body, _ = get(t, baseURL(s)+"/api/scans/"+id+"/history")
	require.Equal(t, http.StatusOK, code)
	var hist []laev1.Verdict
	require.NoError(t, json.Unmarshal(body, &hist))
	require.Len(t, hist, 1)
	code, _, _ = get(t, baseURL(s)+"/api/scans/"+id+"?revision=0")
	require.Equal(t, http.StatusOK, code)
	code, _, _ = get(t, baseURL(s)+"/api/scans/"+id+"?revision=5")
	require.Equal(t, http.StatusNotFound, code)
	code, _, _ = get(t, baseURL(s)+"/api/scans/"+id+"?revision=x")
	require.Equal(t, http.StatusBadRequest, code)

	// Unknown and malformed ids.
	for _, c := range []struct {
		path string
		code int
	}{
		{"/api/scans/v-does-not-exist", http.StatusNotFound},
		{"/api/scans/v-does-not-exist/report", http.StatusNotFound},
		{"/api/scans/v-does-not-exist/evidence/0", http.StatusNotFound},
		{"/api/scans/v-does-not-exist/history", http.StatusNotFound},
		{"/api/scans/bad.id", http.StatusBadRequest},
		{"/api/scans/bad.id/report", http.StatusBadRequest},
	} {
		code, _, _ := get(t, baseURL(s)+c.path)
		require.Equal(t, c.code, code, c.path)
	}

	// Operations endpoints share the server, and the page is served with its lockdown headers.
	for _, p := range []string{"/healthz", "/readyz"} {
		code, _, _ := get(t, baseURL(s)+p)
		require.Equal(t, http.StatusOK, code, p)
	}
	code, body, _ = get(t, baseURL(s)+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), `lae_verdicts_total{verdict="`+final.Verdict+`"} 1`)
	code, body, hdr = get(t, baseURL(s)+"/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), `<form id="submit-form"`)
	require.Contains(t, hdr.Get("Content-Security-Policy"), "default-src 'self'")
	code, body, _ = get(t, baseURL(s)+"/assets/app.js")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), "EventSource")
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestExternalNATSClient submits over the embedded server's TCP port, as `lae submit` does, and
// follows the verdict subject, as `lae watch` does; the scan shows up in the HTTP list too.
func TestExternalNATSClient(t *testing.T) {
	s := startServer(t, nil)
	require.NotEmpty(t, s.NATSURL())
	// The port requires the instance's token: an anonymous local process gets nothing.
	_, err := nats.Connect(s.NATSURL())
	require.ErrorContains(t, err, "Authorization Violation")
	cfg, err := config.Load(s.ClientConfig())
	require.NoError(t, err, "the client config in the store works as lae submit --config")
	st, err := os.Stat(s.ClientConfig())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "only the owner reads the token")
	require.Equal(t, []string{s.NATSURL()}, cfg.NATS.URLs)
	nc, err := nats.Connect(s.NATSURL(), nats.Token(cfg.NATS.Token))
	require.NoError(t, err)
	defer nc.Close()
	verdicts := make(chan *nats.Msg, 64)
	vsub, err := nc.ChanSubscribe(laev1.SubjectVerdictsPrefix+"*", verdicts)
	require.NoError(t, err)
	defer func() { _ = vsub.Unsubscribe() }()

	video := faceVideo(t, t.TempDir(), "clip.mp4", 20)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reply, err := submit.Request(ctx, nc, laev1.SubmitRequest{URL: video, Reference: "ext-1"})
	require.NoError(t, err)
	require.Empty(t, reply.Error)
	require.Equal(t, "ext-1", reply.Reference)

	// The scan is listed (seen on the work queue) before its verdict.
	require.Eventually(t, func() bool {
		_, body, _ := get(t, baseURL(s)+"/api/scans")
		return strings.Contains(string(body), reply.VideoID)
	}, 30*time.Second, 100*time.Millisecond)

	for {
		select {
		case m := <-verdicts:
			var v laev1.Verdict
			require.NoError(t, json.Unmarshal(m.Data, &v))
			if v.VideoID != reply.VideoID || !v.Final {
				continue
			}
			require.Equal(t, video, v.Input)
			got := waitDone(t, s, reply.VideoID, 10*time.Second)
			require.Equal(t, v.Verdict, got.Verdict.Verdict)
			return
		case <-ctx.Done():
			t.Fatal("no final verdict on the verdicts subject")
		}
	}
}

// TestSubmitRejections checks the answers to bad submissions; none reaches the pipeline.
func TestSubmitRejections(t *testing.T) {
	s := startServer(t, func(o *Options) { o.Config.Serve.MaxUpload = 1 << 20 })
	url := baseURL(s) + "/api/scans"
	for _, c := range []struct {
		name string
		req  any
		code int
		msg  string
	}{
		{"local path", laev1.SubmitRequest{URL: "/etc/passwd"}, http.StatusBadRequest, "local paths are not accepted"},
		{"file url", laev1.SubmitRequest{URL: "file:///etc/passwd"}, http.StatusBadRequest, "local paths are not accepted"},
		{"no url", laev1.SubmitRequest{}, http.StatusBadRequest, "local paths"},
		{"bad scheme", laev1.SubmitRequest{URL: "gopher://x/y"}, http.StatusBadRequest, "local paths"},
		{"bad fps", map[string]any{"url": "http://127.0.0.1:1/x.mp4", "sample_fps": -1}, http.StatusBadRequest, "sample_fps"},
		{"bad id", map[string]any{"url": "http://127.0.0.1:1/x.mp4", "video_id": "a/b"}, http.StatusBadRequest, "invalid video id"},
		{"not json", "just a string", http.StatusBadRequest, "malformed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := postJSON(t, url, c.req)
			require.Equal(t, c.code, code, "%s", body)
			require.Contains(t, string(body), c.msg)
		})
	}
	t.Run("wrong content type", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader("url=x"))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		code, _, _ := do(t, req)
		require.Equal(t, http.StatusUnsupportedMediaType, code)
	})
	t.Run("upload without file", func(t *testing.T) {
		code, body := upload(t, url, "", nil, map[string]string{"sample_fps": "5"})
		require.Equal(t, http.StatusBadRequest, code, "%s", body)
		require.Contains(t, string(body), `no file`)
	})
	t.Run("upload with bad field", func(t *testing.T) {
		code, body := upload(t, url, "a.mp4", strings.NewReader("x"), map[string]string{"sample_fps": "fast"})
		require.Equal(t, http.StatusBadRequest, code, "%s", body)
	})
	t.Run("upload too large", func(t *testing.T) {
		code, body := upload(t, url, "big.mp4", bytes.NewReader(make([]byte, 2<<20)), nil)
		require.Equal(t, http.StatusRequestEntityTooLarge, code, "%s", body)
	})
	// No rejected upload leaves a file behind.
	require.Empty(t, uploadObjects(t, s.uploads))

	// Nothing was queued: the list is empty.
	_, body, _ := get(t, baseURL(s)+"/api/scans")
	require.JSONEq(t, `{"scans":[]}`, string(body))
}

// TestLocalPathsWhenAllowed: with AllowLocalPaths a JSON submission may name a file.
func TestLocalPathsWhenAllowed(t *testing.T) {
	s := startServer(t, func(o *Options) { o.Config.Serve.AllowLocalPaths = true })
	code, body := postJSON(t, baseURL(s)+"/api/scans", laev1.SubmitRequest{URL: filepath.Join(t.TempDir(), "missing.mp4")})
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var sub submitted
	require.NoError(t, json.Unmarshal(body, &sub))
	// A missing file is scanned into an "error" verdict, which the API reports as done.
	got := waitDone(t, s, sub.VideoID, time.Minute)
	require.Equal(t, laev1.VerdictError, got.Verdict.Verdict)
	require.NotEmpty(t, got.Error)
	code, rep, _ := get(t, baseURL(s)+"/api/scans/"+sub.VideoID+"/report")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(rep), `id="error"`)

	// Its id is taken now: a submission naming it is refused, and the scan keeps its verdict.
	code, body = postJSON(t, baseURL(s)+"/api/scans", laev1.SubmitRequest{URL: filepath.Join(t.TempDir(), "other.mp4"), VideoID: sub.VideoID})
	require.Equal(t, http.StatusConflict, code, "%s", body)
	require.Contains(t, string(body), "video id already in use")
	again := waitDone(t, s, sub.VideoID, time.Minute)
	require.Equal(t, got.CreatedAt, again.CreatedAt, "the verdict is untouched")
}
