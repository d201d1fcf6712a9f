package source_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asticode/go-astiav"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/testenv"
)

// realClip is one of the shared real videos with the facts SOURCES.md
// states about it.
type realClip struct {
	rel           string
	width, height int
	fps           float64
}

var realClips = []realClip{
	{"videos/asl/again.mkv", 640, 480, 30},
	{"videos/hamilton_short.mp4", 640, 360, 29.97},
	{"videos/crowd_1080p.mp4", 1920, 1080, 25},
}

func TestRealVideos(t *testing.T) {
	for _, c := range realClips {
		t.Run(filepath.Base(c.rel), func(t *testing.T) {
			path := testenv.SharedData(t, c.rel)
			info, all, stats := decodeAll(t, path, source.Options{})
			defer closeFrames(all)

			assert.Equal(t, path, info.URL)
			assert.Equal(t, c.width, info.Width)
			assert.Equal(t, c.height, info.Height)
			assert.InDelta(t, c.fps, info.FPS, 0.01)
			assert.Equal(t, "h264", info.Codec)
			assert.False(t, info.Live)
			require.Positive(t, info.Duration)

			t.Run("every frame", func(t *testing.T) {
				want := info.Duration.Seconds() * info.FPS
				assert.InDelta(t, want, float64(len(all)), 2, "frames vs duration*fps")
				assert.Equal(t, uint64(len(all)), stats.FramesDecoded)
				assert.Equal(t, uint64(len(all)), stats.FramesSampled)
				assert.Zero(t, stats.Errors)
				for i, f := range all {
					require.Equal(t, uint64(i), f.Index)
					require.Equal(t, uint64(i), f.SampleIndex)
					require.Equal(t, c.width, f.Image.Cols())
					require.Equal(t, c.height, f.Image.Rows())
					require.Equal(t, gocv.MatTypeCV8UC3, f.Image.Type())
					if i > 0 {
						assert.InDelta(t, 1/c.fps, f.PTS-all[i-1].PTS, 0.25/c.fps, "frame %d spacing", i)
					}
				}
				assert.InDelta(t, 0, all[0].PTS, 1e-9, "PTS counts from the stream start")
			})

			t.Run("sampled at 5 fps", func(t *testing.T) {
				_, got, st := decodeAll(t, path, source.Options{SampleFPS: 5})
				defer closeFrames(got)
				assert.InDelta(t, info.Duration.Seconds()*5, float64(len(got)), 1)
				assert.Equal(t, uint64(len(all)), st.FramesDecoded, "sampling still decodes everything")
				assert.Equal(t, uint64(len(got)), st.FramesSampled)
				for i, f := range got {
					require.Equal(t, uint64(i), f.SampleIndex)
					// The sampled frame is the very frame decoded at that index.
					require.InDelta(t, all[f.Index].PTS, f.PTS, 1e-9)
					if i > 0 {
						d := f.PTS - got[i-1].PTS
						assert.InDelta(t, 0.2, d, 1/c.fps+1e-6, "sample %d spacing", i)
						assert.Greater(t, f.Index, got[i-1].Index)
					}
				}
			})

			t.Run("MaxDuration", func(t *testing.T) {
				_, got, _ := decodeAll(t, path, source.Options{MaxDuration: time.Second})
				defer closeFrames(got)
				assert.InDelta(t, c.fps, float64(len(got)), 1)
				for _, f := range got {
					assert.Less(t, f.PTS, 1.0)
				}
				_, sampled, _ := decodeAll(t, path, source.Options{MaxDuration: time.Second, SampleFPS: 5})
				defer closeFrames(sampled)
				assert.Len(t, sampled, 5)
			})

			t.Run("matches OpenCV's own decoding", func(t *testing.T) {
				// OpenCV's videoio decodes with the same FFmpeg but its own
				// conversion code: agreeing with it checks the colour range
				// (asl is full-range yuvj420p) and the stride handling.
				vc, err := gocv.VideoCaptureFile(path)
				if err != nil || !vc.IsOpened() {
					t.Skipf("OpenCV videoio cannot open %s: %v", path, err)
				}
				defer vc.Close()
				// OpenCV's FFmpeg backend resets FFmpeg's global log level.
				astiav.SetLogLevel(astiav.LogLevelFatal)
				ref := gocv.NewMat()
				defer ref.Close()
				for i := 0; i < 3; i++ {
					require.True(t, vc.Read(&ref))
					assert.Less(t, meanAbsDiff(t, ref, all[i].Image), 3.0, "frame %d", i)
				}
			})
		})
	}
}

