package testenv

import (
	"context"
	"image"
	"os"
	"path/filepath"
	"testing"

	"github.com/asticode/go-astiav"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

func TestMain(m *testing.M) {
	astiav.SetLogLevel(astiav.LogLevelFatal) // the encoder's chatter would bury the test output
	os.Exit(m.Run())
}

func TestPaths(t *testing.T) {
	require.FileExists(t, filepath.Join(RepoRoot(), "go.mod"))
	require.FileExists(t, TinyModelPath())
	require.Equal(t, ShippedModelPath(), ShippedModel(t))
	require.Equal(t, ShippedModelPath(), ServingModel(t))
	if d, ok := SharedDataDir(); ok {
		require.Equal(t, d, SharedData(t))
	}
}

func TestSharedDataSkipsWhenAbsent(t *testing.T) {
	var skipped bool
	t.Run("absent", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		SharedData(t, "no such directory")
	})
	require.True(t, skipped)
}

func TestWriteClip(t *testing.T) {
	dir := t.TempDir()
	c := Clip{Width: 160, Height: 120, Frames: 5, FPS: 5, Face: Drawn, Seed: 1, Size: 40,
		From: image.Pt(10, 20), To: image.Pt(50, 40)}
	boxes := WriteClip(t, filepath.Join(dir, "face.mp4"), c)
	require.Len(t, boxes, 5)
	require.Equal(t, image.Rect(10, 20, 50, 60), boxes[0][0], "a square drawn face, Size wide, at From")
	require.Equal(t, image.Pt(50, 40), boxes[4][0].Min, "at To in the last frame")
	st, err := os.Stat(filepath.Join(dir, "face.mp4"))
	require.NoError(t, err)
	require.NotZero(t, st.Size())

	c.Size = 0
	boxes = WriteClip(t, filepath.Join(dir, "empty.mp4"), c)
	require.Len(t, boxes, 5)
	require.Empty(t, boxes[0], "no face")

	c.Size, c.Face = 40, LFWOrDrawn
	require.Len(t, WriteClip(t, filepath.Join(dir, "either.mp4"), c), 5)
}

func TestLeakMeasures(t *testing.T) {
	require.Positive(t, RSS(t))
	require.Positive(t, SettledRSS(t))
	n, exact := LiveMats()
	if !exact {
		require.Zero(t, n, "no count without -tags matprofile")
	} else {
		m := gocv.NewMat()
		n1, _ := LiveMats()
		m.Close()
		n2, _ := LiveMats()
		require.Equal(t, []int{n + 1, n}, []int{n1, n2}, "a Mat counts while open")
	}
	require.Positive(t, CPUTime())
}

func TestStartNATS(t *testing.T) {
	s := StartNATS(t)
	for _, name := range []string{laev1.StreamFaces, laev1.StreamFrames, laev1.StreamScores} {
		st, err := s.JS.Stream(context.Background(), name)
		require.NoError(t, err, name)
		info, err := st.Info(context.Background())
		require.NoError(t, err)
		require.Equal(t, "Memory", info.Config.Storage.String(), "%s in memory", name)
	}
}
