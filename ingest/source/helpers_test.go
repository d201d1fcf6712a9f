package source_test

import (
	"context"
	"encoding/binary"
	"errors"
	"image"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/asticode/go-astiav"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/ingest/testvideo"
)

// TestMain silences FFmpeg's process-wide log output: the deliberately broken
// inputs below make the demuxers complain on stderr; the test checks the
// errors instead.
func TestMain(m *testing.M) {
	astiav.SetLogLevel(astiav.LogLevelFatal)
	os.Exit(m.Run())
}

// decodeAll opens url and collects every frame Next returns until io.EOF.
func decodeAll(tb testing.TB, url string, o source.Options) (source.Info, []source.Frame, source.Stats) {
	tb.Helper()
	ctx := context.Background()
	src, err := source.Open(ctx, url, o)
	require.NoError(tb, err)
	defer src.Close()
	return src.Info(), readAll(tb, ctx, src), src.Stats()
}

// readAll collects every frame src.Next returns until io.EOF (a plain or a reconnecting source).
func readAll(tb testing.TB, ctx context.Context, src interface {
	Next(context.Context) (source.Frame, error)
}) []source.Frame {
	tb.Helper()
	var frames []source.Frame
	for {
		f, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			closeFrames(frames)
		}
		require.NoError(tb, err)
		frames = append(frames, f)
	}
}

// serveOnce accepts one connection on ln and writes data to it: a live stream that ends cleanly.
func serveOnce(ln net.Listener, data []byte) {
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(data)
	}()
}

func closeFrames(frames []source.Frame) {
	for _, f := range frames {
		f.Image.Close()
	}
}

// makeClip writes a short test video with the project's own generator and
// returns its path.
func makeClip(tb testing.TB, dir string, w, h, n, fps int) string {
	tb.Helper()
	return makeClipAs(tb, dir, "clip.mp4", w, h, n, fps)
}

// makeClipAs is makeClip with a file name; its extension picks the container.
func makeClipAs(tb testing.TB, dir, name string, w, h, n, fps int) string {
	tb.Helper()
	face := testvideo.SyntheticFace(h/2, 3)
	defer face.Close()
	frames, _, err := testvideo.FaceVideo(testvideo.VideoSpec{Width: w, Height: h, Frames: n, Background: testvideo.Noise,
		Faces: []testvideo.Placement{{Face: face, From: image.Pt(0, h/4), To: image.Pt(w/2, h/4)}}})
	require.NoError(tb, err)
	defer testvideo.CloseFrames(frames)
	p := filepath.Join(dir, name)
	require.NoError(tb, testvideo.Write(context.Background(), p, frames, fps))
	return p
}

// wavBytes is a valid one-second 8 kHz mono PCM WAV file: a real media file
// with no video stream.
func wavBytes() []byte {
	const rate, n = 8000, 8000
	b := make([]byte, 44+n*2)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+n*2))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], rate)
	binary.LittleEndian.PutUint32(b[28:], rate*2)
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], n*2)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(int16((i%40-20)*500)))
	}
	return b
}

// silentServer accepts TCP connections and never answers: the shape of a
// stream server that hangs. accepted receives one value per connection.
type silentServer struct {
	ln       net.Listener
	accepted chan struct{}
	mu       sync.Mutex
	conns    []net.Conn
}

func newSilentServer(tb testing.TB) *silentServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	s := &silentServer{ln: ln, accepted: make(chan struct{}, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			select {
			case s.accepted <- struct{}{}:
			default:
			}
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

func (s *silentServer) addr() string { return s.ln.Addr().String() }

// meanAbsDiff is the mean absolute per-channel difference of two same-size
// BGR images.
func meanAbsDiff(tb testing.TB, a, b gocv.Mat) float64 {
	tb.Helper()
	require.Equal(tb, a.Cols(), b.Cols())
	require.Equal(tb, a.Rows(), b.Rows())
	d := gocv.NewMat()
	defer d.Close()
	gocv.AbsDiff(a, b, &d)
	m := d.Mean()
	return (m.Val1 + m.Val2 + m.Val3) / 3
}
