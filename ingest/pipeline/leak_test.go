package pipeline

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

func rssBytes(t testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb * 1024
		}
	}
	t.Skip("VmRSS not found")
	return 0
}

func settledRSS(t testing.TB) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return rssBytes(t)
}

// TestNoLeaks ingests the same clip repeatedly, with the cascade (and eye cascade) and with
// YuNet, plus a failing source: the live Mat count (-tags matprofile) returns to where it
// started and RSS stops growing.
func TestNoLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("leak test ingests the clip many times")
	}
	srv := startNATS(t)
	clip := video(t, "asl/help.mkv")
	yunet := filepath.Join(dataDir(t), "models", "yunet", "yunet_s_640_640.onnx")
	once := func(i int) {
		model := ""
		if i%2 == 1 {
			model = yunet
		}
		_, err := Run(context.Background(), srv.JS, laev1.NewVideoID(), clip, Options{
			SampleFPS: 3, MaxDuration: 2 * time.Second, FaceModel: model})
		require.NoError(t, err)
		_, err = Run(context.Background(), srv.JS, laev1.NewVideoID(), clip+".missing", Options{})
		require.Error(t, err)
	}
	mats0, haveMats := liveMats()
	for i := 0; i < 2; i++ {
		once(i)
	}
	base := settledRSS(t)
	const rounds = 8
	for i := 0; i < rounds; i++ {
		once(i)
	}
	grown := settledRSS(t) - base
	t.Logf("RSS %d MiB, growth %+d KiB over %d rounds", base>>20, grown>>10, rounds)
	// Each round decodes ~6 frames of 900 KiB and publishes ~6 crops of 192 KiB (the in-memory
	// stream keeps those, about 1.2 MiB a round); leaking frames or crops would add far more.
	require.Less(t, grown, int64(40<<20))
	if haveMats {
		mats, _ := liveMats()
		require.Equal(t, mats0, mats, "live gocv Mats")
	} else {
		t.Log("live Mat count not checked: run with -tags matprofile")
	}
}

// BenchmarkRunPerFrame ingests a single-speaker clip end to end (decode, detect, align, track,
// publish to an embedded JetStream) and reports the time per sampled frame.
func BenchmarkRunPerFrame(b *testing.B) {
	srv := startNATS(b)
	clip := video(b, "asl/help.mkv")
	for _, model := range []string{"", filepath.Join(dataDir(b), "models", "yunet", "yunet_s_640_640.onnx")} {
		name := "default"
		if model != "" {
			name = "yunet"
		}
		b.Run(name, func(b *testing.B) {
			var frames uint64
			for i := 0; i < b.N; i++ {
				eos, err := Run(context.Background(), srv.JS, laev1.NewVideoID(), clip, Options{SampleFPS: 5, FaceModel: model})
				if err != nil {
					b.Fatal(err)
				}
				frames += eos.FramesSampled
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(frames), "ms/frame")
		})
	}
}
