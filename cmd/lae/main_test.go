package main

import (
	"bufio"
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

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

var laeBin string

func TestMain(m *testing.M) {
	routeFFmpegLog(nil) // the fixture encoder's chatter would bury the test output
	dir, err := os.MkdirTemp("", "lae-bin-")
	if err != nil {
		panic(err)
	}
	laeBin = filepath.Join(dir, "lae")
	out, err := exec.Command("go", "build", "-o", laeBin, ".").CombinedOutput()
	if err != nil {
		_, _ = os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runLae runs the built binary from the repository root, as a user would.
func runLae(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, laeBin, args...)
	cmd.Dir = testenv.RepoRoot()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "lae %v did not finish within %s", args, timeout)
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return o.String(), e.String(), code
}

// writeVideo writes a generated clip: with a synthetic face when withFace, an empty scene otherwise.
func writeVideo(t *testing.T, path string, withFace bool) {
	c := laeClip(15)
	if !withFace {
		c.Size = 0
	}
	testenv.WriteClip(t, path, c)
}

// writeLongVideo writes a clip with a face that takes a while to scan at every frame.
func writeLongVideo(t *testing.T, path string, frames int) {
	testenv.WriteClip(t, path, laeClip(frames))
}

// laeClip is a 320x240 clip at 10 fps of a drawn face drifting over a noisy background.
func laeClip(frames int) testenv.Clip {
	return testenv.Clip{Width: 320, Height: 240, Frames: frames, FPS: 10,
		Face: testenv.Drawn, DrawnRes: 160, Seed: 3, Size: 150, From: image.Pt(80, 40), To: image.Pt(90, 45)}
}

func TestScanBadInputsEachFailAloneAndTheRestIsScanned(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mp4")
	writeVideo(t, good, true)
	noFace := filepath.Join(dir, "noface.mp4")
	writeVideo(t, noFace, false)
	empty := filepath.Join(dir, "empty.mp4")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	html := filepath.Join(dir, "page.avi")
	require.NoError(t, os.WriteFile(html, []byte("<!doctype html><html><body>not a video</body></html>\n"), 0o644))
	full, err := os.ReadFile(good)
	require.NoError(t, err)
	// Cut inside the index (moov): nothing can be decoded, so the input fails.
	truncated := filepath.Join(dir, "truncated.mp4")
	require.NoError(t, os.WriteFile(truncated, full[:300], 0o644))
	// Cut inside the media data: what is there is scanned, and the counts show what was lost.
	cutTail := filepath.Join(dir, "cut-tail.mp4")
	require.NoError(t, os.WriteFile(cutTail, full[:len(full)*2/3], 0o644))

	bad := []string{
		filepath.Join(dir, "missing.mp4"), empty, html, truncated,
		"foo://example.com/x.mp4", "rtsp://127.0.0.1:1/stream",
	}
	inputs := append(append([]string{}, bad...), good, noFace, cutTail)
	start := time.Now()
	stdout, stderr, code := runLae(t, 4*time.Minute, append([]string{"scan", "--json", "--open-timeout", "3s"}, inputs...)...)
	require.Equal(t, 1, code, "a failed input makes the exit status non-zero; stderr: %s", stderr)
	t.Logf("scanned %d inputs in %s", len(inputs), time.Since(start))

	results := map[string]scanResult{}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r scanResult
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		results[r.Input] = r
	}
	require.Len(t, results, len(inputs), "one JSON object per input: %s", stdout)
	for _, in := range bad {
		r := results[in]
		require.Equal(t, laev1.VerdictError, r.Verdict.Verdict, in)
		require.NotEmpty(t, r.Error, in)
		require.NotContains(t, r.Error, "\n", "one-line error for %s", in)
		t.Logf("%s -> %s", filepath.Base(in), r.Error)
	}
	require.Contains(t, results["foo://example.com/x.mp4"].Error, "scheme")
	require.Contains(t, []string{laev1.VerdictReal, laev1.VerdictFake}, results[good].Verdict.Verdict, results[good].Error)
	require.NotZero(t, results[good].Faces)
	require.Equal(t, laev1.VerdictUnknown, results[noFace].Verdict.Verdict)
	cut := results[cutTail]
	require.NotEqual(t, laev1.VerdictError, cut.Verdict.Verdict, cut.Error)
	require.Less(t, cut.FramesDecoded, results[good].FramesDecoded, "a file cut short decodes fewer frames")
	require.NotZero(t, cut.FramesDecoded)
	require.False(t, cut.Complete, "a file cut short is marked incomplete, not scored as if whole")
	require.NotNil(t, cut.ReadShare)
	require.Less(t, *cut.ReadShare, 0.9)
	require.True(t, results[good].Complete, "the whole file is complete")
	require.NotNil(t, results[good].ReadShare)
	require.InDelta(t, 1.0, *results[good].ReadShare, 1e-9)
}

