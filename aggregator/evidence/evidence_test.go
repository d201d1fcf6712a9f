package evidence

import (
	"encoding/json"
	"fmt"
	"image"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/aggregator/internal/synth"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

func TestOtsu(t *testing.T) {
	var bimodal [256]int
	bimodal[20], bimodal[200] = 100, 50
	got := Otsu(&bimodal)
	assert.GreaterOrEqual(t, got, 20)
	assert.Less(t, got, 200)

	var single [256]int
	single[77] = 10
	assert.Equal(t, 0, Otsu(&single))
	assert.Equal(t, 0, Otsu(&[256]int{}))
}

// heat builds a w×h map with a background value and rectangles of given values.
func heat(w, h int, bg byte, blobs ...struct {
	r image.Rectangle
	v byte
}) []byte {
	out := make([]byte, w*h)
	for i := range out {
		out[i] = bg
	}
	for _, b := range blobs {
		for y := b.r.Min.Y; y < b.r.Max.Y; y++ {
			for x := b.r.Min.X; x < b.r.Max.X; x++ {
				out[y*w+x] = b.v
			}
		}
	}
	return out
}

type blob = struct {
	r image.Rectangle
	v byte
}

func TestHotRegion(t *testing.T) {
	tests := []struct {
		name   string
		heat   []byte
		w, h   int
		want   image.Rectangle
		wantOK bool
		err    bool
	}{
		{"single blob", heat(16, 16, 5, blob{image.Rect(3, 4, 7, 9), 240}), 16, 16, image.Rect(3, 4, 7, 9), true, false},
		{"largest of two blobs wins", heat(16, 16, 5, blob{image.Rect(0, 0, 2, 2), 255}, blob{image.Rect(8, 8, 14, 12), 200}), 16, 16, image.Rect(8, 8, 14, 12), true, false},
		{"diagonal pixels are connected", heat(8, 8, 0, blob{image.Rect(1, 1, 2, 2), 200}, blob{image.Rect(2, 2, 3, 3), 200}), 8, 8, image.Rect(1, 1, 3, 3), true, false},
		{"below half the peak is not hot", heat(16, 16, 0, blob{image.Rect(0, 0, 16, 16), 100}, blob{image.Rect(10, 10, 12, 12), 255}), 16, 16, image.Rect(10, 10, 12, 12), true, false},
		{"flat map has no hot region", heat(4, 3, 200), 4, 3, image.Rectangle{}, false, false},
		{"low contrast map has no hot region", heat(16, 16, 120, blob{image.Rect(3, 3, 6, 6), 120 + MinContrast - 1}), 16, 16, image.Rectangle{}, false, false},
		{"just enough contrast", heat(16, 16, 120, blob{image.Rect(3, 3, 6, 6), 120 + MinContrast}), 16, 16, image.Rect(3, 3, 6, 6), true, false},
		{"threshold is relative to the map's floor", heat(16, 16, 150, blob{image.Rect(0, 0, 16, 8), 180}, blob{image.Rect(4, 10, 6, 12), 250}), 16, 16, image.Rect(4, 10, 6, 12), true, false},
		{"zero map has no hot region", heat(8, 8, 0), 8, 8, image.Rectangle{}, false, false},
		{"size mismatch", make([]byte, 10), 4, 4, image.Rectangle{}, false, true},
		{"zero size", nil, 0, 0, image.Rectangle{}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := HotRegion(tc.heat, tc.w, tc.h)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestAffineAndClip(t *testing.T) {
	// 90° rotation plus translation: the unit square maps to a square left of the origin.
	a := Affine{0, -1, 10, 1, 0, 20}
	r := a.MapRect(laev1.Rect{X: 0, Y: 0, W: 2, H: 4})
	assert.InDelta(t, 6.0, r.X, 1e-9)
	assert.InDelta(t, 20.0, r.Y, 1e-9)
	assert.InDelta(t, 4.0, r.W, 1e-9)
	assert.InDelta(t, 2.0, r.H, 1e-9)

	tests := []struct {
		name string
		in   laev1.Rect
		w, h uint32
		want laev1.Rect
	}{
		{"inside", laev1.Rect{X: 1, Y: 2, W: 3, H: 4}, 10, 10, laev1.Rect{X: 1, Y: 2, W: 3, H: 4}},
		{"overhangs", laev1.Rect{X: -5, Y: 8, W: 10, H: 10}, 10, 10, laev1.Rect{X: 0, Y: 8, W: 5, H: 2}},
		{"outside", laev1.Rect{X: 20, Y: 20, W: 5, H: 5}, 10, 10, laev1.Rect{X: 10, Y: 10, W: 0, H: 0}},
		{"unknown frame size", laev1.Rect{X: -1, Y: -1, W: 5, H: 5}, 0, 0, laev1.Rect{X: -1, Y: -1, W: 5, H: 5}},
		{"NaN is no rectangle", laev1.Rect{X: math.NaN(), Y: 1, W: 5, H: 5}, 10, 10, laev1.Rect{}},
		{"infinite is no rectangle", laev1.Rect{X: 0, Y: 0, W: math.Inf(1), H: 5}, 0, 0, laev1.Rect{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, Clip(tc.in, tc.w, tc.h)) })
	}

	_, err := ParseAffine([]float64{1, 2, 3})
	require.Error(t, err)
	_, err = ParseAffine([]float64{1, 0, math.NaN(), 0, 1, 0})
	require.Error(t, err)
}

// inside reports whether r lies within outer (with a small tolerance for rounding).
func inside(r, outer laev1.Rect) bool {
	const eps = 1e-6
	return r.X >= outer.X-eps && r.Y >= outer.Y-eps && r.X+r.W <= outer.X+outer.W+eps && r.Y+r.H <= outer.Y+outer.H+eps
}

func TestLocateMapsHotSpotOntoTheFace(t *testing.T) {
	const fw, fh = 1280, 720
	tests := []struct {
		name string
		face synth.Face
	}{
		{"upright face, hot on the mouth", synth.Face{Box: laev1.Rect{X: 600, Y: 200, W: 200, H: 200}, HotX: 16, HotY: 24, HotR: 5}},
		{"tilted face, hot on the left eye", synth.Face{Box: laev1.Rect{X: 100, Y: 300, W: 160, H: 160}, AngleDeg: 20, HotX: 10, HotY: 12, HotR: 4}},
		{"face over the edge", synth.Face{Box: laev1.Rect{X: 1180, Y: 600, W: 200, H: 200}, HotX: 8, HotY: 8, HotR: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := synth.Score("v", 3, 0, 1, 0.9, tc.face, fw, fh)
			loc, err := Locate(s)
			require.NoError(t, err)
			frame := laev1.Rect{W: fw, H: fh}
			require.True(t, inside(loc.Face, frame), "face %+v", loc.Face)
			require.True(t, inside(loc.Hot, frame), "hot %+v", loc.Hot)
			require.Positive(t, loc.Hot.W)
			require.Positive(t, loc.Hot.H)
			// The hot spot's centre, mapped by the affine, must be inside the hot region, and
			// the hot region must overlap the face box.
			a, err := ParseAffine(s.GetCropToFrame())
			require.NoError(t, err)
			k := float64(synth.CropSize) / synth.HeatSize
			cx, cy := a.Apply((tc.face.HotX+0.5)*k, (tc.face.HotY+0.5)*k)
			if cx < fw && cy < fh {
				assert.True(t, cx >= loc.Hot.X && cx <= loc.Hot.X+loc.Hot.W && cy >= loc.Hot.Y && cy <= loc.Hot.Y+loc.Hot.H,
					"hot spot centre (%.1f,%.1f) not in %+v", cx, cy, loc.Hot)
			}
			ix := math.Min(loc.Hot.X+loc.Hot.W, loc.Face.X+loc.Face.W) - math.Max(loc.Hot.X, loc.Face.X)
			iy := math.Min(loc.Hot.Y+loc.Hot.H, loc.Face.Y+loc.Face.H) - math.Max(loc.Hot.Y, loc.Face.Y)
			assert.True(t, ix > 0 && iy > 0, "hot %+v does not overlap face %+v", loc.Hot, loc.Face)
			// The hot region is much smaller than the face: it localises.
			assert.Less(t, loc.Hot.W*loc.Hot.H, 0.5*tc.face.Box.W*tc.face.Box.H)
		})
	}
}

func TestLocateWithoutOrWithBadHeatmap(t *testing.T) {
	s := synth.Score("v", 0, 0, 1, 0.5, synth.Face{Box: laev1.Rect{X: 10, Y: 10, W: 50, H: 50}}, 100, 100)
	s.HeatmapWidth, s.HeatmapHeight, s.Heatmap = 0, 0, nil
	loc, err := Locate(s)
	require.NoError(t, err)
	assert.Equal(t, laev1.Rect{X: 10, Y: 10, W: 50, H: 50}, loc.Face)
	assert.Zero(t, loc.Hot)

	s = synth.Score("v", 0, 0, 1, 0.5, synth.Face{Box: laev1.Rect{X: 10, Y: 10, W: 50, H: 50}}, 100, 100)
	s.Heatmap = s.Heatmap[:7]
	_, err = Locate(s)
	require.ErrorContains(t, err, "heatmap")

	s = synth.Score("v", 0, 0, 1, 0.5, synth.Face{Box: laev1.Rect{X: 10, Y: 10, W: 50, H: 50}}, 100, 100)
	s.CropToFrame = nil
	_, err = Locate(s)
	require.ErrorContains(t, err, "crop_to_frame")
}

// decode decodes a JPEG and returns the Mat (caller closes).
func decode(t *testing.T, b []byte) gocv.Mat {
	t.Helper()
	m, err := gocv.IMDecode(b, gocv.IMReadColor)
	require.NoError(t, err)
	require.False(t, m.Empty(), "evidence is not a decodable JPEG")
	return m
}

func TestRenderOnFrame(t *testing.T) {
	const fw, fh = 1280, 720
	face := synth.Face{Box: laev1.Rect{X: 500, Y: 200, W: 256, H: 256}, HotX: 16, HotY: 16, HotR: 5}
	s := synth.Score("v", 7, 0, 1, 0.93, face, fw, fh)
	for _, scale := range []float64{1, 0.5} {
		jpg, err := synth.FrameJPEG(fw, fh, scale, face.Box)
		require.NoError(t, err)
		fi := &laev1.FrameImage{VideoId: "v", FrameIndex: 7, FrameWidth: fw, FrameHeight: fh, Jpeg: jpg}
		loc, err := Locate(s)
		require.NoError(t, err)
		out, err := Render(s, fi, loc)
		require.NoError(t, err)
		img := decode(t, out)
		// The layout does not depend on the frame size.
		require.Equal(t, canvasW, img.Cols())
		require.Equal(t, canvasH, img.Rows())
		skin := [3]int{170, 190, 220} // synth's face ellipse, BGR
		// Crop panel: the aligned crop enlarged; the face ellipse fills its centre, the frame's
		// background (BGR 70,90,60) its corner.
		assertBGR(t, img, cropX+panel/2, panelY+panel/2, skin, 25, "crop panel centre, scale %v", scale)
		assertBGR(t, img, cropX+4, panelY+panel-4, [3]int{70, 90, 60}, 25, "crop panel corner, scale %v", scale)
		// Heatmap panel: the hot spot (heatmap (16,16) = crop centre) is viridis yellow
		// (BGR 37,231,253) half over the skin; the cold corner is viridis purple over the
		// background, darker than the crop's.
		c := img.GetVecbAt(panelY+165, heatX+165) // heatmap pixel (16,16)'s centre
		assert.Greater(t, int(c[2]), 200, "scale %v: hot spot red %v", scale, c)
		assert.Less(t, int(c[0]), skin[0]-40, "scale %v: hot spot blue %v", scale, c)
		cold := img.GetVecbAt(panelY+panel-4, heatX+4)
		assert.Less(t, int(cold[1]), 70, "scale %v: cold corner %v", scale, cold)
		// Legend: yellow at the top (1), dark purple at the bottom (0).
		assertBGR(t, img, legendX+legendW/2, panelY+2, [3]int{37, 231, 253}, 30, "legend top")
		assertBGR(t, img, legendX+legendW/2, panelY+panel-3, [3]int{84, 1, 68}, 30, "legend bottom")
		// Thumbnail: 240 px wide (k = 0.1875); the face box (500..756, 200..456) becomes
		// x 93..142, y 37..86: its left edge green, its inside the skin.
		assertBGR(t, img, thumbX+93, panelY+60, [3]int{0, 255, 0}, 60, "thumbnail face box edge")
		assertBGR(t, img, thumbX+117, panelY+61, skin, 30, "thumbnail face")
		assertBGR(t, img, thumbX+200, panelY+120, [3]int{70, 90, 60}, 25, "thumbnail background")
		// Header: the caption writes white pixels on the dark band.
		assert.Greater(t, brightPixels(img, image.Rect(margin, 6, canvasW/2, 28)), 100, "caption text")
		img.Close()
	}
}

func TestRenderWithoutFrame(t *testing.T) {
	face := synth.Face{Box: laev1.Rect{X: 0, Y: 0, W: 100, H: 100}, HotX: 5, HotY: 5, HotR: 3}
	s := synth.Score("v", 1, 0, 1, 0.7, face, 640, 360)
	loc, err := Locate(s)
	require.NoError(t, err)
	for name, fi := range map[string]*laev1.FrameImage{
		"no frame image":     nil,
		"corrupt frame jpeg": {Jpeg: []byte("<html>not a jpeg</html>")},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := Render(s, fi, loc)
			require.NoError(t, err)
			img := decode(t, out)
			defer img.Close()
			assert.Equal(t, canvasW, img.Cols())
			assert.Equal(t, canvasH, img.Rows())
			// Crop panel and thumbnail are grey placeholders, the heatmap panel shows the
			// map: yellow at the hot spot (heatmap (5,5) of 32 = panel (55,55)).
			assertBGR(t, img, cropX+4, panelY+4, [3]int{76, 70, 70}, 10, "crop placeholder")
			assertBGR(t, img, thumbX+4, panelY+4, [3]int{76, 70, 70}, 10, "thumbnail placeholder")
			assertBGR(t, img, heatX+55, panelY+55, [3]int{37, 231, 253}, 40, "hot spot")
		})
	}
	bare := proto.Clone(s).(*laev1.FrameScore)
	bare.HeatmapWidth, bare.HeatmapHeight, bare.Heatmap = 0, 0, nil
	_, err = Render(bare, nil, loc)
	require.ErrorIs(t, err, ErrNothingToDraw)
	// A frame without a heatmap still shows the crop.
	jpg, err := synth.FrameJPEG(640, 360, 1, face.Box)
	require.NoError(t, err)
	out, err := Render(bare, &laev1.FrameImage{FrameWidth: 640, FrameHeight: 360, Jpeg: jpg}, loc)
	require.NoError(t, err)
	img := decode(t, out)
	defer img.Close()
	assertBGR(t, img, cropX+panel/2, panelY+panel/2, [3]int{170, 190, 220}, 25, "crop without heatmap")
}

// TestRenderWithCrop fills the crop panel from the crop message, with or without a frame
// image and a heatmap.
func TestRenderWithCrop(t *testing.T) {
	face := synth.Face{Box: laev1.Rect{X: 100, Y: 50, W: 128, H: 128}, HotX: 16, HotY: 16, HotR: 5}
	s := synth.Score("v", 1, 0, 1, 0.8, face, 640, 360)
	loc, err := Locate(s)
	require.NoError(t, err)
	fc := &laev1.FaceCrop{Width: 64, Height: 64, Format: laev1.PixelFormat_PIXEL_FORMAT_BGR8, Pixels: make([]byte, 64*64*3)}
	for i := range 64 * 64 {
		fc.Pixels[3*i], fc.Pixels[3*i+1], fc.Pixels[3*i+2] = 10, 200, 30
	}
	bare := proto.Clone(s).(*laev1.FrameScore)
	bare.HeatmapWidth, bare.HeatmapHeight, bare.Heatmap = 0, 0, nil
	for name, sc := range map[string]*laev1.FrameScore{"with heatmap": s, "without heatmap": bare} {
		t.Run(name, func(t *testing.T) {
			out, err := RenderWithCrop(sc, nil, fc, loc)
			require.NoError(t, err)
			img := decode(t, out)
			defer img.Close()
			assertBGR(t, img, cropX+panel/2, panelY+panel/2, [3]int{10, 200, 30}, 20, "crop from the message")
			assertBGR(t, img, thumbX+4, panelY+4, [3]int{76, 70, 70}, 10, "thumbnail placeholder")
		})
	}
	// A malformed crop falls back to the frame image's re-cut.
	jpg, err := synth.FrameJPEG(640, 360, 1, face.Box)
	require.NoError(t, err)
	out, err := RenderWithCrop(s, &laev1.FrameImage{FrameWidth: 640, FrameHeight: 360, Jpeg: jpg},
		&laev1.FaceCrop{Width: 64, Height: 64, Pixels: []byte{1, 2, 3}}, loc)
	require.NoError(t, err)
	img := decode(t, out)
	defer img.Close()
	assertBGR(t, img, cropX+panel/2, panelY+panel/2, [3]int{170, 190, 220}, 25, "re-cut crop")
}

// TestColormapIsMonotonicInLuminance checks the evidence colour map is perceptual: luminance
// (Rec. 601 luma) rises with the value, so a brighter spot always means a higher score.
func TestColormapIsMonotonicInLuminance(t *testing.T) {
	ramp := make([]byte, 256)
	for i := range ramp {
		ramp[i] = byte(i)
	}
	src, err := gocv.NewMatFromBytes(1, 256, gocv.MatTypeCV8U, ramp)
	require.NoError(t, err)
	defer src.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	colorize(src, &dst)
	prev := -1.0
	for i := range 256 {
		c := dst.GetVecbAt(0, i)
		y := 0.114*float64(c[0]) + 0.587*float64(c[1]) + 0.299*float64(c[2])
		assert.GreaterOrEqual(t, y, prev-0.5, "luma falls at %d: %v", i, c)
		prev = y
	}
	first, last := dst.GetVecbAt(0, 0), dst.GetVecbAt(0, 255)
	assert.Greater(t, int(last[1])-int(first[1]), 150, "range 0..1 spans dark to bright")
}

func TestPartAt(t *testing.T) {
	// Canonical crop: eyes at x 0.375 (image left) and 0.625, y 0.41; d = 0.25.
	for _, c := range []struct {
		u, v float64
		want string
	}{
		{0.375, 0.41, PartRightEye}, // image's left eye is the subject's right
		{0.625, 0.41, PartLeftEye},
		{0.5, 0.41, PartNose}, // bridge
		{0.5, 0.55, PartNose},
		{0.5, 0.70, PartMouth},
		{0.58, 0.72, PartMouth},
		{0.5, 0.25, PartForehead},
		{0.5, 0.86, PartJawLine}, // chin
		{0.22, 0.72, PartJawLine},
		{0.34, 0.58, PartRightCheek},
		{0.68, 0.60, PartLeftCheek},
		{0.02, 0.5, PartBackground},
		{0.5, 0.99, PartBackground},
		{0.5, 0.0, PartBackground},
	} {
		assert.Equal(t, c.want, PartAt(c.u, c.v), "(%v, %v)", c.u, c.v)
	}
	assert.Empty(t, PartAt(math.NaN(), 0.5))
}

func TestPartOfScore(t *testing.T) {
	// Hot spot at heatmap (16, 22) of 32: crop fraction (0.52, 0.70), the mouth.
	face := synth.Face{Box: laev1.Rect{X: 100, Y: 50, W: 128, H: 128}, HotX: 16, HotY: 22, HotR: 4}
	s := synth.Score("v", 1, 0, 1, 0.8, face, 640, 360)
	loc, err := Locate(s)
	require.NoError(t, err)
	assert.Equal(t, PartMouth, Part(s, loc))
	// No hot region, no part.
	assert.Empty(t, Part(s, Location{}))
}

func assertBGR(t *testing.T, img gocv.Mat, x, y int, want [3]int, tol int, msg string, args ...any) {
	t.Helper()
	c := img.GetVecbAt(y, x)
	for i := range 3 {
		if !assert.InDelta(t, want[i], int(c[i]), float64(tol), "%s: at (%d,%d) got BGR %v, want %v", fmt.Sprintf(msg, args...), x, y, c, want) {
			return
		}
	}
}

func brightPixels(img gocv.Mat, r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if c := img.GetVecbAt(y, x); c[0] > 200 && c[1] > 200 && c[2] > 200 {
				n++
			}
		}
	}
	return n
}

