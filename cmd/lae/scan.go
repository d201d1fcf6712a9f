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
	"sync"
	"sync/atomic"
	"time"

	"github.com/lae-screening/lae/aggregator/report"
	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/core"
	"github.com/lae-screening/lae/internal/ops"
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

func writeReport(ctx context.Context, st *core.Stack, v laev1.Verdict, path string) error {
	images, err := st.EvidenceImages(ctx, v)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create report: %w", err)
	}
	c := st.Config()
	err = report.Write(f, v, images, report.Settings{SampleFPS: c.Ingest.SampleFPS, SampleFPSSet: true,
		FaceModel: c.Ingest.FaceModel, ModelPath: model.PathOrDefault(c.Detector.Model), Generator: "lae scan"})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// scanOutput are the scan flags that shape its output rather than the stack.
type scanOutput struct {
	json, quiet, verbose bool
	evidenceDir, report  string
}

var scanCommand = config.Command{
	Name:     "scan",
	Synopsis: "scan [flags] <file|dir|url|->...",
	Doc: `Scans each input for manipulated faces and prints a verdict per input. A directory is
scanned recursively (media files only); "-" reads one video from stdin. Flags may follow the
inputs. Ctrl-C prints what is known so far of each unfinished input (final: false).
Exit status: 0 when every input was scanned (whatever the verdicts), 1 when any input failed,
2 on a usage error, 130 when interrupted.`,
}

func scanCmd(ctx context.Context, args []string) error {
	var out scanOutput
	cmd := scanCommand
	cmd.Bind = func(fs *flag.FlagSet, c *config.Config) {
		config.StackFlags(fs, c)
		fs.BoolVar(&out.json, "json", false, "print one JSON object per input instead of text")
		fs.StringVar(&out.evidenceDir, "evidence-dir", "", "write the evidence images (face crop, the same crop under the heatmap, frame thumbnail) into this directory")
		fs.StringVar(&out.report, "report", "", "write a self-contained HTML report (several inputs: PATH-1.html, PATH-2.html, ...)")
		fs.BoolVar(&out.quiet, "quiet", false, "no progress line on stderr")
		fs.BoolVar(&out.verbose, "v", false, "log the stages' work to stderr (same as --log-level debug)")
	}
	cfg, args, err := config.Parse(cmd, args)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return config.Usagef("no input given (a file, directory, URL or -)")
	}
	if out.verbose {
		cfg.Log.Level = "debug"
	}
	if err := cfg.Validate(config.AllRoles); err != nil {
		return err
	}
	inputs, err := expandInputs(args)
	if err != nil {
		return err
	}
	log, err := ops.NewLogger(cfg.Log)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if out.verbose {
		routeFFmpegLog(log.Named("ffmpeg"))
	}
	st, err := core.Start(context.WithoutCancel(ctx), core.Options{Config: cfg, Roles: config.AllRoles, Name: "scan", Logger: log})
	if err != nil {
		return err
	}
	defer st.Close(ctx)
	return runScan(ctx, st, inputs, out)
}

// scanJob is one input in flight: its latest rolling verdict, then its final one.
type scanJob struct {
	in      input
	videoID string
	mu      sync.Mutex
	latest  laev1.Verdict
	seen    bool
	done    chan struct{}
	final   laev1.Verdict
	err     error
}

func (j *scanJob) partial() laev1.Verdict {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.latest
}

// runScan submits every input at once (ingest takes them Ingest.Concurrency at a time, as in
// production), then prints the verdicts in input order.
func runScan(ctx context.Context, st *core.Stack, inputs []input, out scanOutput) error {
	jobs := make([]*scanJob, len(inputs))
	for i, in := range inputs {
		j := &scanJob{in: in, done: make(chan struct{})}
		jobs[i] = j
		url, err := in.url(st.StoreDir())
		if err == nil {
			j.videoID, err = st.Submit(ctx, laev1.SubmitRequest{URL: url, Reference: in.name})
		}
		if err != nil {
			j.err = err
			close(j.done)
			continue
		}
		go func() {
			defer close(j.done)
			j.final, j.err = st.WaitFinal(ctx, j.videoID, func(v laev1.Verdict) {
				j.mu.Lock()
				j.latest, j.seen = v, true
				j.mu.Unlock()
			})
		}()
	}
	showProgress := !out.quiet && !out.json && isTerminal(os.Stderr)
	failed, interrupted := 0, false
	for i, j := range jobs {
		var res scanResult
		if !interrupted {
			prog := newProgressLine(os.Stderr, j.in.name, showProgress)
			stop := st.FollowProgress(j.videoID, prog.update)
			<-j.done
			stop()
			prog.done()
		}
		finished := false
		select {
		case <-j.done:
			finished = j.err == nil || ctx.Err() == nil
		default: // interrupted before this input finished
		}
		switch {
		case !finished:
			interrupted = true
			res.Verdict = interruptedVerdict(j, st)
		case j.err == nil:
			res.Verdict = j.final
		default:
			res.Verdict = laev1.Verdict{VideoID: j.videoID, Verdict: laev1.VerdictError, Error: j.err.Error(),
				Threshold: st.Card.Threshold, Model: st.Card.Name, ModelVersion: st.Card.Version}
		}
		res.Input = j.in.name
		if res.Evidence == nil {
			res.Evidence = []laev1.Evidence{}
		}
		if !interrupted {
			writeOutputs(ctx, st, &res, out, i, len(jobs))
		}
		if res.Verdict.Verdict == laev1.VerdictError {
			failed++
		}
		if out.json {
			b, _ := json.Marshal(res)
			fmt.Println(string(b))
		} else {
			printVerdict(os.Stdout, res)
		}
	}
	switch {
	case interrupted:
		return exitError{130}
	case failed > 0:
		return exitError{1}
	}
	return nil
}

