package source_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asticode/go-astiav"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/faces"
	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/ingest/testvideo"
	"github.com/lae-screening/lae/internal/testenv"
)

// uprightFrames are 320x240 frames of one face (an LFW photo when the shared data set is
// there, a drawn one otherwise) in the upper left quarter over a plain background, moving a
// little: any wrong turn or mirror moves the face elsewhere. The caller closes them.
func uprightFrames(tb testing.TB, n int) []gocv.Mat {
	tb.Helper()
	dir := ""
	if d, ok := testenv.SharedDataDir(); ok {
		dir = filepath.Join(d, "faces", "lfw")
	}
	fs, _ := testvideo.FacesOrSynthetic(dir, 1, 120, 5)
	defer testvideo.CloseFrames(fs)
	frames, _, err := testvideo.FaceVideo(testvideo.VideoSpec{Width: 320, Height: 240, Frames: n, Background: testvideo.Plain,
		BackgroundColor: color.RGBA{60, 140, 90, 0},
		Faces:           []testvideo.Placement{{Face: fs[0], Size: 120, From: image.Pt(20, 10), To: image.Pt(30, 15)}}})
	require.NoError(tb, err)
	return frames
}

// writeClip writes frames with o into dir/name and returns the path.
func writeClip(tb testing.TB, dir, name string, frames []gocv.Mat, o testvideo.WriteOptions) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	require.NoError(tb, testvideo.WriteWith(context.Background(), p, frames, 5, o))
	return p
}

// streamFacts reads back what the file itself says: the coded size, the display matrix and
// the sample aspect ratio of its first stream, with astiav alone.
func streamFacts(tb testing.TB, path string) (w, h int, matrix []byte, sar astiav.Rational) {
	tb.Helper()
	fc := astiav.AllocFormatContext()
	require.NotNil(tb, fc)
	require.NoError(tb, fc.OpenInput(path, nil, nil))
	defer fc.CloseInput()
	require.NoError(tb, fc.FindStreamInfo(nil))
	st := fc.Streams()[0]
	cp := st.CodecParameters()
	return cp.Width(), cp.Height(), st.SideData(astiav.PacketSideDataTypeDisplaymatrix), st.SampleAspectRatio()
}

// TestDisplayMatrixApplied is issue 10 item 5: a phone clip stores its pictures turned and
// says so in the display matrix; the frames must come out upright, as the same pictures
// stored upright do, with width and height as shown (swapped from the stored ones for 90 and
// 270), and the face detector must find the face in the same place.
func TestDisplayMatrixApplied(t *testing.T) {
	frames := uprightFrames(t, 3)
	defer testvideo.CloseFrames(frames)
	dir := t.TempDir()
	_, want, _ := decodeAll(t, writeClip(t, dir, "upright.mp4", frames, testvideo.WriteOptions{}), source.Options{})
	defer closeFrames(want)
	require.Len(t, want, len(frames))

	det, err := faces.Open(faces.SpecYuNet)
	require.NoError(t, err)
	defer det.Close()
	wantFaces, err := det.Detect(want[0].Image)
	require.NoError(t, err)
	require.Len(t, wantFaces, 1, "the upright clip shows one face")

	tests := []struct {
		rotation int
		mirror   bool
	}{{90, false}, {180, false}, {270, false}, {0, true}, {90, true}, {180, true}, {270, true}}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d mirror %v", tc.rotation, tc.mirror), func(t *testing.T) {
			p := writeClip(t, t.TempDir(), "turned.mp4", frames, testvideo.WriteOptions{Rotation: tc.rotation, Mirror: tc.mirror})
			cw, ch, matrix, _ := streamFacts(t, p)
			require.NotEmpty(t, matrix, "the file carries a display matrix")
			swapped := tc.rotation%180 == 90
			if swapped {
				require.Equal(t, [2]int{240, 320}, [2]int{cw, ch}, "stored turned")
			}

			info, got, _ := decodeAll(t, p, source.Options{})
			defer closeFrames(got)
			assert.Equal(t, [2]int{320, 240}, [2]int{info.Width, info.Height}, "Info is the upright size")
			assert.Equal(t, [2]int{cw, ch}, [2]int{info.CodedWidth, info.CodedHeight})
			assert.Equal(t, tc.rotation, info.Rotation)
			assert.Equal(t, tc.mirror, info.Mirrored)
			require.Len(t, got, len(want))
			for i := range got {
				require.Equal(t, [2]int{320, 240}, [2]int{got[i].Image.Cols(), got[i].Image.Rows()}, "frame %d upright size", i)
				// Two encodings of the same pictures differ by codec error only (measured
				// below 1); a face in the wrong place differs by far more (above 10).
				assert.Less(t, meanAbsDiff(t, want[i].Image, got[i].Image), 3.0, "frame %d matches the upright clip", i)
			}
			fs, err := det.Detect(got[0].Image)
			require.NoError(t, err)
			require.Len(t, fs, 1, "one face, as upright")
			assert.Greater(t, iou(fs[0].Box, wantFaces[0].Box), 0.8, "face at %v, upright at %v", fs[0].Box, wantFaces[0].Box)
		})
	}
}

