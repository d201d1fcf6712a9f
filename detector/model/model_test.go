package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// The tiny fixture (detector/testdata/gen_tiny.py) computes, from the normalised input x:
// score = sigmoid(mean(K*(x_R - x_B))), heatmap = sigmoid(avgpool4(K*(x_R - x_B))).
const (
	tinyK    = 0.5
	tinySize = 64
)

var (
	tinyMean = [3]float32{0.485, 0.456, 0.406}
	tinyStd  = [3]float32{0.229, 0.224, 0.225}
)

func testdata(name string) string { return filepath.Join("..", "testdata", name) }

// shippedModel is the release model; tests that need it skip until detector/training ships it.
// $LAE_TEST_MODEL points these tests (and the parity file beside it) at another export.
var shippedModel = func() string {
	if p := os.Getenv("LAE_TEST_MODEL"); p != "" {
		return p
	}
	return filepath.Join("..", "models", "lae-v2.onnx")
}()

func loadTiny(t testing.TB, o Options) *Model {
	t.Helper()
	o.Path = testdata("tiny.onnx")
	m, err := Load(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	return m
}

func loadShipped(t testing.TB) *Model {
	t.Helper()
	if _, err := os.Stat(shippedModel); err != nil {
		t.Skipf("shipped model %s not present yet (made by detector/training): %v", shippedModel, err)
	}
	m, err := Load(Options{Path: shippedModel})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	return m
}

// solid makes a w x h crop of one BGR colour.
func solid(w, h int, b, g, r byte) Crop {
	px := bytes.Repeat([]byte{b, g, r}, w*h)
	return Crop{BGR: px, Width: w, Height: h}
}

func noise(rng *rand.Rand, w, h int) Crop {
	px := make([]byte, w*h*3)
	for i := range px {
		px[i] = byte(rng.IntN(256))
	}
	return Crop{BGR: px, Width: w, Height: h}
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// tinyExpected is the fixture's score for a solid colour, computed independently of the
// preprocessing code: it checks channel order, mean and std at once.
func tinyExpected(r, b byte) float64 {
	nr := (float64(r)/255 - float64(tinyMean[0])) / float64(tinyStd[0])
	nb := (float64(b)/255 - float64(tinyMean[2])) / float64(tinyStd[2])
	return sigmoid(tinyK * (nr - nb))
}

func TestLoadReadsMetadata(t *testing.T) {
	m := loadTiny(t, Options{})
	md := m.Metadata()
	require.Equal(t, "tiny-fixture", md.Name)
	require.Equal(t, "tiny-fixture-1", md.Version)
	require.Equal(t, tinySize, md.InputSize)
	require.Equal(t, tinyMean, md.Mean)
	require.Equal(t, tinyStd, md.Std)
	require.Equal(t, 0.5, md.Threshold)
	require.Equal(t, "onnx", md.ThresholdSource)
	require.Equal(t, tinySize/4, md.HeatmapW)
	require.Equal(t, tinySize/4, md.HeatmapH)
	require.False(t, md.BGR)
	require.Equal(t, ProviderCPU, m.Provider())
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, 0o644))
}