// TestASLClips decodes every sign-language clip: all are full-range
// yuvj420p Matroska files.
func TestASLClips(t *testing.T) {
	dir := testenv.SharedData(t, "videos/asl")
	paths, err := filepath.Glob(filepath.Join(dir, "*.mkv"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		info, got, st := decodeAll(t, p, source.Options{SampleFPS: 5})
		closeFrames(got)
		assert.Equal(t, 640, info.Width, p)
		assert.Equal(t, 480, info.Height, p)
		assert.InDelta(t, info.Duration.Seconds()*5, float64(len(got)), 1, p)
		assert.Zero(t, st.Errors, p)
	}
}

func TestGeneratedClipRoundTrip(t *testing.T) {
	p := makeClip(t, t.TempDir(), 320, 240, 25, 25)
	info, got, st := decodeAll(t, p, source.Options{SampleFPS: 5})
	defer closeFrames(got)
	assert.Equal(t, 320, info.Width)
	assert.Equal(t, 240, info.Height)
	assert.InDelta(t, 1.0, info.Duration.Seconds(), 0.01)
	assert.Equal(t, uint64(25), st.FramesDecoded)
	// 25 frames at 25 fps sampled at 5 fps: frames 0, 5, 10, 15, 20.
	require.Len(t, got, 5)
	for i, f := range got {
		assert.Equal(t, uint64(5*i), f.Index)
		assert.InDelta(t, 0.2*float64(i), f.PTS, 1e-6)
	}
}

func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	clip := makeClip(t, t.TempDir(), 160, 120, 10, 10)
	clipBytes, err := os.ReadFile(clip)
	require.NoError(t, err)
	silent := newSilentServer(t)
	const timeout = 500 * time.Millisecond

	tests := []struct {
		name    string
		url     string
		opts    source.Options
		want    error  // errors.Is target; nil = only the message is checked
		msg     string // substring of the message
		maxTime time.Duration
	}{
		{"missing file", filepath.Join(dir, "nope.mp4"), source.Options{}, source.ErrNoSuchFile, "no such file", time.Second},
		{"missing file URL", "file://" + filepath.Join(dir, "nope.mp4"), source.Options{}, source.ErrNoSuchFile, "no such file", time.Second},
		{"empty file", write("empty.mp4", nil), source.Options{}, source.ErrEmptyFile, "empty file", time.Second},
		{"HTML named .avi", write("page.avi", []byte("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n")),
			source.Options{}, source.ErrNotMedia, "not a readable media file", time.Second},
		{"mp4 cut inside its index", write("cut.mp4", clipBytes[:200]), source.Options{}, source.ErrNotMedia, "not a readable media file", time.Second},
		{"audio only", write("tone.wav", wavBytes()), source.Options{}, source.ErrNoVideoStream, "no video stream", time.Second},
		{"directory", dir, source.Options{}, nil, "is a directory", time.Second},
		{"unknown scheme", "foo://x", source.Options{}, source.ErrUnsupportedScheme, `unsupported URL scheme "foo" (supported: file, http`, time.Second},
		{"ffmpeg-only protocol", "concat:a.mp4|b.mp4", source.Options{}, source.ErrUnsupportedScheme, `"concat"`, time.Second},
		{"empty URL", "", source.Options{}, nil, "empty URL", time.Second},
		{"rtsp refused", "rtsp://127.0.0.1:1/x", source.Options{OpenTimeout: timeout}, source.ErrUnreachable, "Connection refused", 3 * time.Second},
		{"http refused", "http://127.0.0.1:1/x.mp4", source.Options{OpenTimeout: timeout}, source.ErrUnreachable, "Connection refused", 3 * time.Second},
		{"rtmp refused", "rtmp://127.0.0.1:1/live/x", source.Options{OpenTimeout: timeout}, source.ErrUnreachable, "Connection refused", 3 * time.Second},
		{"http server never answers", "http://" + silent.addr() + "/x.mp4", source.Options{OpenTimeout: timeout}, source.ErrTimeout, "timed out", 3 * time.Second},
		{"rtsp server never answers", "rtsp://" + silent.addr() + "/x", source.Options{OpenTimeout: timeout}, source.ErrTimeout, "timed out", 3 * time.Second},
		{"negative SampleFPS", clip, source.Options{SampleFPS: -1}, nil, "invalid SampleFPS", time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, err := source.Open(context.Background(), tc.url, tc.opts)
			elapsed := time.Since(start)
			if s != nil {
				s.Close()
			}
			require.Error(t, err)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
			}
			msg := err.Error()
			assert.Contains(t, msg, tc.msg)
			assert.True(t, strings.HasPrefix(msg, "open "+tc.url+": "), "message %q names the URL", msg)
			assert.NotContains(t, msg, "\n", "one-line error")
			assert.Less(t, elapsed, tc.maxTime, "returned within its bound")
		})
	}
}