// TestPhoneMatrixLayout pins the convention both sides rely on: WriteOptions{Rotation: 90}
// writes the matrix an upright iPhone writes (0 1 / -1 0 in 16.16, FFmpeg's "rotation of -90
// degrees"), so the source is tested against real phones' metadata, not only against the
// generator's own idea of it.
func TestPhoneMatrixLayout(t *testing.T) {
	frames := uprightFrames(t, 1)
	defer testvideo.CloseFrames(frames)
	p := writeClip(t, t.TempDir(), "portrait.mp4", frames, testvideo.WriteOptions{Rotation: 90})
	_, _, matrix, _ := streamFacts(t, p)
	dm, err := astiav.NewDisplayMatrixFromBytes(matrix)
	require.NoError(t, err)
	const one = 1 << 16
	assert.Equal(t, []int32{0, one, -one, 0}, []int32{int32(dm[0]), int32(dm[1]), int32(dm[3]), int32(dm[4])})
	assert.InDelta(t, 90, dm.Rotation(), 0.01, "clockwise, as astiav reads FFmpeg's matrix")
}

// TestSampleAspectApplied: anamorphic pictures (non-square pixels) come out with square
// pixels, stretched along their short pixel side: 2:1 doubles the width of the stored
// pictures, 1:2 their height; with a display matrix the stretch is applied before the turn.
func TestSampleAspectApplied(t *testing.T) {
	frames := uprightFrames(t, 2)
	defer testvideo.CloseFrames(frames)
	dir := t.TempDir()
	_, want, _ := decodeAll(t, writeClip(t, dir, "square.mp4", frames, testvideo.WriteOptions{}), source.Options{})
	defer closeFrames(want)
	tests := []struct {
		name           string
		o              testvideo.WriteOptions
		codedW, codedH int
	}{
		{"2:1", testvideo.WriteOptions{SampleAspect: astiav.NewRational(2, 1)}, 160, 240},
		{"1:2", testvideo.WriteOptions{SampleAspect: astiav.NewRational(1, 2)}, 320, 120},
		{"4:3 turned 90", testvideo.WriteOptions{SampleAspect: astiav.NewRational(4, 3), Rotation: 90}, 180, 320},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeClip(t, t.TempDir(), "anamorphic.mp4", frames, tc.o)
			cw, ch, _, sar := streamFacts(t, p)
			require.Equal(t, [2]int{tc.codedW, tc.codedH}, [2]int{cw, ch}, "stored squeezed")
			require.Equal(t, tc.o.SampleAspect.Float64(), sar.Float64(), "the container records the pixel shape")

			info, got, _ := decodeAll(t, p, source.Options{})
			defer closeFrames(got)
			assert.Equal(t, [2]int{320, 240}, [2]int{info.Width, info.Height})
			require.Len(t, got, len(want))
			for i := range got {
				require.Equal(t, [2]int{320, 240}, [2]int{got[i].Image.Cols(), got[i].Image.Rows()}, "frame %d", i)
				// Squeezing then stretching blurs edges along one axis; the stretched
				// picture still matches closely, a squeezed one would not even fit.
				assert.Less(t, meanAbsDiff(t, want[i].Image, got[i].Image), 5.0, "frame %d", i)
			}
		})
	}
}

// TestMaxFrameSide: pictures with a side beyond the limit are shrunk, keeping their shape,
// and still match the full-size pictures shrunk the same way.
func TestMaxFrameSide(t *testing.T) {
	frames := uprightFrames(t, 2)
	defer testvideo.CloseFrames(frames)
	p := writeClip(t, t.TempDir(), "clip.mp4", frames, testvideo.WriteOptions{})
	_, full, _ := decodeAll(t, p, source.Options{})
	defer closeFrames(full)

	info, got, _ := decodeAll(t, p, source.Options{MaxFrameSide: 160})
	defer closeFrames(got)
	assert.Equal(t, [2]int{160, 120}, [2]int{info.Width, info.Height})
	assert.Equal(t, [2]int{320, 240}, [2]int{info.CodedWidth, info.CodedHeight})
	require.Len(t, got, len(full))
	for i := range got {
		require.Equal(t, [2]int{160, 120}, [2]int{got[i].Image.Cols(), got[i].Image.Rows()})
		small := gocv.NewMat()
		gocv.Resize(full[i].Image, &small, image.Pt(160, 120), 0, 0, gocv.InterpolationArea)
		assert.Less(t, meanAbsDiff(t, small, got[i].Image), 3.0, "frame %d", i)
		small.Close()
	}

	// A limit the pictures fit changes nothing, nor does switching it off.
	for _, side := range []int{320, -1} {
		_, same, _ := decodeAll(t, p, source.Options{MaxFrameSide: side})
		require.Equal(t, [2]int{320, 240}, [2]int{same[0].Image.Cols(), same[0].Image.Rows()}, "MaxFrameSide %d", side)
		closeFrames(same)
	}
}