// FuzzLocateAndRender feeds arbitrary bytes, decoded as a FrameScore, through the geometry and
// the renderer: malformed detector output must give an error, never a panic or a crash in C.
func FuzzLocateAndRender(f *testing.F) {
	good := synth.Score("v", 1, 0, 1, 0.7, synth.Face{Box: laev1.Rect{X: 10, Y: 10, W: 64, H: 64}, HotX: 4, HotY: 4, HotR: 3}, 160, 120)
	seed, err := proto.Marshal(good)
	require.NoError(f, err)
	f.Add(seed)
	bad := proto.Clone(good).(*laev1.FrameScore)
	bad.HeatmapWidth = 1 << 30
	seed2, err := proto.Marshal(bad)
	require.NoError(f, err)
	f.Add(seed2)
	f.Add([]byte{})
	f.Fuzz(func(_ *testing.T, data []byte) {
		var s laev1.FrameScore
		if proto.Unmarshal(data, &s) != nil {
			return
		}
		// Bound the rendered size so the fuzzer explores structure, not memory.
		if s.GetCropWidth() > 2048 || s.GetCropHeight() > 2048 || s.GetHeatmapWidth() > 1024 {
			return
		}
		loc, err := Locate(&s)
		if err != nil {
			return
		}
		_, _ = Render(&s, nil, loc)
	})
}

