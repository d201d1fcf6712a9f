package testvideo_test

import (
	"context"
	"errors"
	"image"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/ingest/testvideo"
	"github.com/lae-screening/lae/internal/testenv"
)

const lbpCascade = "/usr/share/opencv4/lbpcascades/lbpcascade_frontalface_improved.xml"

// decodeAll reads every frame of path back with the project's decoder.
func decodeAll(t *testing.T, path string) (source.Info, []source.Frame, source.Stats) {
	t.Helper()
	ctx := context.Background()
	src, err := source.Open(ctx, path, source.Options{})
	require.NoError(t, err)
	defer src.Close()
	var frames []source.Frame
	for {
		f, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		frames = append(frames, f)
	}
	return src.Info(), frames, src.Stats()
}

func closeAll(frames []source.Frame) {
	for _, f := range frames {
		f.Image.Close()
	}
}

func TestWriteRoundTrip(t *testing.T) {
	t.Logf("encoder: %s", testvideo.Encoder())
	face := testvideo.SyntheticFace(96, 1)
	defer face.Close()
	tests := []struct {
		name          string
		width, height int
		frames, fps   int
		bg            testvideo.Background
		file          string
	}{
		{"plain 320x240 10fps", 320, 240, 12, 10, testvideo.Plain, "clip.mp4"},
		{"noise 256x144 25fps", 256, 144, 30, 25, testvideo.Noise, "clip.mp4"},
		{"single frame", 64, 64, 1, 5, testvideo.Plain, "clip.mp4"},
		{"MPEG-TS", 160, 120, 15, 15, testvideo.Noise, "clip.ts"},
		{"Matroska", 160, 120, 15, 15, testvideo.Noise, "clip.mkv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frames, boxes, err := testvideo.FaceVideo(testvideo.VideoSpec{
				Width: tc.width, Height: tc.height, Frames: tc.frames, Background: tc.bg,
				BackgroundColor: color.RGBA{40, 120, 200, 0},
				Faces:           []testvideo.Placement{{Face: face, Size: tc.height / 2, From: image.Pt(0, 0), To: image.Pt(tc.width/2, tc.height/3)}},
			})
			require.NoError(t, err)
			defer testvideo.CloseFrames(frames)
			require.Len(t, boxes, tc.frames)
			path := filepath.Join(t.TempDir(), tc.file)
			require.NoError(t, testvideo.Write(context.Background(), path, frames, tc.fps))

			info, got, stats := decodeAll(t, path)
			defer closeAll(got)
			assert.Equal(t, tc.width, info.Width)
			assert.Equal(t, tc.height, info.Height)
			assert.InDelta(t, float64(tc.fps), info.FPS, 0.01)
			require.Len(t, got, tc.frames)
			assert.Zero(t, stats.Errors)
			for i, f := range got {
				assert.InDelta(t, float64(i)/float64(tc.fps), f.PTS, 1e-3, "frame %d pts", i)
				require.Equal(t, image.Pt(tc.width, tc.height), image.Pt(f.Image.Cols(), f.Image.Rows()))
			}
			// The pixels survive the round trip: the background away from
			// the face keeps its colour (BGR 200,120,40) within codec error.
			// A 16x16 patch mean, since the noise background varies per pixel.
			last := got[len(got)-1].Image
			patch := last.Region(image.Rect(0, tc.height-16, 16, tc.height))
			bg := patch.Mean()
			patch.Close()
			assert.InDelta(t, 200, bg.Val1, 12)
			assert.InDelta(t, 120, bg.Val2, 12)
			assert.InDelta(t, 40, bg.Val3, 12)
			// And the face sits where boxes says: its centre is not background.
			b := boxes[len(boxes)-1][0]
			c := last.GetVecbAt((b.Min.Y+b.Max.Y)/2, (b.Min.X+b.Max.X)/2)
			assert.Greater(t, absDiff(c[0], 200)+absDiff(c[1], 120)+absDiff(c[2], 40), 60)
		})
	}
}

func absDiff(a uint8, b int) int {
	d := int(a) - b
	if d < 0 {
		return -d
	}
	return d
}

func TestWriteTruncatedCopyFailsCleanly(t *testing.T) {
	face := testvideo.SyntheticFace(64, 2)
	defer face.Close()
	const n = 30
	frames, _, err := testvideo.FaceVideo(testvideo.VideoSpec{Width: 160, Height: 120, Frames: n, Background: testvideo.Noise,
		Faces: []testvideo.Placement{{Face: face, From: image.Pt(10, 10), To: image.Pt(80, 40)}}})
	require.NoError(t, err)
	defer testvideo.CloseFrames(frames)
	dir := t.TempDir()
	full := filepath.Join(dir, "full.mp4")
	require.NoError(t, testvideo.Write(context.Background(), full, frames, 10))
	data, err := os.ReadFile(full)
	require.NoError(t, err)

	t.Run("index cut", func(t *testing.T) {
		// faststart puts moov right after the 32-byte ftyp box: cutting
		// at 200 bytes leaves an unreadable index.
		cut := filepath.Join(dir, "index-cut.mp4")
		require.NoError(t, os.WriteFile(cut, data[:200], 0o644))
		_, err := source.Open(context.Background(), cut, source.Options{})
		require.Error(t, err)
		assert.ErrorIs(t, err, source.ErrNotMedia)
		assert.Contains(t, err.Error(), cut)
		assert.NotContains(t, err.Error(), "\n")
	})
	t.Run("media cut", func(t *testing.T) {
		// Losing the tail of mdat loses frames, not the file.
		cut := filepath.Join(dir, "media-cut.mp4")
		require.NoError(t, os.WriteFile(cut, data[:len(data)*6/10], 0o644))
		_, got, _ := decodeAll(t, cut)
		defer closeAll(got)
		assert.NotEmpty(t, got)
		assert.Less(t, len(got), n)
	})
}

func TestWriteRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	odd := gocv.NewMatWithSize(31, 32, gocv.MatTypeCV8UC3)
	defer odd.Close()
	gray := gocv.NewMatWithSize(32, 32, gocv.MatTypeCV8U)
	defer gray.Close()
	ok := gocv.NewMatWithSize(32, 32, gocv.MatTypeCV8UC3)
	defer ok.Close()
	other := gocv.NewMatWithSize(16, 16, gocv.MatTypeCV8UC3)
	defer other.Close()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		frames []gocv.Mat
		fps    int
		path   string
	}{
		{"no frames", ctx, nil, 10, "a.mp4"},
		{"zero fps", ctx, []gocv.Mat{ok}, 0, "b.mp4"},
		{"odd height", ctx, []gocv.Mat{odd}, 10, "c.mp4"},
		{"not BGR", ctx, []gocv.Mat{gray}, 10, "d.mp4"},
		{"size changes", ctx, []gocv.Mat{ok, other}, 10, "e.mp4"},
		{"cancelled", cancelled, []gocv.Mat{ok}, 10, "f.mp4"},
		{"unwritable dir", ctx, []gocv.Mat{ok}, 10, "missing/dir/g.mp4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.path)
			err := testvideo.Write(tc.ctx, p, tc.frames, tc.fps)
			require.Error(t, err)
			assert.Contains(t, err.Error(), p)
		})
	}
}

// TestSyntheticFaceDetectedByLBP checks that OpenCV's LBP frontal-face
// cascade (the product's default detector) finds the drawn faces, which the
// integration tests rely on when the real face data set is absent.
func TestSyntheticFaceDetectedByLBP(t *testing.T) {
	if _, err := os.Stat(lbpCascade); err != nil {
		t.Skipf("%s not installed (Debian package opencv-data): %v", lbpCascade, err)
	}
	cc := gocv.NewCascadeClassifier()
	defer cc.Close()
	require.True(t, cc.Load(lbpCascade))

	for _, size := range []int{96, 200} {
		detected := 0
		const n = 20
		for seed := int64(0); seed < n; seed++ {
			face := testvideo.SyntheticFace(size, seed)
			frames, boxes, err := testvideo.FaceVideo(testvideo.VideoSpec{Width: 400, Height: 300, Frames: 1,
				Background: testvideo.Noise,
				Faces:      []testvideo.Placement{{Face: face, From: image.Pt(60, 40), To: image.Pt(60, 40)}}})
			face.Close()
			require.NoError(t, err)
			rects := cc.DetectMultiScale(frames[0])
			testvideo.CloseFrames(frames)
			for _, r := range rects {
				// Cascade boxes cover eyes to mouth, tighter than the drawn
				// head with hair and neck: require the detection to lie on
				// the face and be of face scale, not a high IoU.
				if onFace(r, boxes[0][0]) {
					detected++
					break
				}
			}
		}
		t.Logf("LBP cascade detected %d/%d synthetic faces of %d px", detected, n, size)
		assert.GreaterOrEqual(t, detected, n*9/10, "size %d", size)
	}
}

// onFace reports whether detection d lies (80%) inside face box f, with its
// centre inside f and a side of at least a third of f's.
func onFace(d, f image.Rectangle) bool {
	in := d.Intersect(f)
	c := image.Pt((d.Min.X+d.Max.X)/2, (d.Min.Y+d.Max.Y)/2)
	return !in.Empty() && c.In(f) && in.Dx()*in.Dy()*10 >= d.Dx()*d.Dy()*8 && d.Dx()*3 >= f.Dx()
}

func TestFaceVideoWithRealFaces(t *testing.T) {
	dir := testenv.SharedData(t, "faces/lfw")
	faces, fromPhotos := testvideo.FacesOrSynthetic(dir, 2, 100, 1)
	defer testvideo.CloseFrames(faces)
	require.True(t, fromPhotos)
	require.Len(t, faces, 2)
	frames, boxes, err := testvideo.FaceVideo(testvideo.VideoSpec{Width: 640, Height: 360, Frames: 3, Background: testvideo.Noise,
		Faces: []testvideo.Placement{
			{Face: faces[0], Size: 150, From: image.Pt(40, 40), To: image.Pt(100, 60)},
			{Face: faces[1], Size: 150, From: image.Pt(600, 100), To: image.Pt(400, 100)}, // starts half outside
		}})
	require.NoError(t, err)
	defer testvideo.CloseFrames(frames)
	assert.Equal(t, image.Rect(40, 40, 190, 190), boxes[0][0])
	assert.Equal(t, image.Rect(600, 100, 640, 250), boxes[0][1], "clipped to the frame")
	assert.Equal(t, image.Rect(400, 100, 550, 250), boxes[2][1])
}

func TestFacesOrSyntheticFallsBack(t *testing.T) {
	faces, fromPhotos := testvideo.FacesOrSynthetic(t.TempDir(), 3, 64, 7)
	defer testvideo.CloseFrames(faces)
	assert.False(t, fromPhotos)
	require.Len(t, faces, 3)
	for _, f := range faces {
		assert.Equal(t, 64, f.Cols())
	}
	_, err := testvideo.LoadFaces(t.TempDir(), 1)
	assert.ErrorIs(t, err, testvideo.ErrNoFaces)
}
