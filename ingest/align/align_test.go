package align

import (
	"image"
	"image/color"
	"math"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/faces"
	"github.com/lae-screening/lae/ingest/track"
	"github.com/lae-screening/lae/internal/testenv"
)

func TestSimilarity(t *testing.T) {
	cl, cr := CanonicalEyes(CropSize)
	cases := []struct {
		name   string
		fl, fr [2]float64
	}{
		{"level", [2]float64{100, 100}, [2]float64{160, 100}},
		{"tilted", [2]float64{300, 220}, [2]float64{340, 250}},
		{"steep", [2]float64{10, 50}, [2]float64{12, 10}},
		{"tiny", [2]float64{5, 5}, [2]float64{6, 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := similarity(tc.fl, tc.fr, cl, cr)
			for _, p := range [][2][2]float64{{tc.fl, cl}, {tc.fr, cr}} {
				x, y := Apply(m, p[0][0], p[0][1])
				require.InDelta(t, p[1][0], x, 1e-6)
				require.InDelta(t, p[1][1], y, 1e-6)
			}
			inv := invert(m)
			x, y := Apply(inv, cl[0], cl[1])
			require.InDelta(t, tc.fl[0], x, 1e-6)
			require.InDelta(t, tc.fl[1], y, 1e-6)
			// A similarity: equal scale on both axes, no shear.
			require.InDelta(t, m[0], m[4], 1e-9)
			require.InDelta(t, m[1], -m[3], 1e-9)
		})
	}
}

// markerFrame draws a textured frame with a red disc at l and a blue disc at r (the eyes).
func markerFrame(l, r image.Point, radius int) gocv.Mat {
	frame := gocv.NewMatWithSize(480, 640, gocv.MatTypeCV8UC3)
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			frame.SetUCharAt(y, x*3, uint8(60+x%50))
			frame.SetUCharAt(y, x*3+1, uint8(90+y%60))
			frame.SetUCharAt(y, x*3+2, uint8(40+(x+y)%40))
		}
	}
	gocv.Circle(&frame, l, radius, color.RGBA{R: 255, A: 255}, -1)
	gocv.Circle(&frame, r, radius, color.RGBA{B: 255, A: 255}, -1)
	return frame
}

// centroid returns the centre of the pixels of crop that are strongly red (wantRed) or blue.
func centroid(t *testing.T, crop gocv.Mat, wantRed bool) (float64, float64) {
	var sx, sy, n float64
	for y := 0; y < crop.Rows(); y++ {
		for x := 0; x < crop.Cols(); x++ {
			b, g, r := crop.GetUCharAt(y, x*3), crop.GetUCharAt(y, x*3+1), crop.GetUCharAt(y, x*3+2)
			hit := r > 200 && g < 60 && b < 60
			if !wantRed {
				hit = b > 200 && g < 60 && r < 60
			}
			if hit {
				sx, sy, n = sx+float64(x), sy+float64(y), n+1
			}
		}
	}
	require.Positive(t, n, "marker not found in crop")
	return sx / n, sy / n
}

// TestAlignLandmarks puts eye markers in a frame at several tilts and distances and checks that
// they land on the canonical eye positions of the crop and that CropToFrame maps back.
func TestAlignLandmarks(t *testing.T) {
	a, err := New(Options{})
	require.NoError(t, err)
	defer a.Close()
	cases := []struct {
		name     string
		cx, cy   float64
		dist     float64
		angleDeg float64
	}{
		{"level", 320, 200, 60, 0},
		{"tilt+20 large", 300, 240, 140, 20},
		{"tilt-35 small", 400, 150, 36, -35},
		{"near edge", 60, 60, 50, 10},
	}
	cl, cr := CanonicalEyes(CropSize)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			th := tc.angleDeg * math.Pi / 180
			dx, dy := tc.dist/2*math.Cos(th), tc.dist/2*math.Sin(th)
			l := image.Pt(int(math.Round(tc.cx-dx)), int(math.Round(tc.cy-dy)))
			r := image.Pt(int(math.Round(tc.cx+dx)), int(math.Round(tc.cy+dy)))
			frame := markerFrame(l, r, max(3, int(tc.dist/10)))
			defer frame.Close()
			side := int(tc.dist * 2.2)
			box := image.Rect(int(tc.cx)-side/2, int(tc.cy)-side*2/5, int(tc.cx)+side/2, int(tc.cy)+side*3/5)
			// Landmarks in the detector's order, the image-right eye given first to check sorting.
			f := faces.Face{Box: box, Landmarks: []image.Point{r, l, {int(tc.cx), int(tc.cy) + 20}, {}, {}}}
			c, err := a.Align(frame, f)
			require.NoError(t, err)
			defer c.Image.Close()
			require.True(t, c.EyesAligned)
			require.Equal(t, []int{CropSize, CropSize}, []int{c.Image.Rows(), c.Image.Cols()})
			require.Equal(t, gocv.MatTypeCV8UC3, c.Image.Type())
			rx, ry := centroid(t, c.Image, true)
			bx, by := centroid(t, c.Image, false)
			require.InDelta(t, cl[0], rx, 2.5)
			require.InDelta(t, cl[1], ry, 2.5)
			require.InDelta(t, cr[0], bx, 2.5)
			require.InDelta(t, cr[1], by, 2.5)
			x, y := Apply(c.CropToFrame, cl[0], cl[1])
			require.InDelta(t, float64(l.X), x, 0.01)
			require.InDelta(t, float64(l.Y), y, 0.01)
		})
	}
}

