package source

import (
	"testing"
	"time"

	"github.com/asticode/go-astiav"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in, scheme, ff string
	}{
		{"clip.mp4", "file", "file:clip.mp4"},
		{"dir/with:colon.mp4", "file", "file:dir/with:colon.mp4"},
		{"file:///tmp/a%20b.mp4", "file", "file:/tmp/a b.mp4"},
		{"file://localhost/tmp/x.mp4", "file", "file:/tmp/x.mp4"},
		{"file:rel.mp4", "file", "file:rel.mp4"},
		{"HTTP://h/x.m3u8", "http", "HTTP://h/x.m3u8"},
		{"rtsp://cam/1", "rtsp", "rtsp://cam/1"},
	}
	for _, tc := range tests {
		scheme, ff, err := parseURL(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.scheme, scheme, tc.in)
		assert.Equal(t, tc.ff, ff, tc.in)
	}
}

func TestFormatOptions(t *testing.T) {
	o := Options{OpenTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second}
	for scheme := range protocolWhitelist {
		opts := formatOptions(scheme, o)
		assert.Equal(t, "3000000", opts["rw_timeout"], scheme)
		assert.NotEmpty(t, opts["protocol_whitelist"], scheme)
		switch scheme {
		case "rtmp", "rtmps", "file":
			// For rtmp "timeout" means "listen for incoming connections".
			assert.NotContains(t, opts, "timeout", scheme)
		default:
			assert.Equal(t, "3000000", opts["timeout"], scheme)
		}
	}
	assert.Equal(t, "2000", formatOptions("srt", o)["connect_timeout"])
	assert.Equal(t, "file", formatOptions("file", o)["protocol_whitelist"])
}

func TestFullRangeFormat(t *testing.T) {
	tests := []struct {
		pf   astiav.PixelFormat
		cr   astiav.ColorRange
		want astiav.PixelFormat
	}{
		{astiav.PixelFormatYuv420P, astiav.ColorRangeJpeg, astiav.PixelFormatYuvj420P},
		{astiav.PixelFormatYuv422P, astiav.ColorRangeJpeg, astiav.PixelFormatYuvj422P},
		{astiav.PixelFormatYuv444P, astiav.ColorRangeJpeg, astiav.PixelFormatYuvj444P},
		{astiav.PixelFormatYuv440P, astiav.ColorRangeJpeg, astiav.PixelFormatYuvj440P},
		{astiav.PixelFormatYuv420P, astiav.ColorRangeMpeg, astiav.PixelFormatYuv420P},
		{astiav.PixelFormatYuv420P, astiav.ColorRangeUnspecified, astiav.PixelFormatYuv420P},
		{astiav.PixelFormatYuvj420P, astiav.ColorRangeJpeg, astiav.PixelFormatYuvj420P},
		{astiav.PixelFormatNv12, astiav.ColorRangeJpeg, astiav.PixelFormatNv12},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, fullRangeFormat(tc.pf, tc.cr), "%s %d", tc.pf, tc.cr)
	}
}

func TestFrameTimeFallsBackToFrameRate(t *testing.T) {
	tests := []struct {
		name string
		fps  float64
		pts  []int64 // NoPtsValue = missing
		want []float64
	}{
		{"timestamps", 10, []int64{5000, 5100, 5200}, []float64{0, 0.1, 0.2}},
		{"gap filled at declared rate", 10, []int64{5000, 5100, astiav.NoPtsValue, astiav.NoPtsValue, 5400}, []float64{0, 0.1, 0.2, 0.3, 0.4}},
		{"no timestamps at all", 4, []int64{astiav.NoPtsValue, astiav.NoPtsValue, astiav.NoPtsValue}, []float64{0, 0.25, 0.5}},
		{"timestamp reset continues the timeline", 10, []int64{5000, 5100, 5200, 100, 200}, []float64{0, 0.1, 0.2, 0.3, 0.4}},
		{"small step back kept (reordering)", 10, []int64{5000, 5200, 5100}, []float64{0, 0.2, 0.1}},
		{"no rate either", 0, []int64{astiav.NoPtsValue, astiav.NoPtsValue}, []float64{0, 1 / fallbackFPS}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := astiav.AllocFrame() // fresh frames have no packet dts either
			defer f.Free()
			s := &Source{frame: f, info: Info{FPS: tc.fps}, timeBase: 1.0 / 1000, startPTS: astiav.NoPtsValue}
			for i, p := range tc.pts {
				f.SetPts(p)
				assert.InDelta(t, tc.want[i], s.frameTime(), 1e-9, "frame %d", i)
			}
		})
	}
}
