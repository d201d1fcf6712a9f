package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/lae-screening/lae/detector/model"
)

// Options configures Run.
type Options struct {
	// Lae is the lae binary the scan and verdicts sections run.
	Lae string
	// DataDir is the shared data (../shared/data); the clip source, videos and deepfakes-dev.
	DataDir string
	// Repo is the repository root (the gobench section's working directory).
	Repo string
	// Baseline is the verdict baseline file (testdata/bench/verdicts-baseline.json).
	Baseline string
	// Repeats is how many times each headline figure is measured (its median is reported).
	Repeats int
	// Sections to run (nil = AllSections).
	Sections []string
	// ClipSeconds is the generated clip's length (60); LiveSeconds how much of it is
	// streamed in the live section (30).
	ClipSeconds int
	LiveSeconds float64
	// Model is the detector model ("" = shipped); BatchSize the detector section's batch (the
	// CPU detector's default, model.BatchSize).
	Model     string
	BatchSize int
	// Logf gets progress lines (never nil after defaults).
	Logf func(string, ...any)
}

func (o Options) withDefaults() Options {
	if o.Repeats <= 0 {
		o.Repeats = 3
	}
	if len(o.Sections) == 0 {
		o.Sections = AllSections
	}
	if o.ClipSeconds <= 0 {
		o.ClipSeconds = 60
	}
	if o.LiveSeconds <= 0 {
		o.LiveSeconds = 30
	}
	if o.BatchSize <= 0 {
		o.BatchSize = model.BatchSize(model.ProviderCPU)
	}
	if o.Repo == "" {
		o.Repo = "."
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// CheckSections reports an unknown section name.
func CheckSections(names []string) error {
	for _, n := range names {
		if !slices.Contains(AllSections, n) {
			return fmt.Errorf("unknown section %q (want some of %v)", n, AllSections)
		}
	}
	return nil
}

// Run measures the chosen sections in order and returns the report. A section that cannot
// be measured (a missing tool or data set) is recorded in Report.Errors and the others still
// run; the error returned is only for a bench that could not start at all.
func Run(ctx context.Context, o Options) (*Report, error) {
	o = o.withDefaults()
	if err := CheckSections(o.Sections); err != nil {
		return nil, err
	}
	on := func(s string) bool { return slices.Contains(o.Sections, s) }
	rep := &Report{Started: time.Now().UTC(), Repeats: o.Repeats, Machine: ReadMachine(), Errors: map[string]string{}}
	fail := func(section string, err error) {
		rep.Errors[section] = err.Error()
		o.Logf("%s: %v", section, err)
	}
	tmp, err := os.MkdirTemp("", "laebench-")
	if err != nil {
		return nil, fmt.Errorf("bench temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	clip := ""
	if on(SectionScan) || on(SectionIngest) || on(SectionDetector) || on(SectionLive) {
		clip = filepath.Join(tmp, "bench-720p30.mp4")
		o.Logf("generating a %d s 720p30 clip", o.ClipSeconds)
		if err := GenerateClip(ctx, o.DataDir, clip, o.ClipSeconds); err != nil {
			clip = ""
			for _, s := range []string{SectionScan, SectionIngest, SectionDetector, SectionLive} {
				if on(s) {
					fail(s, err)
				}
			}
		}
	}
	var shared []ScanRun
	if on(SectionScan) && clip != "" {
		r, err := Scan(ctx, o.Lae, clip, o.DataDir, o.Repeats, o.Logf)
		rep.Scan = r
		if err != nil {
			fail(SectionScan, err)
		}
		if r != nil {
			shared = r.SharedClips
			if len(r.ClipRuns) > 0 {
				rep.ScanRealtimeX, rep.ScanPeakRSSMB = ptr(r.RealtimeX), ptr(r.PeakRSSMB)
			}
		}
	}
	if on(SectionVerdicts) {
		r, err := Verdicts(ctx, o.Lae, o.DataDir, o.Baseline, shared, o.Logf)
		rep.Verdicts = r
		if err != nil {
			fail(SectionVerdicts, err)
		}
	}
	if (on(SectionIngest) || on(SectionDetector)) && clip != "" {
		runIngestDetector(ctx, o, clip, on, rep, fail)
	}
	if on(SectionLive) && clip != "" {
		r, err := Live(ctx, clip, o.LiveSeconds, o.Logf)
		rep.Live = r
		if err != nil {
			fail(SectionLive, err)
		} else {
			rep.LiveP95Ms = ptr(r.ScoreP95Ms)
		}
	}
	if on(SectionGoBench) {
		r, err := GoBench(ctx, o.Repo, o.Logf)
		rep.GoBench = r
		if err != nil {
			fail(SectionGoBench, err)
		}
	}
	rep.Machine.LoadAtEnd, _ = LoadAvg()
	rep.Finished = time.Now().UTC()
	if len(rep.Errors) == 0 {
		rep.Errors = nil
	}
	return rep, nil
}

// runIngestDetector runs the two sections that share an embedded server: the detector
// scores the crops ingest published (one ingest run feeds it when only the detector was
// asked for).
func runIngestDetector(ctx context.Context, o Options, clip string, on func(string) bool, rep *Report, fail func(string, error)) {
	srv, err := StartNATS(ctx)
	if err != nil {
		fail(SectionIngest, err)
		return
	}
	defer srv.Close()
	repeats := o.Repeats
	if !on(SectionIngest) {
		repeats = 1
	}
	ir, err := Ingest(ctx, srv, clip, repeats, o.Logf)
	if on(SectionIngest) {
		rep.Ingest = ir
		if err != nil {
			fail(SectionIngest, err)
		}
		if ir != nil && ir.Ratio > 0 {
			rep.IngestRatio = ptr(ir.Ratio)
		}
	}
	if !on(SectionDetector) {
		return
	}
	if ir == nil || ir.VideoID == "" {
		fail(SectionDetector, fmt.Errorf("no crops: the ingest run failed: %v", err))
		return
	}
	dr, err := Detector(ctx, srv, ir.VideoID, o.Model, o.BatchSize, o.Repeats, o.Logf)
	rep.Detector = dr
	if err != nil {
		fail(SectionDetector, err)
	} else {
		rep.DetectorRatio = ptr(dr.Ratio)
	}
}
