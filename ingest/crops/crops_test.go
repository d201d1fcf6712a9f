package crops

import (
	"bufio"
	"context"
	"encoding/json"
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/align"
	"github.com/lae-screening/lae/ingest/faces"
	"github.com/lae-screening/lae/ingest/landmarks"
	"github.com/lae-screening/lae/ingest/testvideo"
	"github.com/lae-screening/lae/internal/testenv"
)

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

// checkCrops verifies every indexed crop: the PNG exists, is 256x256 colour, its box lies in
// the source image, its source scale is the inverse of the crop transform's scale, and (unless
// landmarks are off) it has 468 landmarks inside the crop, rounded to 0.1 px, with a score.
func checkCrops(t *testing.T, dir string, recs []Record, srcW, srcH int) {
	checkCropsOpt(t, dir, recs, srcW, srcH, true)
}

func checkCropsOpt(t *testing.T, dir string, recs []Record, srcW, srcH int, wantLandmarks bool) {
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
		require.InDelta(t, 1, r.SourceScale*math.Hypot(r.CropToFrame[0], r.CropToFrame[3]), 1e-3, "source_scale %v", r.SourceScale)
		if !wantLandmarks {
			require.Nil(t, r.Landmarks)
			require.Nil(t, r.MeshScore)
			continue
		}
		require.Len(t, r.Landmarks, landmarks.NumPoints, r.Path)
		require.NotNil(t, r.MeshScore, r.Path)
		require.True(t, *r.MeshScore >= 0 && *r.MeshScore <= 1)
		for _, i := range landmarks.FaceOval {
			p := r.Landmarks[i]
			require.True(t, p[0] >= 0 && p[1] >= 0 && p[0] < align.CropSize && p[1] < align.CropSize,
				"%s: face oval point %d at %v outside the crop", r.Path, i, p)
		}
		for _, p := range r.Landmarks {
			for _, v := range p {
				require.InDelta(t, math.Round(float64(v)*10), float64(v)*10, 1e-3, "%s: %v not rounded to 0.1 px", r.Path, v)
			}
		}
	}
}

// eyeError is the distance of the mesh's eye-contour centres from the canonical eye positions.
func eyeError(r Record) float64 {
	cl, cr := align.CanonicalEyes(align.CropSize)
	mean := func(idx []int) (x, y float64) {
		for _, i := range idx {
			x += float64(r.Landmarks[i][0])
			y += float64(r.Landmarks[i][1])
		}
		return x / float64(len(idx)), y / float64(len(idx))
	}
	rx, ry := mean(landmarks.SubjectRightEye)
	lx, ly := mean(landmarks.SubjectLeftEye)
	return math.Max(math.Hypot(rx-cl[0], ry-cl[1]), math.Hypot(lx-cr[0], ly-cr[1]))
}

func TestCropsLFW(t *testing.T) {
	lfw := filepath.Join(testenv.SharedData(t), "faces", "lfw")
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

	for _, spec := range []string{faces.SpecHaar, faces.SpecYuNet, filepath.Join(testenv.SharedData(t), "models", "yunet", "yunet_s_640_640.onnx")} {
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
				// LFW faces are real frontal faces: the mesh is sure of them.
				require.Greater(t, *r.MeshScore, float32(0.9), r.Path)
				if spec != faces.SpecHaar {
					// YuNet's eyes aligned the crop; the mesh's eyes agree.
					require.True(t, r.EyesAligned)
					require.Less(t, eyeError(r), 12.0, r.Path)
				}
				t.Logf("%s: source_scale %.3f, mesh_score %.3f, mesh eyes %.1f px from the canonical ones",
					r.Path, r.SourceScale, *r.MeshScore, eyeError(r))
			}
			t.Logf("%s: %d crops, %d eye-aligned", spec, total, eyes)
		})
	}
}

// cropOne writes the crops of one input with a fresh Writer and returns how many it wrote.
func cropOne(t *testing.T, o Options, input string) int {
	t.Helper()
	w, err := New(o)
	require.NoError(t, err)
	n, err := w.Add(context.Background(), input)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return n
}

func TestCropsVideo(t *testing.T) {
	clip := filepath.Join(testenv.SharedData(t), "videos", "asl", "again.mkv")
	out := t.TempDir()
	n := cropOne(t, Options{Out: out, SampleFPS: 2, MaxPerInput: 3}, clip)
	require.Equal(t, 3, n, "the signer's face is visible throughout")
	recs := readIndex(t, out)
	require.Len(t, recs, 3)
	checkCrops(t, out, recs, 640, 480)
	for _, r := range recs {
		t.Logf("%s: source_scale %.3f, mesh_score %.3f", r.Path, r.SourceScale, *r.MeshScore)
	}
	for i := 1; i < len(recs); i++ {
		require.Greater(t, recs[i].FrameIndex, recs[i-1].FrameIndex)
		require.Greater(t, recs[i].PTS, recs[i-1].PTS)
	}
}