func TestCardThresholdWinsAndFillsMissingMetadata(t *testing.T) {
	dir := t.TempDir()
	withMeta := filepath.Join(dir, "m.onnx")
	copyFile(t, testdata("tiny.onnx"), withMeta)
	require.NoError(t, os.WriteFile(CardPath(withMeta), []byte(
		`{"threshold": 0.73, "model": {"name": "card-name", "version": "card-v", "input_size": 999,
		  "mean": [0, 0, 0], "std": [1, 1, 1]}, "eval": {"seen": {}}}`), 0o644))
	m, err := Load(Options{Path: withMeta})
	require.NoError(t, err)
	defer m.Close()
	md := m.Metadata()
	require.Equal(t, 0.73, md.Threshold, "the card's calibrated threshold wins")
	require.Equal(t, "card", md.ThresholdSource)
	require.Equal(t, "tiny-fixture", md.Name, "the ONNX metadata wins for identity")
	require.Equal(t, tinySize, md.InputSize, "the ONNX metadata wins for preprocessing")
	require.Equal(t, tinyMean, md.Mean)

	// A model without lae.* metadata is usable when its card says everything.
	noMeta := filepath.Join(dir, "nometa.onnx")
	copyFile(t, testdata("tiny_nometa.onnx"), noMeta)
	require.NoError(t, os.WriteFile(CardPath(noMeta), []byte(
		`{"model": {"name": "from-card", "version": "7", "input_size": 64,
		  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}`), 0o644))
	m2, err := Load(Options{Path: noMeta})
	require.NoError(t, err)
	defer m2.Close()
	require.Equal(t, "from-card", m2.Metadata().Name)
	require.Equal(t, "default", m2.Metadata().ThresholdSource)
	p, err := m2.Predict([]Crop{solid(64, 64, 0, 0, 255)})
	require.NoError(t, err)
	require.InDelta(t, tinyExpected(255, 0), p[0].Score, 1e-5)
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	tiny, err := os.ReadFile(testdata("tiny.onnx"))
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(rng.IntN(256))
	}
	badCardModel := write("badcard.onnx", tiny)
	write("badcard.card.json", []byte("{not json"))
	badThr := write("badthr.onnx", tiny)
	write("badthr.card.json", []byte(`{"threshold": 3}`))

	cases := []struct {
		name string
		o    Options
		want []string
	}{
		{"no path", Options{}, []string{"no model path"}},
		{"missing file", Options{Path: filepath.Join(dir, "nope.onnx")}, []string{"nope.onnx", "does not exist"}},
		{"empty file", Options{Path: write("empty.onnx", nil)}, []string{"empty"}},
		{"random bytes", Options{Path: write("junk.onnx", junk)}, []string{"junk.onnx", "not a valid ONNX model"}},
		{"truncated", Options{Path: write("trunc.onnx", tiny[:len(tiny)/2])}, []string{"trunc.onnx", "not a valid ONNX model"}},
		{"html page", Options{Path: write("page.onnx", []byte("<html><body>404</body></html>"))}, []string{"not a valid ONNX model"}},
		{"no metadata", Options{Path: testdata("tiny_nometa.onnx")}, []string{"no lae.name"}},
		{"wrong tensor names", Options{Path: testdata("tiny_badio.onnx")}, []string{`want one float32 tensor "input"`, "image"}},
		{"fixed batch", Options{Path: testdata("tiny_fixedbatch.onnx")}, []string{"fixed batch of 1", "dynamic batch"}},
		{"bad card json", Options{Path: badCardModel}, []string{"badcard.card.json"}},
		{"bad card threshold", Options{Path: badThr}, []string{"threshold"}},
		{"unknown provider", Options{Path: testdata("tiny.onnx"), Provider: "tpu"}, []string{"unknown provider", "tpu"}},
		{"missing library", Options{Path: testdata("tiny.onnx"), LibPath: filepath.Join(dir, "libnope.so")}, []string{"libnope.so", "explicit"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(tc.o)
			require.Error(t, err)
			require.Nil(t, m)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "\n", "errors are one line")
		})
	}
}

// The library here is the CPU build; a GPU provider must fail with a message that says which
// provider is missing. On a machine whose library has it, the session must work instead.
func TestResolveMetadata(t *testing.T) {
	full := map[string]string{KeyName: "n", KeyVersion: "v", KeyInputSize: "128", KeyMean: "0.5,0.5,0.5",
		KeyStd: "0.5, 0.25, 0.5", KeyColor: "RGB", KeyThreshold: "0.4"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range full {
			m[a] = b
		}
		if v == "<del>" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	thr := 0.8
	cardFull := &card{Threshold: &thr}
	cardFull.Model.Name, cardFull.Model.InputSize = "c", 64
	cardFull.Model.Mean, cardFull.Model.Std = []float64{0, 0, 0}, []float64{1, 1, 1}
	cases := []struct {
		name    string
		props   map[string]string
		c       *card
		want    func(t *testing.T, md Metadata)
		wantErr string
	}{
		{"onnx only", full, nil, func(t *testing.T, md Metadata) {
			require.Equal(t, 128, md.InputSize)
			require.Equal(t, [3]float32{0.5, 0.25, 0.5}, md.Std)
			require.Equal(t, 0.4, md.Threshold)
			require.Equal(t, "onnx", md.ThresholdSource)
		}, ""},
		{"json-style list", with(KeyMean, "[0.1, 0.2, 0.3]"), nil, func(t *testing.T, md Metadata) {
			require.Equal(t, [3]float32{0.1, 0.2, 0.3}, md.Mean)
		}, ""},
		{"card threshold wins", full, cardFull, func(t *testing.T, md Metadata) {
			require.Equal(t, 0.8, md.Threshold)
			require.Equal(t, 128, md.InputSize, "onnx wins for preprocessing")
			require.Equal(t, "n", md.Name)
		}, ""},
		{"card fills gaps", map[string]string{}, cardFull, func(t *testing.T, md Metadata) {
			require.Equal(t, "c", md.Name)
			require.Equal(t, "unversioned", md.Version)
			require.Equal(t, 64, md.InputSize)
		}, ""},
		{"bgr model", with(KeyColor, "bgr"), nil, func(t *testing.T, md Metadata) { require.True(t, md.BGR) }, ""},
		{"no threshold", with(KeyThreshold, "<del>"), nil, func(t *testing.T, md Metadata) {
			require.Equal(t, DefaultThreshold, md.Threshold)
			require.Equal(t, "default", md.ThresholdSource)
		}, ""},
		{"no name", with(KeyName, "<del>"), nil, nil, "no lae.name"},
		{"no size", with(KeyInputSize, "<del>"), nil, nil, "no lae.input_size"},
		{"bad size", with(KeyInputSize, "12x"), nil, nil, "lae.input_size"},
		{"tiny size", with(KeyInputSize, "2"), nil, nil, "lae.input_size"},
		{"two means", with(KeyMean, "0.5,0.5"), nil, nil, "three comma-separated"},
		{"zero std", with(KeyStd, "0.5,0,0.5"), nil, nil, "lae.std[1]"},
		{"nan mean", with(KeyMean, "NaN,0,0"), nil, nil, "lae.mean[0]"},
		{"no std", with(KeyStd, "<del>"), nil, nil, "no lae.std"},
		{"bad colour", with(KeyColor, "YUV"), nil, nil, "lae.color"},
		{"threshold > 1", with(KeyThreshold, "1.5"), nil, nil, "lae.threshold"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			md, err := resolveMetadata(tc.props, tc.c, "m.card.json")
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.want(t, md)
		})
	}
}

