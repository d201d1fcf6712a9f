package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asticode/go-astiav"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv("LAEBENCH_TEST_CHILD") == "alloc" {
		childAlloc()
		return
	}
	astiav.SetLogLevel(astiav.LogLevelFatal)
	os.Exit(m.Run())
}

// childAlloc is the child process of TestRunChildUsage: it touches 96 MiB and burns some CPU.
func childAlloc() {
	b := make([]byte, 96<<20)
	for i := range b {
		b[i] = byte(i)
	}
	x := 0
	for t0 := time.Now(); time.Since(t0) < 100*time.Millisecond; {
		x++
	}
	_, _ = os.Stdout.WriteString(strings.Repeat("y", int(b[12345]%2)+x%2))
}

func TestPercentile(t *testing.T) {
	for _, tc := range []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"empty", nil, 50, 0},
		{"one", []float64{7}, 50, 7},
		{"odd median", []float64{3, 1, 2}, 50, 2},
		{"even median", []float64{4, 1, 3, 2}, 50, 2.5},
		{"outlier does not move the median", []float64{1, 1, 100}, 50, 1},
		{"p95 interpolates", []float64{0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100}, 95, 95},
		{"p100", []float64{5, 9, 1}, 100, 9},
		{"p0", []float64{5, 9, 1}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.xs...)
			require.InDelta(t, tc.want, Percentile(tc.xs, tc.p), 1e-9)
			require.Equal(t, in, tc.xs, "input reordered")
			if tc.p == 50 {
				require.InDelta(t, tc.want, Median(tc.xs), 1e-9)
			}
		})
	}
}

func TestCompareScores(t *testing.T) {
	base := Baseline{Model: "m", Scores: map[string]float64{"a.mp4": 0.5, "b.mp4": 0.9}}
	for _, tc := range []struct {
		name     string
		scores   map[string]float64
		fail     bool
		maxDelta float64
		worst    string
	}{
		{"identical", map[string]float64{"a.mp4": 0.5, "b.mp4": 0.9}, false, 0, ""},
		{"within the limit", map[string]float64{"a.mp4": 0.515, "b.mp4": 0.89}, false, 0.015, "a.mp4"},
		{"exactly the limit", map[string]float64{"a.mp4": 0.52, "b.mp4": 0.9}, false, 0.02, "a.mp4"},
		{"past the limit fails", map[string]float64{"a.mp4": 0.5, "b.mp4": 0.87}, true, 0.03, "b.mp4"},
		{"negative delta past the limit fails", map[string]float64{"a.mp4": 0.45, "b.mp4": 0.9}, true, 0.05, "a.mp4"},
		{"a baseline clip not scored fails", map[string]float64{"a.mp4": 0.5}, true, 0, ""},
		{"a new clip does not fail", map[string]float64{"a.mp4": 0.5, "b.mp4": 0.9, "c.mp4": 0.1}, false, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := CompareScores(base, tc.scores, MaxScoreDelta)
			require.Equal(t, tc.fail, r.Fail)
			require.Equal(t, tc.fail, r.Status == "FAIL")
			require.InDelta(t, tc.maxDelta, r.MaxDelta, 1e-9)
			require.Equal(t, tc.worst, r.Worst)
			rep := Report{Verdicts: r}
			require.Equal(t, tc.fail, rep.Failed())
		})
	}
}

func TestLoadBaseline(t *testing.T) {
	_, ok, err := LoadBaseline(filepath.Join(t.TempDir(), "absent.json"))
	require.NoError(t, err)
	require.False(t, ok, "an absent baseline is reported, not an error")

	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte("{"), 0o600))
	_, _, err = LoadBaseline(bad)
	require.Error(t, err)

	// The committed baseline must stay readable by the bench.
	b, ok, err := LoadBaseline(filepath.Join(testenv.RepoRoot(), "testdata", "bench", "verdicts-baseline.json"))
	require.NoError(t, err)
	if ok {
		require.NotEmpty(t, b.Scores)
		for k := range b.Scores {
			require.True(t, strings.HasPrefix(k, "videos/") || strings.HasPrefix(k, "deepfakes-dev/"), k)
		}
	}
}

