package testvideo_test

import (
	"context"
	"image"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/testvideo"
	"github.com/lae-screening/lae/internal/testenv"
)

// TestWriteNoLeaks generates and encodes clips repeatedly: encoder, muxer,
// scaler, frames and Mats are all freed (Mat count with -tags matprofile).
func TestWriteNoLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes dozens of clips")
	}
	dir := t.TempDir()
	once := func() {
		face := testvideo.SyntheticFace(96, 5)
		frames, _, err := testvideo.FaceVideo(testvideo.VideoSpec{Width: 320, Height: 240, Frames: 10, Background: testvideo.Noise,
			Faces: []testvideo.Placement{{Face: face, From: image.Pt(0, 0), To: image.Pt(200, 100)}}})
		face.Close()
		require.NoError(t, err)
		require.NoError(t, testvideo.Write(context.Background(), filepath.Join(dir, "a.mp4"), frames, 10))
		// A failing write must free what it set up too.
		require.Error(t, testvideo.Write(context.Background(), filepath.Join(dir, "no/such/dir.mp4"), frames, 10))
		testvideo.CloseFrames(frames)
	}
	mats0, haveMats := testenv.LiveMats()
	for i := 0; i < 10; i++ { // x264 threads grow malloc arenas to a plateau first
		once()
	}
	base := testenv.SettledRSS(t)
	const rounds = 30
	for i := 0; i < rounds; i++ {
		once()
	}
	grown := testenv.SettledRSS(t) - base
	t.Logf("RSS %d MiB -> growth %+d KiB over %d rounds", base>>20, grown>>10, rounds)
	// A leaked x264 encoder holds ~10 MiB (300 MiB over the rounds);
	// malloc arena noise from x264's threads stays under ~30 MiB.
	assert.Less(t, grown, int64(48<<20))
	if haveMats {
		mats, _ := testenv.LiveMats()
		assert.Equal(t, mats0, mats, "live gocv Mats")
	}
}