// TestDefaultMaxFrameSide decodes a picture wider than DefaultMaxFrameSide with the default
// options: a 4352x256 strip, large on one side but cheap to make and decode.
func TestDefaultMaxFrameSide(t *testing.T) {
	const w, h = 4352, 256
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(40, 120, 200, 0), h, w, gocv.MatTypeCV8UC3)
	defer m.Close()
	gocv.Rectangle(&m, image.Rect(w-256, 0, w, h), color.RGBA{255, 255, 255, 0}, -1)
	p := writeClip(t, t.TempDir(), "wide.mp4", []gocv.Mat{m, m}, testvideo.WriteOptions{})
	info, got, _ := decodeAll(t, p, source.Options{})
	defer closeFrames(got)
	wantW, wantH := source.DefaultMaxFrameSide, 241 // 256 * 4096/4352 = 240.9
	assert.Equal(t, [2]int{wantW, wantH}, [2]int{info.Width, info.Height})
	require.Len(t, got, 2)
	img := got[0].Image
	require.Equal(t, [2]int{wantW, wantH}, [2]int{img.Cols(), img.Rows()})
	// The white block at the right end is still there, scaled: the whole picture was kept.
	v := img.GetVecbAt(wantH/2, wantW-wantW*128/w)
	assert.Greater(t, int(v[0])+int(v[1])+int(v[2]), 3*230)
}

// TestMaxFramePixels: a stream whose pictures are larger than the limit is refused at open
// with ErrFrameTooLarge and a one-line message naming the size, before decoding a frame.
func TestMaxFramePixels(t *testing.T) {
	frames := uprightFrames(t, 2)
	defer testvideo.CloseFrames(frames)
	p := writeClip(t, t.TempDir(), "clip.mp4", frames, testvideo.WriteOptions{})

	live := source.LiveSources()
	_, err := source.Open(context.Background(), p, source.Options{MaxFramePixels: 320*240 - 1})
	require.Error(t, err)
	assert.Equal(t, live, source.LiveSources(), "a refused open frees what it opened")
	assert.True(t, errors.Is(err, source.ErrFrameTooLarge), "%v", err)
	assert.Equal(t, "open "+p+": frame too large: 320x240 is 0.0768 MP, the limit is 0.076799 MP", err.Error())
	assert.NotContains(t, err.Error(), "\n")

	// At the limit exactly, it decodes.
	_, got, _ := decodeAll(t, p, source.Options{MaxFramePixels: 320 * 240})
	assert.Len(t, got, 2)
	closeFrames(got)
}

// TestOversizedClipRefused is the 8000x8000 clip of issue 10 item 9 with the default limits:
// it is refused from the container's declared size, without decoding (its probe alone used
// to take 250 MB, its decode over 1 GB).
func TestOversizedClipRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes a 64-megapixel picture")
	}
	const side = 8000
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 90, 90, 0), side, side, gocv.MatTypeCV8UC3)
	p := writeClip(t, t.TempDir(), "huge.mp4", []gocv.Mat{m}, testvideo.WriteOptions{})
	m.Close()

	start := time.Now()
	_, err := source.Open(context.Background(), p, source.Options{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, source.ErrFrameTooLarge), "%v", err)
	assert.True(t, strings.HasSuffix(err.Error(), "frame too large: 8000x8000 is 64 MP, the limit is 36 MP"), err.Error())
	assert.Less(t, time.Since(start), 2*time.Second, "refused without decoding")
}

// iou is the intersection over union of two boxes.
func iou(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	ia := float64(in.Dx() * in.Dy())
	ua := float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - ia
	if ua <= 0 {
		return 0
	}
	return ia / ua
}

// TestPictureGeometryFreesMats decodes clips that take every geometry step (stretch, shrink,
// turn, turn and mirror) and closes the frames: with -tags matprofile the live Mat count
// returns to where it was, so no intermediate Mat of the turn is left behind.
func TestPictureGeometryFreesMats(t *testing.T) {
	frames := uprightFrames(t, 2)
	defer testvideo.CloseFrames(frames)
	dir := t.TempDir()
	var paths []string
	for i, o := range []testvideo.WriteOptions{
		{Rotation: 90, SampleAspect: astiav.NewRational(2, 1)},
		{Rotation: 270, Mirror: true},
		{Rotation: 180, Mirror: true},
	} {
		paths = append(paths, writeClip(t, dir, fmt.Sprintf("c%d.mp4", i), frames, o))
	}
	mats0, haveMats := testenv.LiveMats()
	live := source.LiveSources()
	for _, p := range paths {
		_, got, _ := decodeAll(t, p, source.Options{MaxFrameSide: 200})
		require.Len(t, got, 2)
		closeFrames(got)
	}
	assert.Equal(t, live, source.LiveSources())
	if haveMats {
		mats, _ := testenv.LiveMats()
		assert.Equal(t, mats0, mats, "live gocv Mats")
	} else {
		t.Log("live Mat count not checked: run with -tags matprofile")
	}
}