// TestCropToFrameCorners checks the affine against pixels: crop pixels away from the frame border
// must equal the frame pixel that CropToFrame points at.
func TestCropToFrameCorners(t *testing.T) {
	a, err := New(Options{NoEyeDetection: true})
	require.NoError(t, err)
	defer a.Close()
	frame := markerFrame(image.Pt(-50, -50), image.Pt(-60, -60), 1)
	defer frame.Close()
	l, r := image.Pt(300, 200), image.Pt(380, 230)
	c, err := a.Align(frame, faces.Face{Box: image.Rect(250, 140, 430, 340), Landmarks: []image.Point{l, r}})
	require.NoError(t, err)
	defer c.Image.Close()
	last := float64(CropSize - 1)
	for _, p := range [][2]float64{{0, 0}, {last, 0}, {0, last}, {last, last}, {128, 128}} {
		x, y := Apply(c.CropToFrame, p[0], p[1])
		require.True(t, x >= 0 && y >= 0 && x < 639 && y < 479, "corner %v maps outside the frame: %.1f,%.1f", p, x, y)
		xi, yi := int(math.Round(x)), int(math.Round(y))
		for ch := 0; ch < 3; ch++ {
			want := float64(frame.GetUCharAt(yi, xi*3+ch))
			got := float64(c.Image.GetUCharAt(int(p[1]), int(p[0])*3+ch))
			// The texture changes by at most a few levels per pixel, bilinear sampling included.
			require.InDelta(t, want, got, 4, "crop %v -> frame %.1f,%.1f channel %d", p, x, y, ch)
		}
	}
}

func TestAlignBoxFallback(t *testing.T) {
	a, err := New(Options{NoEyeDetection: true})
	require.NoError(t, err)
	defer a.Close()
	frame := markerFrame(image.Pt(-50, -50), image.Pt(-60, -60), 1)
	defer frame.Close()
	box := image.Rect(200, 100, 300, 200)
	cases := []struct {
		name string
		face faces.Face
	}{
		{"no landmarks", faces.Face{Box: box}},
		{"implausible landmarks", faces.Face{Box: box, Landmarks: []image.Point{{250, 150}, {251, 150}}}},
		{"landmarks far outside", faces.Face{Box: box, Landmarks: []image.Point{{0, 0}, {600, 400}}}},
	}
	cl, cr := CanonicalEyes(CropSize)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := a.Align(frame, tc.face)
			require.NoError(t, err)
			defer c.Image.Close()
			require.False(t, c.EyesAligned)
			require.InDelta(t, 0, c.CropToFrame[1], 1e-9, "no rotation")
			require.InDelta(t, 0, c.CropToFrame[3], 1e-9, "no rotation")
			x, y := Apply(c.CropToFrame, cl[0], cl[1])
			require.InDelta(t, 200+boxLeftEyeX*100, x, 1e-6)
			require.InDelta(t, 100+boxEyeY*100, y, 1e-6)
			x, _ = Apply(c.CropToFrame, cr[0], cr[1])
			require.InDelta(t, 200+boxRightEyeX*100, x, 1e-6)
		})
	}
}

func TestAlignErrors(t *testing.T) {
	a, err := New(Options{NoEyeDetection: true})
	require.NoError(t, err)
	defer a.Close()
	frame := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV8UC3)
	defer frame.Close()
	gray := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV8U)
	defer gray.Close()
	_, err = a.Align(frame, faces.Face{Box: image.Rect(200, 200, 300, 300)})
	require.ErrorIs(t, err, ErrBadFace)
	_, err = a.Align(frame, faces.Face{})
	require.ErrorIs(t, err, ErrBadFace)
	_, err = a.Align(gray, faces.Face{Box: image.Rect(10, 10, 50, 50)})
	require.Error(t, err)
	_, err = New(Options{EyeCascade: "/nonexistent/eye.xml"})
	require.Error(t, err)
}

// lfwFaces returns up to n LFW images (150x150, roughly centred faces) upscaled to 300x300.
func lfwFaces(t testing.TB, n int) []gocv.Mat {
	dir := filepath.Join(testenv.SharedData(t), "faces", "lfw")
	names, err := filepath.Glob(filepath.Join(dir, "*_0001.jpg"))
	if err != nil || len(names) == 0 {
		t.Skipf("no LFW images in %s", dir)
	}
	sort.Strings(names)
	step := max(1, len(names)/n)
	var out []gocv.Mat
	for i := 0; i < len(names) && len(out) < n; i += step {
		img := gocv.IMRead(names[i], gocv.IMReadColor)
		if img.Empty() {
			img.Close()
			continue
		}
		big := gocv.NewMat()
		gocv.Resize(img, &big, image.Pt(300, 300), 0, 0, gocv.InterpolationLinear)
		img.Close()
		out = append(out, big)
	}
	return out
}