func BenchmarkLocate(b *testing.B) {
	s := synth.Score("v", 1, 0, 1, 0.7, synth.Face{Box: laev1.Rect{X: 500, Y: 200, W: 256, H: 256}, HotX: 16, HotY: 16, HotR: 5}, 1280, 720)
	for b.Loop() {
		if _, err := Locate(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	face := synth.Face{Box: laev1.Rect{X: 500, Y: 200, W: 256, H: 256}, AngleDeg: 10, HotX: 16, HotY: 16, HotR: 5}
	s := synth.Score("v", 1, 0, 1, 0.7, face, 1280, 720)
	jpg, err := synth.FrameJPEG(1280, 720, 1, face.Box)
	require.NoError(b, err)
	fi := &laev1.FrameImage{FrameWidth: 1280, FrameHeight: 720, Jpeg: jpg}
	loc, err := Locate(s)
	require.NoError(b, err)
	b.Run("frame720p", func(b *testing.B) {
		for b.Loop() {
			if _, err := Render(s, fi, loc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("heatmapOnly", func(b *testing.B) {
		for b.Loop() {
			if _, err := Render(s, nil, loc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzGeometry drives Locate and Render with arbitrary heatmaps, sizes and affines: any
// located rectangle lies inside a known frame, and nothing panics or crashes in OpenCV.
func FuzzGeometry(f *testing.F) {
	good := synth.Face{Box: laev1.Rect{X: 10, Y: 10, W: 64, H: 64}, AngleDeg: 30, HotX: 4, HotY: 4, HotR: 3}
	a := good.Affine()
	f.Add(good.Heatmap(), uint8(synth.HeatSize), uint16(256), uint16(256), a[0], a[1], a[2], a[3], a[4], a[5], uint16(160), uint16(120))
	f.Add([]byte{0, 255, 255, 0}, uint8(2), uint16(0), uint16(3), 1e308, -1e308, 0.0, 0.0, 1.0, 0.0, uint16(0), uint16(1))
	f.Fuzz(func(t *testing.T, heat []byte, w uint8, cw, ch uint16, a0, a1, a2, a3, a4, a5 float64, fw, fh uint16) {
		if w == 0 || len(heat) == 0 || len(heat) > 64*64 || cw > 1024 || ch > 1024 {
			return
		}
		hh := len(heat) / int(w)
		s := &laev1.FrameScore{
			Box:       &laev1.Box{X: float32(a2), Y: float32(a5), W: float32(cw), H: float32(ch)},
			CropWidth: uint32(cw), CropHeight: uint32(ch), FrameWidth: uint32(fw), FrameHeight: uint32(fh),
			HeatmapWidth: uint32(w), HeatmapHeight: uint32(hh), Heatmap: heat[:int(w)*hh],
			CropToFrame: []float64{a0, a1, a2, a3, a4, a5}, Score: 0.5,
		}
		loc, err := Locate(s)
		if err != nil {
			return
		}
		if fw > 0 && fh > 0 {
			frame := laev1.Rect{W: float64(fw), H: float64(fh)}
			for _, r := range []laev1.Rect{loc.Face, loc.Hot} {
				if !inside(r, frame) {
					t.Fatalf("%+v outside frame %dx%d", r, fw, fh)
				}
			}
		}
		if _, err := json.Marshal([]laev1.Rect{loc.Face, loc.Hot}); err != nil {
			t.Fatalf("location cannot be written as JSON: %v", err)
		}
		_, _ = Render(s, nil, loc)
	})
}