func TestGPUProvidersFailClearlyWhenMissing(t *testing.T) {
	for _, p := range []string{ProviderCUDA, ProviderTensorRT} {
		t.Run(p, func(t *testing.T) {
			m, err := Load(Options{Path: testdata("tiny.onnx"), Provider: p})
			if err == nil {
				defer m.Close()
				t.Logf("%s provider is available here", p)
				got, err := m.Predict([]Crop{solid(64, 64, 0, 0, 255)})
				require.NoError(t, err)
				require.InDelta(t, tinyExpected(255, 0), got[0].Score, 1e-3)
				return
			}
			require.ErrorIs(t, err, errProviderUnavailable)
			require.Contains(t, err.Error(), p)
			t.Logf("%s: %v", p, err)
		})
	}
}

func TestPredictMatchesKnownFunction(t *testing.T) {
	m := loadTiny(t, Options{})
	cases := []struct {
		name    string
		w, h    int
		b, g, r byte
	}{
		{"red at input size", 64, 64, 0, 0, 255},
		{"blue at input size", 64, 64, 255, 0, 0},
		{"grey downscaled 4x", 256, 256, 128, 128, 128},
		{"orange downscaled 3.1x", 200, 200, 10, 140, 250},
		{"purple upscaled", 40, 50, 200, 30, 90},
		{"odd non-square", 37, 91, 77, 66, 55},
		{"one pixel", 1, 1, 0, 255, 255},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Predict([]Crop{solid(tc.w, tc.h, tc.b, tc.g, tc.r)})
			require.NoError(t, err)
			require.Len(t, got, 1)
			want := tinyExpected(tc.r, tc.b)
			require.InDelta(t, want, got[0].Score, 1e-5)
			require.Len(t, got[0].Heatmap, 16*16)
			for _, v := range got[0].Heatmap {
				require.InDelta(t, want*255, float64(v), 1)
			}
		})
	}
	// Red must score above blue: fails if BGR is not swapped to RGB.
	p, err := m.Predict([]Crop{solid(64, 64, 0, 0, 255), solid(64, 64, 255, 0, 0)})
	require.NoError(t, err)
	require.Greater(t, p[0].Score, p[1].Score)
}

func TestHeatmapLocatesTheRegion(t *testing.T) {
	m := loadTiny(t, Options{})
	// Left half red (the fixture's "fake" evidence), right half blue, 128x128 crop.
	c := solid(128, 128, 255, 0, 0)
	for y := 0; y < 128; y++ {
		for x := 0; x < 64; x++ {
			copy(c.BGR[(y*128+x)*3:], []byte{0, 0, 255})
		}
	}
	p, err := m.Predict([]Crop{c})
	require.NoError(t, err)
	hw := m.Metadata().HeatmapW
	for y := 0; y < m.Metadata().HeatmapH; y++ {
		for x := 0; x < hw; x++ {
			v := p[0].Heatmap[y*hw+x]
			if x < hw/2 {
				require.Greater(t, v, uint8(200), "left (%d,%d)", x, y)
			} else {
				require.Less(t, v, uint8(40), "right (%d,%d)", x, y)
			}
		}
	}
}