func TestValidateURL(t *testing.T) {
	ok := []string{
		"clip.mp4", "/abs/clip.mkv", "./dir/with:colon.mp4", "file:///tmp/x.mp4", "file:relative.mp4", "C:\\videos\\x.mp4",
		"http://h/x.mp4", "https://h/live/index.m3u8", "HTTPS://h/x", "rtsp://cam/stream", "rtsps://cam/s", "rtmp://h/app/key",
		"rtmps://h/app/key", "srt://h:9000", "udp://239.0.0.1:1234", "tcp://h:5000",
	}
	for _, u := range ok {
		assert.NoError(t, source.ValidateURL(u), u)
	}
	bad := map[string]string{
		"foo://x":         "foo",
		"ftp://h/x.mp4":   "ftp",
		"concat:a|b":      "concat",
		"pipe:0":          "pipe",
		"data:;base64,AA": "data",
		"subfile:x":       "subfile",
		"hls+http://h/x":  "hls+http",
	}
	for u, scheme := range bad {
		err := source.ValidateURL(u)
		require.Error(t, err, u)
		assert.ErrorIs(t, err, source.ErrUnsupportedScheme)
		assert.Contains(t, err.Error(), fmt.Sprintf("unsupported URL scheme %q (supported: ", scheme))
	}
	assert.Error(t, source.ValidateURL(""))
	assert.Error(t, source.ValidateURL("file://remotehost/x.mp4"))
}

// TestHTTP decodes the generated clip over real HTTP (FFmpeg's http
// protocol against net/http).
func TestHTTP(t *testing.T) {
	dir := t.TempDir()
	clip := makeClip(t, dir, 160, 120, 20, 10)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	info, got, st := decodeAll(t, srv.URL+"/clip.mp4", source.Options{})
	defer closeFrames(got)
	assert.Len(t, got, 20)
	assert.Zero(t, st.Errors)
	assert.Equal(t, 160, info.Width)
	assert.False(t, info.Live, "a file served over HTTP has a duration")
	_ = clip

	_, err := source.Open(context.Background(), srv.URL+"/missing.mp4", source.Options{})
	assert.ErrorIs(t, err, source.ErrUnreachable)
	assert.Contains(t, err.Error(), "404")
}

// stallingServer serves the first part of a file over HTTP (announcing the
// full length) and then hangs until the client goes away. stalled is closed
// once the part has been written.
func stallingServer(t *testing.T, data []byte, part int) (url string, stalled <-chan struct{}) {
	ch := make(chan struct{})
	var once bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Header().Set("Content-Type", "video/mp4")
		_, _ = w.Write(data[:part])
		w.(http.Flusher).Flush()
		if !once {
			once = true
			close(ch)
		}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/clip.mp4", ch
}

func TestReadStallTimesOut(t *testing.T) {
	clip := makeClip(t, t.TempDir(), 320, 240, 100, 25)
	data, err := os.ReadFile(clip)
	require.NoError(t, err)
	url, _ := stallingServer(t, data, len(data)/2)

	const readTimeout = 500 * time.Millisecond
	s, err := source.Open(context.Background(), url, source.Options{ReadTimeout: readTimeout, OpenTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer s.Close()
	var n int
	start := time.Now()
	for {
		f, err := s.Next(context.Background())
		if err != nil {
			assert.ErrorIs(t, err, source.ErrTimeout)
			assert.True(t, strings.HasPrefix(err.Error(), "decode "+url+": "), err.Error())
			break
		}
		f.Image.Close()
		n++
	}
	assert.Less(t, time.Since(start), readTimeout+3*time.Second)
	assert.Positive(t, n, "frames before the stall are delivered")
	assert.Less(t, n, 100)
	// The failure is sticky.
	_, err = s.Next(context.Background())
	assert.ErrorIs(t, err, source.ErrTimeout)
}

func TestCancelDuringNext(t *testing.T) {
	clip := makeClip(t, t.TempDir(), 320, 240, 100, 25)
	data, err := os.ReadFile(clip)
	require.NoError(t, err)
	url, stalled := stallingServer(t, data, len(data)/2)

	// Long timeouts: only cancellation can end the blocked read quickly.
	s, err := source.Open(context.Background(), url, source.Options{ReadTimeout: time.Minute, OpenTimeout: time.Minute})
	require.NoError(t, err)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stalled
		cancel()
	}()
	start := time.Now()
	for {
		f, err := s.Next(ctx)
		if err != nil {
			assert.ErrorIs(t, err, context.Canceled)
			break
		}
		f.Image.Close()
	}
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestCancelDuringOpen(t *testing.T) {
	silent := newSilentServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-silent.accepted
		cancel()
	}()
	start := time.Now()
	_, err := source.Open(ctx, "http://"+silent.addr()+"/x.mp4", source.Options{OpenTimeout: time.Minute, ReadTimeout: time.Minute})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 5*time.Second)

	_, err = source.Open(ctx, makeClip(t, t.TempDir(), 64, 64, 2, 2), source.Options{})
	assert.ErrorIs(t, err, context.Canceled, "an already cancelled context fails at once")
}

