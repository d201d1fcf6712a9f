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
// the hot spot on the face: the crop panel shows the photo's face and the hot spot turns
// yellow in the heatmap panel.
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
			require.Equal(t, canvasW, img.Cols())
			require.Equal(t, canvasH, img.Rows())
			// The crop panel's centre is the photo's centre (the crop is centred on the face).
			cx, cy := int(face.Box.X+face.Box.W/2), int(face.Box.Y+face.Box.H/2)
			a, b := orig.GetVecbAt(cy, cx), img.GetVecbAt(panelY+panel/2, cropX+panel/2)
			for c := range 3 {
				assert.InDelta(t, int(a[c]), int(b[c]), 40, "crop centre %v, photo centre %v", b, a)
			}
			// The hot spot in the heatmap panel is viridis yellow over the skin.
			hot := img.GetVecbAt(panelY+panel/2, heatX+panel/2)
			assert.Greater(t, int(hot[2]), int(hot[0])+40, "hot spot should be yellow-dominated, got BGR %v", hot)
		})
	}
}
