//go:build matprofile

package evidence

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/aggregator/internal/synth"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestRenderFreesEveryMat renders on a frame, on the heatmap alone, through the fallback for a
// corrupt frame and without a heatmap, and checks gocv's live Mat count is back where it started.
// Run with: go test -tags matprofile -run Leak ./aggregator/evidence/
func TestRenderFreesEveryMatLeak(t *testing.T) {
	face := synth.Face{Box: laev1.Rect{X: 100, Y: 50, W: 128, H: 128}, AngleDeg: 15, HotX: 16, HotY: 16, HotR: 5}
	s := synth.Score("v", 1, 0, 1, 0.8, face, 640, 360)
	jpg, err := synth.FrameJPEG(640, 360, 0.5, face.Box)
	require.NoError(t, err)
	loc, err := Locate(s)
	require.NoError(t, err)
	bare := synth.Score("v", 1, 0, 1, 0.8, face, 640, 360)
	bare.HeatmapWidth, bare.HeatmapHeight, bare.Heatmap = 0, 0, nil
	start := gocv.MatProfile.Count()
	for range 5 {
		_, err := Render(bare, &laev1.FrameImage{FrameWidth: 640, FrameHeight: 360, Jpeg: jpg}, loc)
		require.NoError(t, err)
		_, err = Render(bare, &laev1.FrameImage{Jpeg: []byte("garbage")}, loc)
		require.ErrorIs(t, err, ErrNothingToDraw)
		fc := &laev1.FaceCrop{Width: 8, Height: 8, Format: laev1.PixelFormat_PIXEL_FORMAT_BGR8, Pixels: make([]byte, 8*8*3)}
		_, err = RenderWithCrop(bare, nil, fc, loc)
		require.NoError(t, err)
		_, err = RenderWithCrop(s, &laev1.FrameImage{FrameWidth: 640, FrameHeight: 360, Jpeg: jpg}, fc, loc)
		require.NoError(t, err)
		for _, fi := range []*laev1.FrameImage{
			{FrameWidth: 640, FrameHeight: 360, Jpeg: jpg}, nil, {Jpeg: []byte("garbage")},
		} {
			_, err := Render(s, fi, loc)
			require.NoError(t, err)
		}
	}
	require.Equal(t, start, gocv.MatProfile.Count(), "live Mats after rendering")
}
