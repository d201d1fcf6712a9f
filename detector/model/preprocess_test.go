package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
)

// identity keeps pixel values and BGR order, so the preprocessor's output can be compared with
// an 8-bit OpenCV resize value for value.
var identity = newNormaliser(Metadata{Std: [3]float32{1. / 255, 1. / 255, 1. / 255}, BGR: true})

// TestPreprocessMatchesReference compares the production path (OpenCV INTER_AREA) with the
// independent pure-Go resampler in resample_ref_test.go. Shrinking (INTER_AREA) is the serving
// path (ingest crops are larger than the model input) and must agree to the 8-bit level; when
// enlarging, OpenCV's 8-bit INTER_LINEAR uses 11-bit fixed-point weights, so about one value in
// eight rounds the other way.
func TestPreprocessMatchesReference(t *testing.T) {
	cases := []struct {
		w, h, size int
		maxDiff    float64 // in 8-bit levels
		meanDiff   float64
	}{
		{256, 256, 128, 1, 0.02},
		{128, 128, 128, 0, 0},
		{200, 200, 128, 1, 0.02},
		{300, 180, 128, 1, 0.02},
		{512, 512, 64, 1, 0.02},
		{100, 100, 128, 1, 0.2},
		{50, 80, 128, 1, 0.2},
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%dx%d-to-%d", tc.w, tc.h, tc.size), func(t *testing.T) {
			c := smoothNoise(rng, tc.w, tc.h)
			n := 3 * tc.size * tc.size
			got, ref := make([]float32, n), make([]float32, n)
			require.NoError(t, preprocess(got, c, tc.size, identity))
			require.NoError(t, preprocessGo(ref, c, tc.size, identity))
			var maxd, sum float64
			for i := range got {
				d := math.Abs(float64(got[i]) - float64(ref[i]))
				maxd = math.Max(maxd, d)
				sum += d
			}
			t.Logf("max diff %.0f, mean diff %.4f levels", maxd, sum/float64(n))
			require.LessOrEqual(t, maxd, tc.maxDiff)
			require.LessOrEqual(t, sum/float64(n), tc.meanDiff)
		})
	}
}

// smoothNoise is noise with structure at several scales, closer to a face than white noise
// (white noise makes every resize differ by rounding alone).
func smoothNoise(rng *rand.Rand, w, h int) Crop {
	px := make([]byte, w*h*3)
	fx, fy := rng.Float64()*0.3+0.05, rng.Float64()*0.3+0.05
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := 128 + 60*math.Sin(float64(x)*fx+float64(c)) + 40*math.Cos(float64(y)*fy*float64(c+1)) + float64(rng.IntN(40)) - 20
				px[(y*w+x)*3+c] = byte(max(0, min(255, v)))
			}
		}
	}
	return Crop{BGR: px, Width: w, Height: h}
}

func TestResampleWeightsSumToOne(t *testing.T) {
	for _, nm := range [][2]int{{256, 128}, {200, 128}, {128, 128}, {3, 128}, {1, 7}, {1000, 3}, {129, 128}} {
		a := newResampleAxis(nm[0], nm[1])
		for i := 0; i < nm[1]; i++ {
			var s float32
			for k := 0; k < a.taps; k++ {
				s += a.w[i*a.taps+k]
				if a.w[i*a.taps+k] != 0 {
					require.Less(t, a.start[i]+k, nm[0], "tap inside the source")
				}
			}
			require.InDelta(t, 1, s, 1e-5, "%v dst %d", nm, i)
		}
	}
}

// FuzzPreprocess feeds arbitrary sizes and bytes: the preprocessor must reject or accept, never
// panic, and accepted output must be finite and within the normalised range.
func FuzzPreprocess(f *testing.F) {
	f.Add(4, 4, []byte("0123456789ab0123456789ab0123456789ab0123456789ab"), 16)
	f.Add(1, 1, []byte{1, 2, 3}, 8)
	f.Add(0, 5, []byte{}, 8)
	f.Add(3, 2, []byte{1, 2, 3}, 64)
	nm := newNormaliser(Metadata{Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5}})
	f.Fuzz(func(t *testing.T, w, h int, px []byte, size int) {
		if size < 1 || size > 128 || w > 512 || h > 512 {
			t.Skip()
		}
		c := Crop{BGR: px, Width: w, Height: h}
		dst := make([]float32, 3*size*size)
		err := preprocess(dst, c, size, nm)
		if c.Validate() != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		for _, v := range dst {
			require.False(t, math.IsNaN(float64(v)))
			require.GreaterOrEqual(t, v, float32(-1.0001))
			require.LessOrEqual(t, v, float32(1.0001))
		}
	})
}

// FuzzMetadata feeds arbitrary ONNX metadata values and card JSON: resolveMetadata must either
// fail or return something the preprocessor can use.
func FuzzMetadata(f *testing.F) {
	f.Add("lae-v1", "128", "0.5,0.5,0.5", "0.5,0.5,0.5", "RGB", "0.5", `{"threshold":0.6}`)
	f.Add("", "", "", "", "", "", `{"model":{"name":"x","input_size":64,"mean":[0,0,0],"std":[1,1,1]}}`)
	f.Add("x", "12a", "1,2", "0,0,0", "XYZ", "nan", `{`)
	f.Fuzz(func(t *testing.T, name, size, mean, std, color, thr, cardJSON string) {
		props := map[string]string{KeyName: name, KeyInputSize: size, KeyMean: mean, KeyStd: std,
			KeyColor: color, KeyThreshold: thr}
		c, err := parseCard([]byte(cardJSON))
		if err != nil {
			c = nil
		}
		md, err := resolveMetadata(props, c, "card.json")
		if err != nil {
			return
		}
		require.NotEmpty(t, md.Name)
		require.GreaterOrEqual(t, md.InputSize, 8)
		require.LessOrEqual(t, md.InputSize, 4096)
		require.GreaterOrEqual(t, md.Threshold, 0.0)
		require.LessOrEqual(t, md.Threshold, 1.0)
		for i := 0; i < 3; i++ {
			require.Positive(t, md.Std[i])
			require.False(t, math.IsInf(float64(md.Mean[i]), 0) || math.IsNaN(float64(md.Mean[i])))
		}
	})
}

func BenchmarkPreprocess(b *testing.B) {
	nm := newNormaliser(Metadata{Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5}})
	impls := []struct {
		name string
		fn   func([]float32, Crop, int, normaliser) error
	}{{"opencv", preprocess}, {"purego", preprocessGo}}
	for _, src := range []int{256, 128, 96} {
		for _, im := range impls {
			b.Run(fmt.Sprintf("%s-%d-to-128", im.name, src), func(b *testing.B) {
				c := smoothNoise(rand.New(rand.NewPCG(1, 1)), src, src)
				dst := make([]float32, 3*128*128)
				b.ReportAllocs()
				cpu0 := testenv.CPUTime()
				for b.Loop() {
					if err := im.fn(dst, c, 128, nm); err != nil {
						b.Fatal(err)
					}
				}
				reportRates(b, b.N, cpu0)
			})
		}
	}
}
