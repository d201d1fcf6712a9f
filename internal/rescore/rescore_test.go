package rescore_test

import (
	"context"
	"image"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/core"
	"github.com/lae-screening/lae/internal/rescore"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// clip writes a 1 s clip of a drawn face (pattern seed) drifting over a noisy background.
func clip(t *testing.T, seed int64) string {
	p := filepath.Join(t.TempDir(), "clip.mp4")
	testenv.WriteClip(t, p, testenv.Clip{Width: 480, Height: 360, Frames: 10, FPS: 10,
		Face: testenv.Drawn, DrawnRes: 160, Seed: seed, Size: 150, From: image.Pt(120, 60), To: image.Pt(130, 65)})
	return p
}

// TestRescoreSelections scans two clips, then rescores by id, by time range and all: each
// rescored video gets the next revision with the same verdict (same model), and a range that
// holds no verdict selects nothing.
func TestRescoreSelections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := config.ForCommand("scan")
	c.Detector.Model, c.Retention.Memory = testenv.ShippedModel(t), true
	sc, err := core.Start(ctx, core.Options{Config: c, Roles: config.AllRoles})
	require.NoError(t, err)
	defer sc.Close(ctx)
	start := time.Now().Add(-time.Second)
	var first []laev1.Verdict
	for _, seed := range []int64{1, 3} {
		v, err := sc.Scan(ctx, clip(t, seed))
		require.NoError(t, err)
		require.NotZero(t, v.Faces)
		first = append(first, v)
	}
	js := sc.JS

	ids, err := rescore.Select(ctx, js, rescore.Selection{Since: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.Empty(t, ids, "no verdict after the range start")
	ids, err = rescore.Select(ctx, js, rescore.Selection{Since: start, Until: time.Now().Add(time.Minute)})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{first[0].VideoID, first[1].VideoID}, ids)
	_, err = rescore.Select(ctx, js, rescore.Selection{VideoIDs: []string{"bad.id"}})
	require.ErrorContains(t, err, "invalid video id")

	res, err := core.Rescore(ctx, js, c.Detector, rescore.Options{Selection: rescore.Selection{VideoIDs: []string{first[0].VideoID}}})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.NoError(t, res[0].Err)
	require.Equal(t, 1, res[0].New.Revision)
	require.Equal(t, first[0].Verdict, res[0].New.Verdict)
	require.InDelta(t, first[0].Score, res[0].New.Score, 1e-6)
	require.Equal(t, first[0].Faces, res[0].Crops)

	var progress []int
	res, err = core.Rescore(ctx, js, c.Detector, rescore.Options{Progress: func(done, _ int, _ rescore.Result) { progress = append(progress, done) }})
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.Equal(t, []int{1, 2}, progress)
	for _, r := range res {
		require.NoError(t, r.Err)
		want := 1
		if r.VideoID == first[0].VideoID {
			want = 2
		}
		require.Equal(t, want, r.New.Revision, r.VideoID)
		require.False(t, r.Changed)
	}
}
