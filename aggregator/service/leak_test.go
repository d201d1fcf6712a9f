//go:build matprofile

package service

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
)

// TestServiceFreesEveryMatLeak runs videos with evidence through the service and checks that
// gocv's live Mat count returns to where it started.
// Run with: go test -tags matprofile -run Leak ./aggregator/service/
func TestServiceFreesEveryMatLeak(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{})
	videos := []*video{makeVideo(t, "leak-0", 4, true), makeVideo(t, "leak-1", 4, false)}
	start := gocv.MatProfile.Count()
	for _, v := range videos {
		for _, fi := range v.frames[:2] { // half the frames have no image: both render paths
			h.publishFrame(t, fi)
		}
		for _, s := range v.scores {
			h.publishScore(t, s)
		}
		h.publishEOS(t, v.eos)
	}
	require.Eventually(t, func() bool { return h.stats.Verdicts.Load() == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, int64(6), h.stats.EvidenceImages.Load())
	require.Equal(t, start, gocv.MatProfile.Count(), "live Mats after two verdicts")
}