func TestRunChildUsage(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "LAEBENCH_TEST_CHILD=alloc")
	t0 := time.Now()
	require.NoError(t, cmd.Run())
	u := UsageOf(cmd.ProcessState, time.Since(t0))
	require.GreaterOrEqual(t, u.PeakRSSMB, 96.0, "peak RSS counts the child's 96 MiB")
	require.Less(t, u.PeakRSSMB, 1024.0, "Maxrss is KiB: a MiB reading would be 1024 times too large")
	require.Greater(t, u.CPU, 50*time.Millisecond, "the child burned ~100ms of CPU")

	_, u, err := RunChild(context.Background(), os.Args[0], "-test.run", "^TestNoSuchTest$", "-test.badflag")
	require.Error(t, err, "a failing child is an error")
	require.Positive(t, u.Wall)
	require.InDelta(t, 2.0, RSSMB(2048), 1e-9)
}

func TestMachine(t *testing.T) {
	require.Equal(t, "AMD EPYC 7B13", CPUModel(strings.NewReader("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")))
	require.Equal(t, "", CPUModel(strings.NewReader("processor : 0\n")))
	l, err := ParseLoadAvg("1.50 0.75 0.25 2/300 1234\n")
	require.NoError(t, err)
	require.Equal(t, [3]float64{1.5, 0.75, 0.25}, l)
	_, err = ParseLoadAvg("1.5 x 2")
	require.Error(t, err)
	_, err = ParseLoadAvg("")
	require.Error(t, err)
	m := ReadMachine()
	require.Positive(t, m.CPUs)
}