func yunet(t testing.TB) faces.Detector {
	d, err := faces.Open(faces.SpecYuNet)
	if err != nil {
		t.Skipf("yunet: %v", err)
	}
	return d
}

// TestEyeCascadeOnRotatedFaces rotates real faces by a known angle, aligns them from the Haar
// box alone (eye cascade) and checks, against YuNet's eye landmarks as ground truth, that the
// eyes land near the canonical points in most crops.
func TestEyeCascadeOnRotatedFaces(t *testing.T) {
	imgs := lfwFaces(t, 40)
	defer func() {
		for i := range imgs {
			imgs[i].Close()
		}
	}()
	haar, err := faces.Open(faces.SpecHaar)
	require.NoError(t, err)
	defer haar.Close()
	yn := yunet(t)
	defer yn.Close()
	a, err := New(Options{})
	require.NoError(t, err)
	defer a.Close()
	cl, cr := CanonicalEyes(CropSize)
	tried, eyed, good := 0, 0, 0
	for i, img := range imgs {
		rot := gocv.GetRotationMatrix2D(image.Pt(150, 150), float64(i%3-1)*12, 1)
		frame := gocv.NewMat()
		gocv.WarpAffineWithParams(img, &frame, rot, image.Pt(300, 300), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
		rot.Close()
		hs, err1 := haar.Detect(frame)
		ys, err2 := yn.Detect(frame)
		require.NoError(t, err1)
		require.NoError(t, err2)
		if len(hs) == 0 || len(ys) == 0 {
			frame.Close()
			continue
		}
		tried++
		c, err := a.Align(frame, hs[0])
		require.NoError(t, err)
		if c.EyesAligned {
			eyed++
			// Ground truth eyes through the inverse of CropToFrame.
			toCrop := invert(c.CropToFrame)
			lx, ly := Apply(toCrop, float64(ys[0].Landmarks[0].X), float64(ys[0].Landmarks[0].Y))
			rx, ry := Apply(toCrop, float64(ys[0].Landmarks[1].X), float64(ys[0].Landmarks[1].Y))
			if math.Hypot(lx-cl[0], ly-cl[1]) < 10 && math.Hypot(rx-cr[0], ry-cr[1]) < 10 {
				good++
			}
		}
		c.Image.Close()
		frame.Close()
	}
	t.Logf("eye cascade: %d faces, %d eye-aligned, %d within 10 px of the canonical eyes", tried, eyed, good)
	require.Greater(t, tried, 20)
	require.GreaterOrEqual(t, float64(eyed), 0.5*float64(tried))
	require.GreaterOrEqual(t, float64(good), 0.8*float64(eyed))
}

// TestBoxEyeRatios measures where YuNet's eyes sit inside the haar-alt cascade's boxes on LFW and
// checks the box fallback constants against it.
func TestBoxEyeRatios(t *testing.T) {
	if testing.Short() {
		t.Skip("calibration measurement over 60 LFW faces")
	}
	imgs := lfwFaces(t, 60)
	defer func() {
		for i := range imgs {
			imgs[i].Close()
		}
	}()
	haar, err := faces.Open(faces.SpecHaarAlt)
	require.NoError(t, err)
	defer haar.Close()
	yn := yunet(t)
	defer yn.Close()
	var sl, sr, sy, n float64
	for _, img := range imgs {
		hs, _ := haar.Detect(img)
		ys, _ := yn.Detect(img)
		if len(hs) == 0 || len(ys) == 0 || track.IoU(hs[0].Box, ys[0].Box) < 0.4 {
			continue
		}
		b := hs[0].Box
		l, r := ys[0].Landmarks[0], ys[0].Landmarks[1]
		sl += float64(l.X-b.Min.X) / float64(b.Dx())
		sr += float64(r.X-b.Min.X) / float64(b.Dx())
		sy += (float64(l.Y+r.Y)/2 - float64(b.Min.Y)) / float64(b.Dy())
		n++
	}
	require.Greater(t, n, 30.0)
	t.Logf("cascade box eye ratios over %v faces: left x %.3f, right x %.3f, y %.3f", n, sl/n, sr/n, sy/n)
	require.InDelta(t, boxLeftEyeX, sl/n, 0.03)
	require.InDelta(t, boxRightEyeX, sr/n, 0.03)
	require.InDelta(t, boxEyeY, sy/n, 0.03)
}

func BenchmarkAlignEyeCascade(b *testing.B) {
	a, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	frame := markerFrame(image.Pt(300, 200), image.Pt(360, 200), 5)
	defer frame.Close()
	f := faces.Face{Box: image.Rect(260, 140, 400, 300)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := a.Align(frame, f)
		if err != nil {
			b.Fatal(err)
		}
		c.Image.Close()
	}
}
