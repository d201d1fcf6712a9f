package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/faces"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestFaceRate measures, for every single-speaker clip (videos/asl) and hamilton_short.mp4, the
// share of sampled frames (5 fps) where ingest published at least one face. The issue requires
// faces in most sampled frames of the single-speaker clips: each must exceed 50 % and their
// mean 85 % (measured with the default YuNet: 100 % on all; haar-alt: 60-100 %, mean 93 %).
// LAE_FACE_RATE_MODELS (comma-separated faces.Open specs) measures other detectors too.
func TestFaceRate(t *testing.T) {
	if testing.Short() {
		t.Skip("face rate over 21 clips takes minutes")
	}
	clips, _ := filepath.Glob(filepath.Join(testenv.SharedData(t), "videos", "asl", "*.mkv"))
	if len(clips) == 0 {
		t.Skip("no asl clips")
	}
	ham := filepath.Join(testenv.SharedData(t), "videos", "hamilton_short.mp4")
	models := []string{faces.SpecDefault}
	if env := os.Getenv("LAE_FACE_RATE_MODELS"); env != "" {
		models = strings.Split(env, ",")
	}
	srv := testenv.StartNATS(t)
	for _, model := range models {
		t.Run(filepath.Base(model), func(t *testing.T) {
			var sum float64
			for _, clip := range append(clips, ham) {
				id := laev1.NewVideoID()
				var last Progress
				eos, err := Run(context.Background(), srv.JS, id, clip, Options{
					SampleFPS: 5, FaceModel: model, Progress: func(p Progress) { last = p }})
				require.NoError(t, err)
				rate := float64(last.FramesWithFaces) / float64(eos.FramesSampled)
				t.Logf("%-8s %-22s %2d/%2d sampled frames with a face = %3.0f%%, %d crops, %d tracks",
					filepath.Base(model), filepath.Base(clip), last.FramesWithFaces, eos.FramesSampled, 100*rate, eos.CropsPublished, eos.Tracks)
				if clip != ham {
					sum += rate
					if rate <= 0.5 {
						t.Errorf("single-speaker clip %s: faces in %.0f%% of sampled frames, want most", clip, 100*rate)
					}
				}
			}
			mean := sum / float64(len(clips))
			t.Logf("%s: mean rate over %d single-speaker clips %.0f%%", filepath.Base(model), len(clips), 100*mean)
			require.GreaterOrEqual(t, mean, 0.85)
		})
	}
}