// TestCropsNoLandmarks: with landmarks off the records carry no landmarks and no mesh_score
// (the keys are absent from the JSON), and still the source scale.
func TestCropsNoLandmarks(t *testing.T) {
	photo := filepath.Join(testenv.SharedData(t), "faces", "lfw", "Aaron_Eckhart_0001.jpg")
	out := t.TempDir()
	n := cropOne(t, Options{Out: out, NoLandmarks: true}, photo)
	require.Equal(t, 1, n)
	recs := readIndex(t, out)
	checkCropsOpt(t, out, recs, 250, 250, false)
	raw, err := os.ReadFile(filepath.Join(out, IndexFile))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	require.NotContains(t, m, "landmarks")
	require.NotContains(t, m, "mesh_score")
	require.Contains(t, m, "source_scale")
}

// TestRecordFormat pins the JSON keys of a record with landmarks and their layout: 468 [x, y]
// pairs, values with at most one decimal.
func TestRecordFormat(t *testing.T) {
	photo := filepath.Join(testenv.SharedData(t), "faces", "lfw", "Aaron_Eckhart_0001.jpg")
	out := t.TempDir()
	cropOne(t, Options{Out: out}, photo)
	raw, err := os.ReadFile(filepath.Join(out, IndexFile))
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m))
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	require.Equal(t, []string{"box", "crop_to_frame", "eyes_aligned", "face_index", "frame_index", "landmarks",
		"mesh_score", "path", "pts", "source", "source_scale"}, keys)
	var pts [][]json.Number
	dec := json.NewDecoder(strings.NewReader(string(m["landmarks"])))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&pts))
	require.Len(t, pts, landmarks.NumPoints)
	for _, p := range pts {
		require.Len(t, p, 2)
		for _, v := range p {
			s := v.String()
			if i := strings.IndexByte(s, '.'); i >= 0 {
				require.LessOrEqual(t, len(s)-i-1, 1, "landmark value %s", s)
			}
		}
	}
	t.Logf("index line: %d bytes; %s ...", len(raw), raw[:min(len(raw), 400)])
}

func TestSourceScale(t *testing.T) {
	// A face shrunk to half its size in the crop: 2 source px per crop px, rotated 30 degrees.
	c, s := 2*math.Cos(math.Pi/6), 2*math.Sin(math.Pi/6)
	require.InDelta(t, 0.5, SourceScale([6]float64{c, -s, 10, s, c, 20}), 1e-12)
	require.Equal(t, 0.0, SourceScale([6]float64{}))
}

func TestCropsEveryFrame(t *testing.T) {
	clip := filepath.Join(testenv.SharedData(t), "videos", "asl", "again.mkv")
	out := t.TempDir()
	n := cropOne(t, Options{Out: out, SampleFPS: 0, MaxPerInput: 4, MaxFacesPerFrame: 1}, clip)
	require.Equal(t, 4, n)
	recs := readIndex(t, out)
	for i := 1; i < len(recs); i++ {
		require.Equal(t, recs[i-1].FrameIndex+1, recs[i].FrameIndex, "0 fps keeps every frame, as in ingest")
	}
	_, err := New(Options{Out: t.TempDir(), SampleFPS: -1})
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

// TestTooSmall is the tiny-face policy: the eye distance comes from plausible eye landmarks
// (YuNet), else from the box width times the box eye spacing (0.385: a 40 px box has eyes
// 15.4 px apart, a 42 px box 16.2 px); 0 or less judges every face.
func TestTooSmall(t *testing.T) {
	eyes := func(box image.Rectangle, l, r image.Point) faces.Face {
		return faces.Face{Box: box, Landmarks: []image.Point{l, r, box.Min.Add(image.Pt(box.Dx()/2, box.Dy()*3/5)), {}, {}}}
	}
	box := image.Rect(100, 100, 140, 140)
	cases := []struct {
		name     string
		face     faces.Face
		minEyePx float64
		want     bool
	}{
		{"landmarks 20 px apart", eyes(box, image.Pt(110, 115), image.Pt(130, 115)), DefaultMinEyePx, false},
		{"landmarks 14 px apart", eyes(box, image.Pt(113, 115), image.Pt(127, 115)), DefaultMinEyePx, true},
		{"landmarks exactly at the limit", eyes(box, image.Pt(112, 115), image.Pt(128, 115)), DefaultMinEyePx, false},
		{"tilted landmarks 12x16 apart (20 px)", eyes(box, image.Pt(112, 110), image.Pt(128, 122)), DefaultMinEyePx, false},
		{"large box, close landmarks win over the box", eyes(image.Rect(0, 0, 60, 60), image.Pt(22, 20), image.Pt(34, 20)), DefaultMinEyePx, true},
		{"small box, wide landmarks win over the box", eyes(box, image.Pt(105, 115), image.Pt(135, 115)), DefaultMinEyePx, false},
		{"landmarks outside the box: box width decides (40 px -> 15.4)", eyes(box, image.Pt(0, 0), image.Pt(300, 0)), DefaultMinEyePx, true},
		{"no landmarks, 40 px box (15.4 px)", faces.Face{Box: box}, DefaultMinEyePx, true},
		{"no landmarks, 42 px box (16.2 px)", faces.Face{Box: image.Rect(0, 0, 42, 42)}, DefaultMinEyePx, false},
		{"no landmarks, 200 px box", faces.Face{Box: image.Rect(0, 0, 200, 200)}, DefaultMinEyePx, false},
		{"empty box", faces.Face{}, DefaultMinEyePx, true},
		{"limit 0 keeps a tiny face", faces.Face{Box: image.Rect(0, 0, 8, 8)}, 0, false},
		{"negative limit keeps a tiny face", faces.Face{Box: image.Rect(0, 0, 8, 8)}, -1, false},
		{"higher limit", eyes(box, image.Pt(110, 115), image.Pt(130, 115)), 24, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, TooSmall(tc.face, tc.minEyePx), "eye distance %.1f", align.SourceEyeDistance(tc.face))
		})
	}
}