func TestParseScanJSON(t *testing.T) {
	out := []byte(`{"video_id":"v1","input":"a.mp4","verdict":"fake","score":0.8,"final":true,"source":{"duration_seconds":12.5,"width":1,"height":1,"coded_width":1,"coded_height":1}}` + "\n")
	vs, err := ParseScanJSON(out)
	require.NoError(t, err)
	require.Len(t, vs, 1)
	require.Equal(t, "fake", vs[0].Verdict)
	require.InDelta(t, 0.8, vs[0].Score, 1e-9)
	require.InDelta(t, 12.5, vs[0].Source.DurationSeconds, 1e-9)
	_, err = ParseScanJSON([]byte("lae scan: no such file\n"))
	require.Error(t, err)
	_, err = ParseScanJSON([]byte("{not json\n"))
	require.Error(t, err)
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
BenchmarkEncode-2         	   12345	     98765 ns/op	    2048 B/op	      12 allocs/op
BenchmarkEndToEnd/batch16-2	      40	  30000000 ns/op	       512.5 crops/s	  1000 B/op	       3 allocs/op
BenchmarkEndToEnd/batch16-2: bench_test.go:42: model x
PASS
`
	rs, err := ParseGoBench(strings.NewReader(out), "./ingest/crops")
	require.NoError(t, err)
	require.Len(t, rs, 2)
	require.Equal(t, GoBenchResult{Package: "./ingest/crops", Name: "BenchmarkEncode-2", N: 12345, NsPerOp: 98765, BytesPerOp: 2048, AllocsPerOp: 12}, rs[0])
	require.InDelta(t, 512.5, rs[1].Extra["crops/s"], 1e-9)
	require.InDelta(t, 3, rs[1].AllocsPerOp, 1e-9)
}

func TestHotPathPackages(t *testing.T) {
	pkgs, err := HotPathPackages(testenv.RepoRoot(), HotPathRoots)
	require.NoError(t, err)
	require.Contains(t, pkgs, "./detector/worker", "detector/worker has BenchmarkEndToEnd")
	for _, p := range pkgs {
		require.True(t, strings.HasPrefix(p, "./"), p)
	}
}

func TestMediaFiles(t *testing.T) {
	d := t.TempDir()
	for _, f := range []string{"videos/a.mp4", "videos/sub/b.mkv", "videos/notes.txt", "videos/c.webm", "other/d.mp4"} {
		require.NoError(t, os.MkdirAll(filepath.Join(d, filepath.Dir(f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(d, f), nil, 0o600))
	}
	got, err := MediaFiles(d, "videos")
	require.NoError(t, err)
	require.Equal(t, []string{"videos/a.mp4", "videos/c.webm", "videos/sub/b.mkv"}, got)
}

func TestReportJSONAndTable(t *testing.T) {
	r := &Report{ScanRealtimeX: ptr(9.5), ScanPeakRSSMB: ptr(600), DetectorRatio: ptr(0.95), Repeats: 3,
		Machine: Machine{CPUs: 2, Model: "AMD EPYC", LoadAtStart: [3]float64{1, 2, 3}},
		Ingest:  &IngestReport{FaceModel: "yunet", SampleFPS: 5, FPS: 100, FFmpegFPS: 400, Ratio: 0.25, FaceDetectMs: map[string]float64{"yunet": 3.5}},
		Verdicts: CompareScores(Baseline{Scores: map[string]float64{"videos/a.mp4": 0.5}},
			map[string]float64{"videos/a.mp4": 0.6}, MaxScoreDelta),
		Errors: map[string]string{SectionLive: "no ffmpeg"}}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"detector_ratio", "ingest_ratio", "scan_realtime_x", "scan_peak_rss_mb", "live_p95_ms", "machine"} {
		require.Contains(t, m, k, "the issue's keys are always present (null when not measured)")
	}
	require.Nil(t, m["live_p95_ms"])
	require.InDelta(t, 9.5, m["scan_realtime_x"], 1e-9)
	require.Contains(t, m["machine"], "loadavg_end")

	var buf bytes.Buffer
	require.NoError(t, WriteTable(&buf, r))
	out := buf.String()
	for _, want := range []string{"AMD EPYC", "load 1.00 2.00 3.00", "scan_realtime_x   9.50", "ok", "scan_peak_rss_mb  600", "MISS",
		"face detect yunet", "3.50 ms/frame", "FAIL", "videos/a.mp4", "error live", "no ffmpeg"} {
		require.Contains(t, out, want)
	}
}

func TestCheckSections(t *testing.T) {
	require.NoError(t, CheckSections(AllSections))
	require.Error(t, CheckSections([]string{"scan", "nope"}))
}

// TestIngestDetectorSmoke runs the ingest and detector sections on a short generated clip:
// every crop ingest published is scored both ways, and both rates are measured.
func TestIngestDetectorSmoke(t *testing.T) {
	testenv.SharedData(t)
	if _, err := os.Stat(testenv.ShippedModelPath()); err != nil {
		t.Skipf("shipped model absent: %v", err)
	}
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	clip := filepath.Join(t.TempDir(), "smoke.mp4")
	testenv.WriteClip(t, clip, testenv.Clip{Width: 320, Height: 240, Frames: 20, FPS: 10,
		Size: 150, From: image.Pt(80, 40), To: image.Pt(90, 45), Face: testenv.Drawn, DrawnRes: 160, Seed: 1})
	srv := testenv.StartNATS(t)
	ctx := context.Background()

	in, err := Ingest(ctx, srv, clip, 1, t.Logf)
	require.NoError(t, err)
	require.Equal(t, 20, in.SourceFrames)
	require.Len(t, in.Runs, 1)
	require.Positive(t, in.Runs[0].CropsPublished, "the drawn face is found")
	require.Positive(t, in.FPS)
	require.Positive(t, in.FFmpegFPS)
	require.InDelta(t, in.FPS/in.FFmpegFPS, in.Ratio, 1e-9)
	for _, spec := range FaceDetectorSpecs {
		require.Positive(t, in.FaceDetectMs[spec], spec)
	}

	d, err := Detector(ctx, srv, in.VideoID, "", 16, 1, t.Logf)
	require.NoError(t, err)
	require.Equal(t, int(in.Runs[0].CropsPublished), d.Crops, "the detector sees every published crop")
	require.Positive(t, d.Worker)
	require.Positive(t, d.Direct)
	require.InDelta(t, d.Worker/d.Direct, d.Ratio, 1e-9)
}