func TestBatchConsistency(t *testing.T) {
	models := map[string]func(t *testing.T) *Model{
		"tiny":    func(t *testing.T) *Model { return loadTiny(t, Options{MaxBatch: 4}) },
		"shipped": func(t *testing.T) *Model { return loadShipped(t) },
	}
	for name, load := range models {
		t.Run(name, func(t *testing.T) {
			m := load(t)
			rng := rand.New(rand.NewPCG(7, 9))
			var crops []Crop
			for i := 0; i < 9; i++ {
				crops = append(crops, noise(rng, 100+i*20, 120+i*10))
			}
			batch, err := m.Predict(crops)
			require.NoError(t, err)
			require.Len(t, batch, len(crops))
			for i, c := range crops {
				alone, err := m.Predict([]Crop{c})
				require.NoError(t, err)
				require.InDelta(t, alone[0].Score, batch[i].Score, 1e-5, "crop %d", i)
				require.Len(t, batch[i].Heatmap, len(alone[0].Heatmap))
				for j := range alone[0].Heatmap {
					require.InDelta(t, alone[0].Heatmap[j], batch[i].Heatmap[j], 1, "crop %d heat %d", i, j)
				}
			}
		})
	}
}

func TestConcurrentPredict(t *testing.T) {
	m := loadTiny(t, Options{Threads: 1})
	rng := rand.New(rand.NewPCG(3, 4))
	crops := make([]Crop, 16)
	for i := range crops {
		crops[i] = noise(rng, 90, 90)
	}
	want, err := m.Predict(crops)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for it := 0; it < 10; it++ {
				i := (g + it) % len(crops)
				got, err := m.Predict(crops[i : i+1])
				if err != nil {
					errs <- err
					return
				}
				if math.Abs(float64(got[0].Score-want[i].Score)) > 1e-5 {
					errs <- fmt.Errorf("goroutine %d crop %d: %v != %v", g, i, got[0].Score, want[i].Score)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestPredictRejectsBadCrops(t *testing.T) {
	m := loadTiny(t, Options{})
	cases := []struct {
		name string
		c    Crop
		want string
	}{
		{"zero size", Crop{}, "crop size 0x0"},
		{"negative", Crop{Width: -1, Height: 4, BGR: nil}, "crop size"},
		{"short pixels", Crop{Width: 4, Height: 4, BGR: make([]byte, 47)}, "47 bytes"},
		{"long pixels", Crop{Width: 4, Height: 4, BGR: make([]byte, 49)}, "49 bytes"},
		{"huge", Crop{Width: MaxCropSide + 1, Height: 1}, "crop size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Predict([]Crop{solid(8, 8, 1, 2, 3), tc.c})
			require.ErrorContains(t, err, "crop 1")
			require.ErrorContains(t, err, tc.want)
		})
	}
	got, err := m.Predict(nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestRunAndClose(t *testing.T) {
	m, err := Load(Options{Path: testdata("tiny.onnx")})
	require.NoError(t, err)
	_, _, err = m.Run(make([]float32, 10), 1)
	require.ErrorContains(t, err, "10 floats for 1 crops")
	_, _, err = m.Run(nil, 0)
	require.Error(t, err)
	in := make([]float32, 2*3*tinySize*tinySize)
	s, h, err := m.Run(in, 2)
	require.NoError(t, err)
	require.Len(t, s, 2)
	require.Len(t, h, 2*16*16)
	require.InDelta(t, 0.5, s[0], 1e-6, "zero input: sigmoid(0)")
	require.NoError(t, m.Close())
	require.NoError(t, m.Close(), "Close twice is harmless")
	_, err = m.Predict([]Crop{solid(8, 8, 0, 0, 0)})
	require.ErrorContains(t, err, "closed")
}

// Several models in one process share one runtime environment.
func TestSeveralModelsShareTheRuntime(t *testing.T) {
	a := loadTiny(t, Options{})
	b := loadTiny(t, Options{})
	require.NoError(t, a.Close())
	p, err := b.Predict([]Crop{solid(64, 64, 0, 0, 255)})
	require.NoError(t, err)
	require.InDelta(t, tinyExpected(255, 0), p[0].Score, 1e-5)
}

func TestShippedModel(t *testing.T) {
	m := loadShipped(t)
	md := m.Metadata()
	t.Logf("shipped model: %+v", md)
	require.NotEmpty(t, md.Name)
	require.NotEmpty(t, md.Version)
	require.GreaterOrEqual(t, md.InputSize, 32)
	require.Positive(t, md.HeatmapW)
	require.Positive(t, md.HeatmapH)
	rng := rand.New(rand.NewPCG(5, 6))
	p, err := m.Predict([]Crop{noise(rng, 256, 256), solid(256, 256, 120, 140, 180)})
	require.NoError(t, err)
	for _, x := range p {
		require.GreaterOrEqual(t, x.Score, float32(0))
		require.LessOrEqual(t, x.Score, float32(1))
		require.Len(t, x.Heatmap, md.HeatmapW*md.HeatmapH)
	}
}

// parityFile is written by detector/training's exporter: PyTorch's outputs on a fixed input.
type parityFile struct {
	Input        []float32 `json:"input"`
	Shape        []int     `json:"shape"`
	Score        []float32 `json:"score"`
	Heatmap      []float32 `json:"heatmap"`
	HeatmapShape []int     `json:"heatmap_shape"`
}

// TestParityWithTraining checks that ONNX Runtime through this package reproduces PyTorch's
// outputs for the shipped model (the training helper writes lae-v2.parity.json).
func TestParityWithTraining(t *testing.T) {
	path := strings.TrimSuffix(shippedModel, ".onnx") + ".parity.json"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no parity file %s yet (written by detector/training's export): %v", path, err)
	}
	var pf parityFile
	require.NoError(t, json.Unmarshal(b, &pf))
	m := loadShipped(t)
	s := m.Metadata().InputSize
	n := len(pf.Score)
	require.Positive(t, n)
	require.Len(t, pf.Input, n*3*s*s, "parity input must be [N,3,%d,%d]", s, s)
	scores, heat, err := m.Run(pf.Input, n)
	require.NoError(t, err)
	require.Len(t, heat, len(pf.Heatmap))
	maxS, maxH := maxAbsDiff(scores, pf.Score), maxAbsDiff(heat, pf.Heatmap)
	t.Logf("parity over %d crops: max |score diff| = %.3g, max |heatmap diff| = %.3g", n, maxS, maxH)
	require.LessOrEqual(t, maxS, 1e-4)
	require.LessOrEqual(t, maxH, 1e-4)
	if len(pf.HeatmapShape) == 4 {
		require.Equal(t, []int{n, 1, m.Metadata().HeatmapH, m.Metadata().HeatmapW}, pf.HeatmapShape)
	}

	// The same crops through the serving path: the parity input was normalised from 8-bit
	// crops, so the pixels can be recovered exactly; Predict (BGR bytes -> RGB, normalise) must
	// then reproduce PyTorch's scores too. This catches channel-order or mean/std mismatches.
	md := m.Metadata()
	crops := make([]Crop, n)
	plane := s * s
	for i := range crops {
		px := make([]byte, 3*plane)
		in := pf.Input[i*3*plane : (i+1)*3*plane]
		for p := 0; p < plane; p++ {
			for c := 0; c < 3; c++ { // c is the model's (RGB) channel
				v := math.Round(float64(in[c*plane+p]*md.Std[c]+md.Mean[c]) * 255)
				require.InDelta(t, v, float64(in[c*plane+p]*md.Std[c]+md.Mean[c])*255, 0.01, "parity input is not from 8-bit pixels")
				if md.BGR {
					px[p*3+c] = byte(v)
				} else {
					px[p*3+2-c] = byte(v)
				}
			}
		}
		crops[i] = Crop{BGR: px, Width: s, Height: s}
	}
	preds, err := m.Predict(crops)
	require.NoError(t, err)
	var maxP float64
	for i, p := range preds {
		maxP = math.Max(maxP, math.Abs(float64(p.Score-pf.Score[i])))
	}
	t.Logf("serving path (BGR bytes through Predict): max |score diff| = %.3g", maxP)
	require.LessOrEqual(t, maxP, 1e-4)
}

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

func TestBatchSizeByProvider(t *testing.T) {
	for _, tc := range []struct {
		provider string
		want     int
	}{
		{"", 16}, {ProviderCPU, 16}, {ProviderCUDA, 64}, {" TensorRT ", 64},
	} {
		require.Equal(t, tc.want, BatchSize(tc.provider), "provider %q", tc.provider)
	}
}
