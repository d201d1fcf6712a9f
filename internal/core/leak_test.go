package core

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/memstat"
	"github.com/lae-screening/lae/internal/testenv"
)

// TestRepeatedScansDoNotLeak scans the same clip many times through the whole stack: every
// Mat the stages create is closed (exact count with -tags matprofile), every FFmpeg source
// is closed, and the live C heap (FFmpeg frames, ONNX Runtime tensors, OpenCV buffers) plus
// Go heap does not grow with the number of scans.
//
// The bound is on the slope of live memory over N scans (least squares), not on the
// difference of two samples: one noisy sample (a GC cycle, a cache that settles) moves a
// difference a lot and a slope little, so the test holds on a loaded machine while a leak of
// one BGR frame per sampled frame (about 7 MiB a scan of this clip) fails it by far. ONNX
// Runtime's arena is off, and the server's caches fill during the warm-up scans.
// It runs alone (task test:leak, -p 1): other packages' tests in the same process tree do
// not share its heap, but they do share the CPU, and a slow scan must not look like a leak.
func TestRepeatedScansDoNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("leak test skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "faces.mp4")
	testenv.WriteClip(t, path, faceClip(50))
	// Streams on disk, as `lae scan` keeps them: a memory store's pages are Go heap that a
	// purge does not promptly give back, which would read as a leak of the stages.
	c := scanConfig(t)
	c.Retention.Memory = false
	// ONNX Runtime's arena grows to the largest batch seen, which under load can come after
	// the warm-up; without it every run frees what it took.
	c.Detector.NoArena = true
	sc := startStack(t, c)

	scan := func() {
		v, err := sc.Scan(ctx, path)
		require.NoError(t, err)
		require.NotZero(t, v.Faces)
		// The streams keep every crop, verdict and evidence image by design (the archive, in
		// memory here); purge them all so that what the server retains is not mistaken for a
		// leak of the stages.
		names := sc.JS.StreamNames(ctx)
		for name := range names.Name() {
			st, err := sc.JS.Stream(ctx, name)
			require.NoError(t, err)
			require.NoError(t, st.Purge(ctx))
		}
		require.NoError(t, names.Err())
	}
	live := func() int64 {
		runtime.GC()
		debug.FreeOSMemory()
		return memstat.CHeapInUse() + memstat.GoHeapInUse()
	}
	warmup, n := 4, 12
	if v, err := strconv.Atoi(os.Getenv("LAE_LEAK_SCANS")); err == nil && v >= 3 {
		n = v
	}
	for i := 0; i < warmup; i++ {
		scan()
	}
	mats, exact := testenv.LiveMats()
	sources := source.LiveSources()
	rss0 := testenv.RSS(t)
	samples := make([]float64, n)
	for i := range samples {
		scan()
		now, _ := testenv.LiveMats()
		require.Equal(t, mats, now, "live Mats after scan %d", i+1)
		require.Equal(t, sources, source.LiveSources(), "open FFmpeg sources after scan %d", i+1)
		samples[i] = float64(live())
	}
	if !exact {
		t.Log("live Mat count not checked: run with -tags matprofile")
	}
	slope := slopePerStep(samples)
	const mib = 1 << 20
	t.Logf("%d scans after %d warm-up: live C+Go heap slope %+.3f MiB/scan (first %.1f MiB, last %.1f MiB), RSS %+.1f MiB",
		n, warmup, slope/mib, samples[0]/mib, samples[n-1]/mib, float64(testenv.RSS(t)-rss0)/mib)
	require.Less(t, slope, 0.5*mib, "live memory grows with every scan: a leak")
}

// slopePerStep is the least-squares slope of y over 0, 1, 2, ...
func slopePerStep(y []float64) float64 {
	n := float64(len(y))
	var sx, sy, sxx, sxy float64
	for i, v := range y {
		x := float64(i)
		sx, sy, sxx, sxy = sx+x, sy+v, sxx+x*x, sxy+x*v
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func TestSlopePerStep(t *testing.T) {
	for _, tc := range []struct {
		y    []float64
		want float64
	}{
		{[]float64{1, 1, 1, 1}, 0},
		{[]float64{0, 2, 4, 6}, 2},
		{[]float64{10, 0, 10, 0, 10, 0}, -6.0 / 7},
	} {
		require.InDelta(t, tc.want, slopePerStep(tc.y), 1e-9, "%v", tc.y)
	}
}