// interruptedVerdict is what an unfinished input has to show: its latest rolling verdict
// (the rule over every score so far), or an unknown one when no score arrived yet. Either
// way final is false.
func interruptedVerdict(j *scanJob, st *core.Stack) laev1.Verdict {
	v := j.partial()
	if !j.seen {
		v = laev1.Verdict{VideoID: j.videoID, Verdict: laev1.VerdictUnknown, Threshold: st.Card.Threshold,
			Model: st.Card.Name, ModelVersion: st.Card.Version}
	}
	v.Final = false
	v.Error = "interrupted: partial result"
	return v
}

// writeOutputs writes the evidence files and the report of one result.
func writeOutputs(ctx context.Context, st *core.Stack, res *scanResult, out scanOutput, i, n int) {
	if out.evidenceDir != "" && len(res.Evidence) > 0 {
		files, err := st.WriteEvidence(ctx, res.Verdict, out.evidenceDir)
		res.EvidenceFiles = files
		if err != nil {
			fmt.Fprintf(os.Stderr, "lae scan: %s: %v\n", res.Input, err)
		}
	}
	if out.report != "" {
		p := reportFile(out.report, i, n)
		if err := writeReport(ctx, st, res.Verdict, p); err != nil {
			fmt.Fprintf(os.Stderr, "lae scan: %s: %v\n", res.Input, err)
		} else {
			res.Report = p
		}
	}
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
	fmt.Fprintf(w, "%s: %s\n", name, headline(v))
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
	if v.Final && !v.Complete {
		fmt.Fprintf(w, "  INCOMPLETE: only %s of the source could be read; the verdict covers that part\n", readShare(v))
	}
	for i, e := range v.Evidence {
		part := ""
		if e.Part != "" {
			part = " (" + e.Part + ")"
		}
		fmt.Fprintf(w, "  evidence %d: %s, track %d, face score %.3f, hot region %s%s, frame %d, face box %s",
			i+1, fmtPTS(e.PTSSeconds), e.TrackID, e.Score, fmtRect(e.HotRegion), part, e.FrameIndex, fmtRect(e.FaceBox))
		if i < len(r.EvidenceFiles) {
			fmt.Fprintf(w, " -> %s", r.EvidenceFiles[i])
		}
		fmt.Fprintln(w)
	}
	if r.Report != "" {
		fmt.Fprintf(w, "  report: %s\n", r.Report)
	}
}

// headline is the verdict's first line: the label with what it rests on. Only a final verdict
// of a complete scan is REAL or FAKE outright; unknown has a reason instead of a score.
func headline(v laev1.Verdict) string {
	model := strings.TrimSpace(v.Model + " " + v.ModelVersion)
	if model == "" {
		model = "unknown model"
	}
	basis := fmt.Sprintf("score %.3f (threshold %.3f, rule %s, model %s)", v.Score, v.Threshold, v.Rule, model)
	label := strings.ToUpper(v.Verdict)
	switch {
	case v.Verdict == laev1.VerdictUnknown && v.Final:
		return fmt.Sprintf("UNKNOWN: %s, nothing to judge (model %s)", unknownReason(v), model)
	case v.Verdict == laev1.VerdictUnknown:
		return fmt.Sprintf("PARTIAL, no face scored yet (model %s)", model)
	case !v.Final:
		return fmt.Sprintf("PARTIAL, %s so far: %s", label, basis)
	case !v.Complete:
		return fmt.Sprintf("%s on the part read (%s of the source): %s", label, readShare(v), basis)
	}
	return label + "  " + basis
}

// readShare is how much of the source a verdict covers, in words.
func readShare(v laev1.Verdict) string {
	if v.ReadShare == nil {
		return "part"
	}
	return fmt.Sprintf("%.0f%%", 100**v.ReadShare)
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

func (p *progressLine) update(pr pipeline.Progress) {
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
