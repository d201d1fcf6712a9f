package model

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/lae-screening/lae/internal/testenv"
)

// reportRates adds crops/s (wall) and crops/cpu-s to a benchmark that processed crops.
func reportRates(b *testing.B, crops int, cpu0 time.Duration) {
	b.ReportMetric(float64(crops)/b.Elapsed().Seconds(), "crops/s")
	if cpu := testenv.CPUTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(crops)/cpu.Seconds(), "crops/cpu-s")
	}
}

// benchModel is the model the benchmarks run: $LAE_BENCH_MODEL when set (to measure another
// export), else the shipped model. $LAE_BENCH_THREADS sets ONNX Runtime's intra-op threads and
// $LAE_BENCH_SPIN=1 lets them spin.
func benchModel(b *testing.B) *Model {
	path := os.Getenv("LAE_BENCH_MODEL")
	if path == "" {
		path = shippedModel
	}
	if _, err := os.Stat(path); err != nil {
		b.Skipf("no model to benchmark at %s (set LAE_BENCH_MODEL): %v", path, err)
	}
	threads, _ := strconv.Atoi(os.Getenv("LAE_BENCH_THREADS"))
	m, err := Load(Options{Path: path, MaxBatch: 64, Threads: threads, Spin: os.Getenv("LAE_BENCH_SPIN") != ""})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// BenchmarkPredict measures whole crops (256x256 BGR, as ingest publishes them) to scores and
// heatmaps, preprocessing included, at the batch sizes the worker uses.
func BenchmarkPredict(b *testing.B) {
	m := benchModel(b)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 8, 32} {
		crops := make([]Crop, n)
		for i := range crops {
			crops[i] = smoothNoise(rng, 256, 256)
		}
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			cpu0 := testenv.CPUTime()
			for b.Loop() {
				if _, err := m.Predict(crops); err != nil {
					b.Fatal(err)
				}
			}
			reportRates(b, b.N*n, cpu0)
		})
	}
}

// BenchmarkRun is the session alone (no preprocessing), for comparison with BenchmarkPredict.
func BenchmarkRun(b *testing.B) {
	m := benchModel(b)
	s := m.Metadata().InputSize
	for _, n := range []int{1, 2, 4, 8, 16, 32} {
		in := make([]float32, n*3*s*s)
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			cpu0 := testenv.CPUTime()
			for b.Loop() {
				if _, _, err := m.Run(in, n); err != nil {
					b.Fatal(err)
				}
			}
			reportRates(b, b.N*n, cpu0)
		})
	}
}