// TestSelectJudgeable: too-small faces are counted apart and never take the place of a face
// that can be judged under maxN; faces under minSize are dropped without being counted.
func TestSelectJudgeable(t *testing.T) {
	// Box-only faces: eye distance 0.385 * width. 30 px -> 11.6 (too small), 100 px -> 38.5.
	fs := []faces.Face{{Box: rect(0, 0, 30)}, {Box: rect(0, 0, 100)}, {Box: rect(0, 0, 10)}, {Box: rect(0, 0, 30)}, {Box: rect(0, 0, 60)}}
	cases := []struct {
		maxN, minSize int
		minEyePx      float64
		keep, small   int
	}{
		{0, 0, 0, 5, 0},
		{0, 0, DefaultMinEyePx, 2, 3},
		{1, 0, DefaultMinEyePx, 1, 3},
		{0, 20, DefaultMinEyePx, 2, 2},
		{0, 0, 40, 0, 5},
	}
	for _, tc := range cases {
		keep, small := SelectJudgeable(fs, tc.maxN, tc.minSize, tc.minEyePx)
		require.Len(t, keep, tc.keep, "%+v", tc)
		require.Equal(t, tc.small, small, "%+v", tc)
		for _, f := range keep {
			require.False(t, TooSmall(f, tc.minEyePx))
		}
	}
	keep, _ := SelectJudgeable(fs, 1, 0, DefaultMinEyePx)
	require.Equal(t, 100, keep[0].Box.Dx(), "the first judgeable face, not the first face")
	require.Len(t, fs, 5, "input untouched")
}

// TestCropsMinEyePx: lae crops writes every face by default (training wants them all, with
// their source_scale); MinEyePx applies the scanner's tiny-face rule.
func TestCropsMinEyePx(t *testing.T) {
	face := testenv.LFWFace(t)
	// One photo 200 px wide (eyes ~45 px apart) and the same 32 px wide (eyes ~10 px apart).
	frames, _, err := testvideo.FaceVideo(testvideo.VideoSpec{Width: 640, Height: 360, Frames: 1, Faces: []testvideo.Placement{
		{Face: face, Size: 200, From: image.Pt(40, 60), To: image.Pt(40, 60)},
		{Face: face, Size: 32, From: image.Pt(450, 150), To: image.Pt(450, 150)}}})
	require.NoError(t, err)
	defer testvideo.CloseFrames(frames)
	photo := filepath.Join(t.TempDir(), "two.png")
	require.True(t, gocv.IMWrite(photo, frames[0]))

	for _, tc := range []struct {
		minEyePx float64
		want     int
	}{{0, 2}, {DefaultMinEyePx, 1}} {
		out := t.TempDir()
		n := cropOne(t, Options{Out: out, NoLandmarks: true, MinEyePx: tc.minEyePx}, photo)
		require.Equal(t, tc.want, n, "min eye px %v", tc.minEyePx)
		recs := readIndex(t, out)
		checkCropsOpt(t, out, recs, 640, 360, false)
		upsampled := 0
		for _, r := range recs {
			if r.SourceScale > 64/DefaultMinEyePx {
				upsampled++
			}
			t.Logf("min eye px %v: box %v source_scale %.2f", tc.minEyePx, r.Box, r.SourceScale)
		}
		require.Equal(t, tc.want-1, upsampled, "only the tiny face is upsampled past 4x")
	}
}