func TestScanTextOutput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mp4")
	writeVideo(t, good, true)
	evDir := filepath.Join(dir, "evidence")
	reportPath := filepath.Join(dir, "report.html")
	stdout, stderr, code := runLae(t, 2*time.Minute, "scan", "--evidence-dir", evDir, "--report", reportPath, good, filepath.Join(dir, "missing.mp4"))
	require.Equal(t, 1, code, stderr)
	require.Regexp(t, `good\.mp4: (REAL|FAKE)  score [0-9.]+ \(threshold [0-9.]+`, stdout)
	require.Regexp(t, `missing\.mp4: ERROR: .*no such file`, stdout)
	files, err := filepath.Glob(filepath.Join(evDir, "*.jpg"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "evidence images written")
	// One self-contained report per input: the scanned one with its evidence inlined, the
	// failed one explaining the error.
	page, err := os.ReadFile(filepath.Join(dir, "report-1.html"))
	require.NoError(t, err)
	require.Contains(t, string(page), "<svg")
	require.Contains(t, string(page), "data:image/jpeg;base64,")
	require.NotContains(t, string(page), "<script")
	failedPage, err := os.ReadFile(filepath.Join(dir, "report-2.html"))
	require.NoError(t, err)
	require.Contains(t, string(failedPage), "no such file")
}

// TestScanModelErrors: a missing model is a usage error found before anything starts (2), a
// corrupt one fails to load (1); either way one line naming the file.
func TestScanModelErrors(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.onnx")
	require.NoError(t, os.WriteFile(corrupt, bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1000), 0o644))
	// The card keeps the corrupt model past validation, to the loader.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "corrupt.card.json"), []byte(`{"threshold":0.5}`), 0o644))
	for name, tc := range map[string]struct {
		model string
		code  int
	}{"missing": {filepath.Join(dir, "missing.onnx"), 2}, "corrupt": {corrupt, 1}} {
		t.Run(name, func(t *testing.T) {
			model := tc.model
			_, stderr, code := runLae(t, time.Minute, "scan", "--model", model, "whatever.mp4")
			require.Equal(t, tc.code, code, stderr)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			require.Len(t, lines, 1, "one-line error: %s", stderr)
			require.Contains(t, stderr, model)
		})
	}
}

func TestUsage(t *testing.T) {
	_, stderr, code := runLae(t, time.Minute, "bogus")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "unknown command")
}

// TestPrintVerdictFacesTooSmall: the text output says why a video is unknown, and counts the
// faces too small to judge beside the scored ones.
func TestPrintVerdictFacesTooSmall(t *testing.T) {
	render := func(v laev1.Verdict) string {
		var b bytes.Buffer
		printVerdict(&b, scanResult{Verdict: v})
		return b.String()
	}
	tiny := laev1.Verdict{Input: "far.mp4", Verdict: laev1.VerdictUnknown, Final: true, FramesSampled: 10, FacesTooSmall: 9}
	out := render(tiny)
	require.Contains(t, out, "far.mp4: UNKNOWN")
	require.Contains(t, out, "; 9 faces too small to judge (not scored)")
	require.Contains(t, out, "faces too small to judge (9; eyes closer than --min-eye-px source pixels), nothing to judge")
	require.NotContains(t, out, "0.000", "an unknown verdict has no score to show")
	require.NotContains(t, out, "no usable face found")

	none := laev1.Verdict{Input: "empty.mp4", Verdict: laev1.VerdictUnknown, Final: true, FramesSampled: 10}
	out = render(none)
	require.Contains(t, out, "no usable face found, nothing to judge")
	require.NotContains(t, out, "too small")

	mixed := laev1.Verdict{Input: "group.mp4", Verdict: laev1.VerdictReal, Final: true, Complete: true, FramesSampled: 10, Faces: 10, CropsScored: 10, FacesTooSmall: 4}
	out = render(mixed)
	require.Contains(t, out, "group.mp4: REAL")
	require.Contains(t, out, "; 4 faces too small to judge (not scored)")
	require.NotContains(t, out, "nothing to judge")
}

// TestHeadline: only a final verdict of a complete scan is labelled REAL or FAKE outright.
func TestHeadline(t *testing.T) {
	share := 0.4
	base := laev1.Verdict{Score: 0.91, Threshold: 0.8, Rule: "max_face_mean", Model: "lae-v2", ModelVersion: "2.0.0"}
	cases := []struct {
		name string
		mod  func(v *laev1.Verdict)
		want string
	}{
		{"final fake", func(v *laev1.Verdict) { v.Verdict, v.Final, v.Complete = laev1.VerdictFake, true, true },
			"FAKE  score 0.910 (threshold 0.800, rule max_face_mean, model lae-v2 2.0.0)"},
		{"rolling", func(v *laev1.Verdict) { v.Verdict = laev1.VerdictFake },
			"PARTIAL, FAKE so far: score 0.910"},
		{"truncated", func(v *laev1.Verdict) { v.Verdict, v.Final, v.ReadShare = laev1.VerdictReal, true, &share },
			"REAL on the part read (40% of the source): score 0.910"},
		{"unknown", func(v *laev1.Verdict) {
			v.Verdict, v.Final, v.Complete, v.Model, v.ModelVersion = laev1.VerdictUnknown, true, true, "", ""
		},
			"UNKNOWN: no usable face found, nothing to judge (model unknown model)"},
		{"unknown so far", func(v *laev1.Verdict) { v.Verdict = laev1.VerdictUnknown },
			"PARTIAL, no face scored yet (model lae-v2 2.0.0)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := base
			tc.mod(&v)
			require.Contains(t, headline(v), tc.want)
		})
	}
}
