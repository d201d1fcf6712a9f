package scanner

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rssBytes reads the resident set size from /proc (Linux).
func rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestRepeatedScansDoNotLeak scans the same clip repeatedly: every Mat the stages create is
// closed (exact count with -tags matprofile) and the process stops growing (FFmpeg frames,
// ONNX Runtime tensors and C buffers are invisible to the Go heap, so RSS is what shows them).
//
// RSS legitimately grows during the first scans: the embedded server's stream caches, the crop
// archive's index and the aggregator's memory of finished videos fill up and plateau. A leak
// grows linearly instead, so the bound applies to a second window after a first one.
func TestRepeatedScansDoNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("leak test skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	path, _ := faceVideo(t, t.TempDir(), 50)
	sc := newScanner(t)

	scan := func() {
		v, err := sc.Scan(ctx, path, nil)
		require.NoError(t, err)
		require.NotZero(t, v.Faces)
	}
	settled := func() int64 {
		runtime.GC()
		debug.FreeOSMemory()
		return rssBytes(t)
	}
	scan()
	mats := liveMats()
	window := 5
	if n, err := strconv.Atoi(os.Getenv("LAE_LEAK_WINDOW")); err == nil {
		window = n
	}
	var marks []int64
	for w := 0; w < 2; w++ {
		marks = append(marks, settled())
		for i := 0; i < window; i++ {
			scan()
			require.Equal(t, mats, liveMats(), "live Mats after a scan")
		}
	}
	marks = append(marks, settled())
	first, second := marks[1]-marks[0], marks[2]-marks[1]
	t.Logf("RSS growth: first %d scans %+.1f MiB, next %d scans %+.1f MiB", window, float64(first)/(1<<20), window, float64(second)/(1<<20))
	// One leaked BGR frame per sampled frame would add ~7 MiB per scan of this clip.
	require.Less(t, second, int64(3<<20)*int64(window), "RSS keeps growing: a leak")
}
