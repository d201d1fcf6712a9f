package testvideo_test

import (
	"context"
	"image"
	"image/color"
	"path/filepath"
	"testing"

	"github.com/asticode/go-astiav"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/testvideo"
	"github.com/lae-screening/lae/internal/testenv"
)

// storedFacts is what the file says about its first stream, read with astiav alone: coded
// size, display matrix (nil when absent) and sample aspect ratio.
func storedFacts(t *testing.T, path string) (w, h int, matrix *astiav.DisplayMatrix, sar astiav.Rational) {
	t.Helper()
	fc := astiav.AllocFormatContext()
	require.NotNil(t, fc)
	require.NoError(t, fc.OpenInput(path, nil, nil))
	defer fc.CloseInput()
	require.NoError(t, fc.FindStreamInfo(nil))
	st := fc.Streams()[0]
	if b := st.SideData(astiav.PacketSideDataTypeDisplaymatrix); len(b) > 0 {
		m, err := astiav.NewDisplayMatrixFromBytes(b)
		require.NoError(t, err)
		matrix = m
	}
	return st.CodecParameters().Width(), st.CodecParameters().Height(), matrix, st.SampleAspectRatio()
}

// TestWriteWithStoresAsAPhone: WriteWith stores the pictures turned, mirrored and squeezed as
// asked, records the display matrix and sample aspect ratio that undo it, and the decoder
// shows the frames as given.
func TestWriteWithStoresAsAPhone(t *testing.T) {
	face := testvideo.SyntheticFace(96, 4)
	defer face.Close()
	frames, _, err := testvideo.FaceVideo(testvideo.VideoSpec{Width: 320, Height: 240, Frames: 3, Background: testvideo.Plain,
		BackgroundColor: color.RGBA{200, 100, 50, 0},
		Faces:           []testvideo.Placement{{Face: face, From: image.Pt(10, 10), To: image.Pt(20, 20)}}})
	require.NoError(t, err)
	defer testvideo.CloseFrames(frames)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.mp4")
	require.NoError(t, testvideo.Write(context.Background(), plain, frames, 5))
	_, _, m, sar := storedFacts(t, plain)
	assert.Nil(t, m, "Write records no display matrix")
	assert.Zero(t, sar.Num(), "nor a sample aspect ratio")

	tests := []struct {
		o              testvideo.WriteOptions
		codedW, codedH int
		clockwise      float64 // FFmpeg's reading of the matrix (astiav: clockwise)
	}{
		{testvideo.WriteOptions{Rotation: 90}, 240, 320, 90},
		{testvideo.WriteOptions{Rotation: 180}, 320, 240, 180},
		{testvideo.WriteOptions{Rotation: 270}, 240, 320, -90},
		{testvideo.WriteOptions{Mirror: true}, 320, 240, 180}, // a mirror reads as a half turn, flipped
		{testvideo.WriteOptions{SampleAspect: astiav.NewRational(2, 1)}, 160, 240, 0},
		{testvideo.WriteOptions{Rotation: 90, SampleAspect: astiav.NewRational(1, 2)}, 240, 160, 90},
	}
	for _, tc := range tests {
		p := filepath.Join(dir, "turned.mp4")
		require.NoError(t, testvideo.WriteWith(context.Background(), p, frames, 5, tc.o))
		w, h, m, sar := storedFacts(t, p)
		assert.Equal(t, [2]int{tc.codedW, tc.codedH}, [2]int{w, h}, "%+v stored size", tc.o)
		if tc.o.Rotation != 0 || tc.o.Mirror {
			require.NotNil(t, m, "%+v", tc.o)
			assert.InDelta(t, tc.clockwise, m.Rotation(), 0.01, "%+v matrix", tc.o)
		} else {
			assert.Nil(t, m, "%+v", tc.o)
		}
		if tc.o.SampleAspect.Num() != 0 {
			assert.Equal(t, tc.o.SampleAspect.Float64(), sar.Float64(), "%+v", tc.o)
		}
		info, got, _ := decodeAll(t, p)
		assert.Equal(t, [2]int{320, 240}, [2]int{info.Width, info.Height}, "%+v shown as given", tc.o)
		require.Len(t, got, 3)
		assert.Equal(t, [2]int{320, 240}, [2]int{got[0].Image.Cols(), got[0].Image.Rows()})
		closeAll(got)
	}
}

// TestWriteWithRejects: options it cannot honour exactly are errors, and free what they made.
func TestWriteWithRejects(t *testing.T) {
	frame := gocv.NewMatWithSize(240, 320, gocv.MatTypeCV8UC3)
	defer frame.Close()
	mats0, haveMats := testenv.LiveMats()
	dir := t.TempDir()
	for _, tc := range []struct {
		o    testvideo.WriteOptions
		want string
	}{
		{testvideo.WriteOptions{Rotation: 45}, "rotation 45"},
		{testvideo.WriteOptions{Rotation: -90}, "rotation -90"},
		{testvideo.WriteOptions{Rotation: 360}, "rotation 360"},
		{testvideo.WriteOptions{SampleAspect: astiav.NewRational(3, 1)}, "sample aspect 3:1"},   // 320/3
		{testvideo.WriteOptions{SampleAspect: astiav.NewRational(1, 16)}, "sample aspect 1:16"}, // 240/16 = 15, odd
		{testvideo.WriteOptions{Rotation: 90, SampleAspect: astiav.NewRational(7, 1)}, "7:1"},   // 240/7
	} {
		err := testvideo.WriteWith(context.Background(), filepath.Join(dir, "x.mp4"), []gocv.Mat{frame}, 5, tc.o)
		require.Error(t, err, "%+v", tc.o)
		assert.Contains(t, err.Error(), tc.want)
	}
	if haveMats {
		mats, _ := testenv.LiveMats()
		assert.Equal(t, mats0, mats, "live gocv Mats")
	}
}