func TestCancelledContextStopsNext(t *testing.T) {
	p := makeClip(t, t.TempDir(), 64, 64, 10, 10)
	s, err := source.Open(context.Background(), p, source.Options{})
	require.NoError(t, err)
	defer s.Close()
	f, err := s.Next(context.Background())
	require.NoError(t, err)
	f.Image.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Next(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, uint64(1), s.Stats().FramesSampled)
}

func TestCloseTwiceAndNextAfterClose(t *testing.T) {
	p := makeClip(t, t.TempDir(), 64, 64, 3, 3)
	s, err := source.Open(context.Background(), p, source.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = s.Next(context.Background())
	assert.ErrorIs(t, err, source.ErrClosed)
}

func TestEOFIsSticky(t *testing.T) {
	p := makeClip(t, t.TempDir(), 64, 64, 3, 3)
	_, got, _ := decodeAll(t, p, source.Options{})
	closeFrames(got)
	s, err := source.Open(context.Background(), p, source.Options{})
	require.NoError(t, err)
	defer s.Close()
	for i := 0; i < 3; i++ {
		f, err := s.Next(context.Background())
		require.NoError(t, err)
		f.Image.Close()
	}
	for i := 0; i < 2; i++ {
		_, err = s.Next(context.Background())
		assert.ErrorIs(t, err, io.EOF)
	}
}

// TestTruncatedMediaData cuts the generated clip inside its media data (the
// index, written first, survives): the frames that are there are decoded,
// the damaged tail is counted, and the stream ends with io.EOF.
func TestTruncatedMediaData(t *testing.T) {
	clip := makeClip(t, t.TempDir(), 320, 240, 50, 25)
	data, err := os.ReadFile(clip)
	require.NoError(t, err)
	for _, frac := range []float64{0.5, 0.8} {
		t.Run(fmt.Sprint(frac), func(t *testing.T) {
			// The encoded sizes vary from run to run, so a cut may land exactly between two
			// packets, leaving nothing half-written. Of two cuts one byte apart at most one
			// can, so the other must count its half-written packet.
			errs := uint64(0)
			for _, cut := range []int{int(float64(len(data)) * frac), int(float64(len(data))*frac) - 1} {
				p := filepath.Join(t.TempDir(), "cut.mp4")
				require.NoError(t, os.WriteFile(p, data[:cut], 0o644))
				info, got, st := decodeAll(t, p, source.Options{})
				assert.InDelta(t, 2.0, info.Duration.Seconds(), 0.05, "the index still describes the whole clip")
				assert.Positive(t, len(got))
				assert.Less(t, len(got), 50)
				t.Logf("cut at byte %d (%.0f%%): %d/50 frames, %d errors", cut, frac*100, len(got), st.Errors)
				for i := 1; i < len(got); i++ {
					assert.Greater(t, got[i].PTS, got[i-1].PTS)
				}
				closeFrames(got)
				errs += st.Errors
			}
			assert.Positive(t, errs, "a half-written last packet is counted")
		})
	}
}

func TestSampleFPSAboveSourceRate(t *testing.T) {
	// Asking for more samples than frames keeps every frame, once.
	p := makeClip(t, t.TempDir(), 64, 64, 10, 10)
	_, got, _ := decodeAll(t, p, source.Options{SampleFPS: 60})
	defer closeFrames(got)
	assert.Len(t, got, 10)
}

func TestThreadsOption(t *testing.T) {
	path := testenv.SharedData(t, "videos/hamilton_short.mp4")
	var counts []int
	for _, threads := range []int{1, 2, 0} {
		_, got, _ := decodeAll(t, path, source.Options{Threads: threads, SampleFPS: 5})
		counts = append(counts, len(got))
		closeFrames(got)
	}
	assert.Equal(t, counts[0], counts[1])
	assert.Equal(t, counts[0], counts[2])
}

func TestInfoFPSIsFinite(t *testing.T) {
	p := makeClip(t, t.TempDir(), 64, 64, 4, 4)
	s, err := source.Open(context.Background(), p, source.Options{})
	require.NoError(t, err)
	defer s.Close()
	assert.False(t, math.IsNaN(s.Info().FPS))
	assert.InDelta(t, 4, s.Info().FPS, 0.01)
}
