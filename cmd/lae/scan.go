package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lae-screening/lae/aggregator/report"
	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/internal/scanner"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// scanResult is one line of `lae scan --json`: the verdict plus the scan error, if any.
type scanResult struct {
	laev1.Verdict
	EvidenceFiles []string `json:"evidence_files,omitempty"`
	Report        string   `json:"report,omitempty"`
}

// reportFile names the report of input i of n: the path itself for one input, PATH-<i+1>.html
// for several.
func reportFile(path string, i, n int) string {
	if n == 1 {
		return path
	}
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s-%d%s", strings.TrimSuffix(path, ext), i+1, ext)
}

func writeReport(ctx context.Context, sc *scanner.Scanner, v laev1.Verdict, path string) error {
	images, err := sc.EvidenceImages(ctx, v)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	fps, faceModel, modelPath := sc.Settings()
	err = report.Write(f, v, images, report.Settings{SampleFPS: fps, SampleFPSSet: true, FaceModel: faceModel,
		ModelPath: modelPath, Generator: "lae scan"})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return nil
}

func scanCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lae scan [flags] <file-or-url>...\n\nScans each input for manipulated faces and prints a verdict per input.\nExit status: 0 when every input was scanned (whatever the verdicts), 1 when any input failed.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		jsonOut     = fs.Bool("json", false, "print one JSON object per input instead of text")
		evidenceDir = fs.String("evidence-dir", "", "write the evidence images (frame + heatmap overlay) into this directory")
		reportPath  = fs.String("report", "", "write a self-contained HTML report (several inputs: PATH-1.html, PATH-2.html, ...)")
		fps         = fs.Float64("fps", 5, "frames per second to sample by presentation time (0 = every frame)")
		maxDur      = fs.Duration("max-duration", 0, "stop each input after this much media time (0 = no limit)")
		faceModel   = fs.String("face-model", "", "face detector: yunet (embedded), haar-alt, haar, lbp, or a YuNet .onnx file (default: yunet)")
		minEyePx    = fs.Float64("min-eye-px", pipeline.DefaultMinEyePx, "faces whose eyes are closer than this many source pixels are too small to judge: counted (faces_too_small), not scored (0 = score every face)")
		modelPath   = fs.String("model", "", "LAE ONNX model (default: the shipped detector/models/lae-v2.onnx)")
		ortLib      = fs.String("ort-lib", os.Getenv("LAE_ORT_LIB"), "ONNX Runtime shared library (env LAE_ORT_LIB; default .cache/ort/libonnxruntime.so.1)")
		provider    = fs.String("provider", "cpu", "ONNX Runtime execution provider: cpu, cuda or tensorrt")
		rule        = fs.String("rule", "", "verdict rule: mean, topk_mean or max_face_mean (default: the aggregator's)")
		topK        = fs.Int("topk", 0, "k for the topk_mean rule (0 = default)")
		threshold   = fs.Float64("threshold", -1, "decision threshold on the video score (default: the model card's calibrated one)")
		evFrames    = fs.Int("evidence-frames", 3, "number of top frames to keep as evidence")
		openTimeout = fs.Duration("open-timeout", 15*time.Second, "bound on opening a source and on a stalled read")
		quiet       = fs.Bool("quiet", false, "no progress on stderr")
		verbose     = fs.Bool("v", false, "log the stages' work to stderr")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	inputs := fs.Args()
	if len(inputs) == 0 {
		fs.Usage()
		return exitError{2}
	}
	fpsSet, minEyeSet := false, false
	fs.Visit(func(f *flag.Flag) {
		fpsSet = fpsSet || f.Name == "fps"
		minEyeSet = minEyeSet || f.Name == "min-eye-px"
	})

	logger := zap.NewNop()
	if *verbose {
		cfg := zap.NewDevelopmentConfig()
		cfg.Level = zap.NewAtomicLevelAt(zapcore.DebugLevel)
		cfg.DisableStacktrace = true
		logger, _ = cfg.Build()
		routeFFmpegLog(logger.Named("ffmpeg"))
	}
	defer func() { _ = logger.Sync() }()

	sc, err := scanner.New(ctx, scanner.Options{
		Model: *modelPath, ORTLib: *ortLib, Provider: *provider,
		SampleFPS: *fps, SampleFPSSet: fpsSet, MaxDuration: *maxDur, FaceModel: *faceModel,
		MinEyePx: *minEyePx, MinEyePxSet: minEyeSet,
		Rule: *rule, TopK: *topK, Threshold: *threshold, EvidenceFrames: *evFrames,
		OpenTimeout: *openTimeout, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer sc.Close()

	showProgress := !*quiet && !*jsonOut && isTerminal(os.Stderr)
	failed := 0
	for i, input := range inputs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		prog := newProgressLine(os.Stderr, input, showProgress)
		v, err := sc.Scan(ctx, input, prog.update)
		prog.done()
		res := scanResult{Verdict: v}
		if err != nil {
			res.Verdict = laev1.Verdict{Input: input, Verdict: laev1.VerdictError, Error: err.Error(), Threshold: sc.Threshold(), Model: sc.ModelInfo().Name}
		}
		if res.Evidence == nil {
			res.Evidence = []laev1.Evidence{}
		}
		if *evidenceDir != "" && len(res.Evidence) > 0 {
			files, err := sc.WriteEvidence(ctx, res.Verdict, *evidenceDir)
			res.EvidenceFiles = files
			if err != nil {
				fmt.Fprintf(os.Stderr, "lae scan: %s: %v\n", input, err)
			}
		}
		if *reportPath != "" {
			p := reportFile(*reportPath, i, len(inputs))
			if err := writeReport(ctx, sc, res.Verdict, p); err != nil {
				fmt.Fprintf(os.Stderr, "lae scan: %s: %v\n", input, err)
			} else {
				res.Report = p
			}
		}
		if res.Verdict.Verdict == laev1.VerdictError {
			failed++
		}
		if *jsonOut {
			b, _ := json.Marshal(res)
			fmt.Println(string(b))
		} else {
			printVerdict(os.Stdout, res)
		}
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

func printVerdict(w io.Writer, r scanResult) {
	v := r.Verdict
	if v.Verdict == laev1.VerdictError {
		fmt.Fprintf(w, "%s: ERROR: %s\n", v.Input, oneLine(v.Error))
		return
	}
	name := v.Input
	if name == "" {
		name = v.VideoID
	}
	fmt.Fprintf(w, "%s: %s  score %.3f (threshold %.3f, rule %s, model %s %s)\n",
		name, strings.ToUpper(v.Verdict), v.Score, v.Threshold, v.Rule, v.Model, v.ModelVersion)
	if v.Final {
		fmt.Fprintf(w, "  %d frames decoded, %d sampled, %d with a face; %d faces in %d tracks",
			v.FramesDecoded, v.FramesSampled, v.FramesWithFace, v.Faces, len(v.Tracks))
	} else {
		// A rolling verdict: the video is still being ingested, only scores so far are known.
		fmt.Fprintf(w, "  so far: %d faces scored in %d frames, %d tracks", v.CropsScored, v.FramesWithFace, len(v.Tracks))
	}
	if v.CropErrors > 0 {
		fmt.Fprintf(w, "; %d crops could not be scored", v.CropErrors)
	}
	if v.FacesTooSmall > 0 {
		fmt.Fprintf(w, "; %d faces too small to judge (not scored)", v.FacesTooSmall)
	}
	fmt.Fprintln(w)
	if v.Verdict == laev1.VerdictUnknown {
		fmt.Fprintf(w, "  %s: nothing to judge\n", unknownReason(v))
	}
	for i, e := range v.Evidence {
		fmt.Fprintf(w, "  evidence %d: frame %d at %s, track %d, face score %.3f, face box %s, hot region %s",
			i+1, e.FrameIndex, fmtPTS(e.PTSSeconds), e.TrackID, e.Score, fmtRect(e.FaceBox), fmtRect(e.HotRegion))
		if i < len(r.EvidenceFiles) {
			fmt.Fprintf(w, " -> %s", r.EvidenceFiles[i])
		}
		fmt.Fprintln(w)
	}
	if r.Report != "" {
		fmt.Fprintf(w, "  report: %s\n", r.Report)
	}
}

// unknownReason says why an "unknown" verdict had nothing to judge.
func unknownReason(v laev1.Verdict) string {
	if v.FacesTooSmall > 0 && v.CropsScored == 0 {
		return fmt.Sprintf("faces too small to judge (%d; eyes closer than --min-eye-px source pixels)", v.FacesTooSmall)
	}
	return "no usable face found"
}

func fmtRect(r laev1.Rect) string {
	return fmt.Sprintf("[%.0f,%.0f %.0fx%.0f]", r.X, r.Y, r.W, r.H)
}

func fmtPTS(s float64) string {
	d := time.Duration(s * float64(time.Second)).Round(10 * time.Millisecond)
	return d.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressLine redraws one stderr line at most 5 times a second while an input is scanned.
type progressLine struct {
	w       io.Writer
	input   string
	enabled bool
	last    atomic.Int64
	start   time.Time
	drawn   bool
}

func newProgressLine(w io.Writer, input string, enabled bool) *progressLine {
	return &progressLine{w: w, input: input, enabled: enabled, start: time.Now()}
}

func (p *progressLine) update(pr scanner.Progress) {
	if !p.enabled {
		return
	}
	now := time.Now().UnixNano()
	if now-p.last.Load() < int64(200*time.Millisecond) {
		return
	}
	p.last.Store(now)
	p.drawn = true
	media := fmtPTS(pr.PTS)
	if pr.Duration > 0 {
		media = fmt.Sprintf("%s of %s (%.0f%%)", media, pr.Duration.Round(100*time.Millisecond),
			100*min(1, pr.PTS/pr.Duration.Seconds()))
	}
	fmt.Fprintf(p.w, "\r\033[K%s: %s media, %d frames sampled, %d faces (%s)",
		p.input, media, pr.FramesSampled, pr.Faces, time.Since(p.start).Round(100*time.Millisecond))
}

func (p *progressLine) done() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
