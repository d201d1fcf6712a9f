package source_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/source"
)

// TestHLS serves a VOD HLS playlist whose MPEG-TS segment is made by the
// project's generator and decodes it through FFmpeg's hls demuxer.
func TestHLS(t *testing.T) {
	dir := t.TempDir()
	makeClipAs(t, dir, "seg0.ts", 160, 120, 20, 10)
	playlist := "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n" +
		"#EXTINF:2.0,\nseg0.ts\n#EXT-X-ENDLIST\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.m3u8"), []byte(playlist), 0o644))
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()

	info, got, st := decodeAll(t, srv.URL+"/index.m3u8", source.Options{})
	defer closeFrames(got)
	assert.Equal(t, 160, info.Width)
	assert.Equal(t, 120, info.Height)
	assert.Len(t, got, 20)
	assert.Zero(t, st.Errors)
	for i := 1; i < len(got); i++ {
		assert.Greater(t, got[i].PTS, got[i-1].PTS, "frame %d", i)
	}
}

// TestRawTCPStream pushes the clip through a plain tcp:// socket, a
// non-seekable live source.
func TestRawTCPStream(t *testing.T) {
	data, err := os.ReadFile(makeClipAs(t, t.TempDir(), "live.ts", 160, 120, 15, 15))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	serveOnce(ln, data)
	info, got, st := decodeAll(t, "tcp://"+ln.Addr().String(), source.Options{})
	defer closeFrames(got)
	assert.True(t, info.Live, "tcp:// is a live source")
	assert.Zero(t, info.Duration)
	assert.Len(t, got, 15)
	assert.Zero(t, st.Errors)
}
