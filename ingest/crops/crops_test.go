package crops

import (
	"bufio"
	"context"
	"encoding/json"
	"image"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/align"
	"github.com/lae-screening/lae/ingest/faces"
)

func dataDir(t testing.TB) string {
	t.Helper()
	return testenv.SharedData(t)
}

func readIndex(t *testing.T, dir string) []Record {
	f, err := os.Open(filepath.Join(dir, IndexFile))
	require.NoError(t, err)
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		out = append(out, r)
	}
	require.NoError(t, sc.Err())
	return out
}

// checkCrops verifies every indexed crop: the PNG exists, is 256x256 colour, and its box lies in
// the source image.
func checkCrops(t *testing.T, dir string, recs []Record, srcW, srcH int) {
	seen := map[string]bool{}
	for _, r := range recs {
		require.False(t, seen[r.Path], "duplicate crop name %s", r.Path)
		seen[r.Path] = true
		img := gocv.IMRead(filepath.Join(dir, r.Path), gocv.IMReadUnchanged)
		require.False(t, img.Empty(), r.Path)
		require.Equal(t, []int{align.CropSize, align.CropSize, 3}, []int{img.Rows(), img.Cols(), img.Channels()})
		img.Close()
		b := r.BoxOf()
		require.True(t, b.Min.X >= 0 && b.Min.Y >= 0 && b.Max.X <= srcW && b.Max.Y <= srcH && !b.Empty(), "box %v", b)
	}
}

func TestCropsLFW(t *testing.T) {
	lfw := filepath.Join(dataDir(t), "faces", "lfw")
	// A directory input is walked recursively; here a temp dir of links to a few LFW photos, one
	// nested, plus a non-image file that must be ignored.
	in := t.TempDir()
	names := []string{"Aaron_Eckhart_0001.jpg", "AJ_Lamas_0001.jpg", "Aaron_Guiel_0001.jpg", "Abdullah_Gul_0001.jpg"}
	require.NoError(t, os.MkdirAll(filepath.Join(in, "sub"), 0o755))
	for i, n := range names {
		dst := filepath.Join(in, n)
		if i == 0 {
			dst = filepath.Join(in, "sub", n)
		}
		if err := os.Symlink(filepath.Join(lfw, n), dst); err != nil {
			t.Fatal(err)
		}
	}
	require.NoError(t, os.WriteFile(filepath.Join(in, "notes.txt"), []byte("x"), 0o600))
	inputs, err := Expand([]string{in})
	require.NoError(t, err)
	require.Len(t, inputs, len(names))

	for _, spec := range []string{faces.SpecHaar, filepath.Join(dataDir(t), "models", "yunet", "yunet_s_640_640.onnx")} {
		t.Run(filepath.Base(spec), func(t *testing.T) {
			out := t.TempDir()
			w, err := New(Options{Out: out, FaceModel: spec, MaxFacesPerFrame: 1})
			require.NoError(t, err)
			total := 0
			for _, p := range inputs {
				n, err := w.Add(context.Background(), p)
				require.NoError(t, err)
				require.LessOrEqual(t, n, 1)
				total += n
			}
			require.NoError(t, w.Close())
			recs := readIndex(t, out)
			require.Len(t, recs, total)
			// LFW photos are centred single faces: every one must give a crop.
			require.Equal(t, len(names), total)
			checkCrops(t, out, recs, 250, 250)
			eyes := 0
			for _, r := range recs {
				if r.EyesAligned {
					eyes++
				}
			}
			t.Logf("%s: %d crops, %d eye-aligned", spec, total, eyes)
		})
	}
}

func TestCropsVideo(t *testing.T) {
	clip := filepath.Join(dataDir(t), "videos", "asl", "again.mkv")
	out := t.TempDir()
	w, err := New(Options{Out: out, SampleFPS: 2, MaxPerInput: 3})
	require.NoError(t, err)
	n, err := w.Add(context.Background(), clip)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.Equal(t, 3, n, "the signer's face is visible throughout")
	recs := readIndex(t, out)
	require.Len(t, recs, 3)
	checkCrops(t, out, recs, 640, 480)
	for i := 1; i < len(recs); i++ {
		require.Greater(t, recs[i].FrameIndex, recs[i-1].FrameIndex)
		require.Greater(t, recs[i].PTS, recs[i-1].PTS)
	}
}

func TestCropsEveryFrame(t *testing.T) {
	clip := filepath.Join(dataDir(t), "videos", "asl", "again.mkv")
	out := t.TempDir()
	w, err := New(Options{Out: out, SampleFPS: 0, MaxPerInput: 4, MaxFacesPerFrame: 1})
	require.NoError(t, err)
	n, err := w.Add(context.Background(), clip)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.Equal(t, 4, n)
	recs := readIndex(t, out)
	for i := 1; i < len(recs); i++ {
		require.Equal(t, recs[i-1].FrameIndex+1, recs[i].FrameIndex, "0 fps keeps every frame, as in ingest")
	}
	_, err = New(Options{Out: t.TempDir(), SampleFPS: -1})
	require.ErrorContains(t, err, "negative sampling rate")
}

func TestCropsErrors(t *testing.T) {
	out := t.TempDir()
	w, err := New(Options{Out: out})
	require.NoError(t, err)
	defer w.Close()
	bad := filepath.Join(out, "broken.jpg")
	require.NoError(t, os.WriteFile(bad, []byte("<html>"), 0o600))
	_, err = w.Add(context.Background(), bad)
	require.ErrorContains(t, err, "broken.jpg")
	_, err = w.Add(context.Background(), filepath.Join(out, "missing.mp4"))
	require.Error(t, err)
	_, err = Expand([]string{filepath.Join(out, "nope")})
	require.Error(t, err)
	_, err = New(Options{})
	require.Error(t, err)
	_, err = New(Options{Out: out, FaceModel: "/nonexistent.onnx"})
	require.Error(t, err)
}

func TestKindOfAndNames(t *testing.T) {
	cases := []struct {
		path string
		want Kind
	}{{"a.JPG", KindImage}, {"b.png", KindImage}, {"c.mkv", KindVideo}, {"d.txt", KindUnknown}, {"rtsp://x/y", KindUnknown}}
	for _, tc := range cases {
		require.Equal(t, tc.want, KindOf(tc.path), tc.path)
	}
	a := cropName("/x/one/img é.jpg", 3, 1)
	b := cropName("/x/two/img é.jpg", 3, 1)
	require.NotEqual(t, a, b)
	require.Regexp(t, `^img__-[0-9a-f]{8}_000003_1\.png$`, a)
}

func TestSelect(t *testing.T) {
	fs := []faces.Face{{Box: rect(0, 0, 100)}, {Box: rect(0, 0, 10)}, {Box: rect(0, 0, 50)}, {Box: rect(0, 0, 60)}}
	cases := []struct {
		maxN, min int
		want      int
	}{{0, 0, 4}, {2, 0, 2}, {0, 20, 3}, {2, 55, 2}, {1, 200, 0}}
	for _, tc := range cases {
		got := Select(fs, tc.maxN, tc.min)
		require.Len(t, got, tc.want, "%+v", tc)
	}
	require.Len(t, fs, 4, "input untouched")
}

func rect(x, y, s int) image.Rectangle { return image.Rect(x, y, x+s, y+s) }
