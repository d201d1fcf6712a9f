package evidence

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/aggregator/internal/synth"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestRenderOnRealPhotos draws evidence on real LFW photos (250x250, the face centred) with
// the hot spot on the face: the image keeps the photo's size, the hot spot turns red, and the
// corners of the photo, outside the crop, are untouched.
func TestRenderOnRealPhotos(t *testing.T) {
	photos, err := filepath.Glob(filepath.Join(testenv.SharedData(t), "faces", "lfw", "*.jpg"))
	require.NoError(t, err)
	if len(photos) == 0 {
		t.Skip("no LFW photos in ../shared/data/faces/lfw")
	}
	for _, p := range photos[:min(3, len(photos))] {
		t.Run(filepath.Base(p), func(t *testing.T) {
			jpg, err := os.ReadFile(p)
			require.NoError(t, err)
			orig, err := gocv.IMDecode(jpg, gocv.IMReadColor)
			require.NoError(t, err)
			defer orig.Close()
			w, h := orig.Cols(), orig.Rows()
			face := synth.Face{Box: laev1.Rect{X: float64(w) * 0.3, Y: float64(h) * 0.3, W: float64(w) * 0.4, H: float64(w) * 0.4},
				HotX: 16, HotY: 16, HotR: 4}
			s := synth.Score("lfw", 0, 0, 1, 0.88, face, uint32(w), uint32(h))
			loc, err := Locate(s)
			require.NoError(t, err)
			out, err := Render(s, &laev1.FrameImage{FrameWidth: uint32(w), FrameHeight: uint32(h), Jpeg: jpg}, loc)
			require.NoError(t, err)
			img := decode(t, out)
			defer img.Close()
			require.Equal(t, w, img.Cols())
			require.Equal(t, h, img.Rows())
			cx, cy := int(face.Box.X+face.Box.W/2), int(face.Box.Y+face.Box.H/2)
			hot := img.GetVecbAt(cy, cx)
			assert.Greater(t, int(hot[2]), int(hot[0])+40, "hot spot should be red-dominated, got BGR %v", hot)
			// Bottom-right corner: outside the crop and the caption, so as in the photo (up
			// to JPEG re-encoding).
			a, b := orig.GetVecbAt(h-3, w-3), img.GetVecbAt(h-3, w-3)
			for c := range 3 {
				assert.InDelta(t, int(a[c]), int(b[c]), 20, "corner changed: %v -> %v", a, b)
			}
		})
	}
}
