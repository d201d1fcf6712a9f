// Command laebench measures lae against its physical floor (issue 11) and writes the report:
// a table on stdout, JSON to --out. `task bench` runs it after building bin/lae:
//
//	go run ./cmd/laebench --lae bin/lae --out bench-report.json
//
// It exits 1 when a shared clip's verdict score moved more than 0.02 from the committed
// baseline (after writing the report), 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/internal/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "laebench:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run() error {
	var o bench.Options
	var out, sections string
	var quiet bool
	flag.StringVar(&o.Lae, "lae", "bin/lae", "the lae binary to scan with")
	flag.StringVar(&out, "out", "bench-report.json", "write the JSON report here")
	flag.IntVar(&o.Repeats, "repeats", 3, "measure each headline figure this many times (the median is reported)")
	flag.StringVar(&sections, "sections", strings.Join(bench.AllSections, ","), "comma-separated sections to run")
	flag.StringVar(&o.DataDir, "data", bench.DefaultDataDir(), "the shared data directory (../shared/data beside the repository)")
	flag.StringVar(&o.Baseline, "baseline", "testdata/bench/verdicts-baseline.json", "verdict scores to hold the shared clips to")
	flag.StringVar(&o.Repo, "repo", ".", "the repository root (where the Go benchmarks run)")
	flag.StringVar(&o.Model, "model", "", "detector model for the detector section (default: the shipped one)")
	flag.IntVar(&o.BatchSize, "batch", model.BatchSize(model.ProviderCPU), "detector batch size (default: what a CPU detector uses)")
	flag.IntVar(&o.ClipSeconds, "clip-seconds", 60, "length of the generated 720p30 clip")
	flag.Float64Var(&o.LiveSeconds, "live-seconds", 30, "seconds of the clip streamed in the live section")
	flag.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	flag.Parse()
	if flag.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", flag.Args())}
	}
	for _, s := range strings.Split(sections, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Sections = append(o.Sections, s)
		}
	}
	if err := bench.CheckSections(o.Sections); err != nil {
		return usageError{err}
	}
	if o.Repeats < 1 {
		return usageError{fmt.Errorf("--repeats must be at least 1")}
	}
	if o.DataDir == "" {
		return usageError{fmt.Errorf("no shared data directory found: pass --data")}
	}
	if !quiet {
		o.Logf = func(format string, a ...any) {
			fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := bench.WriteTable(os.Stdout, rep); err != nil {
		return fmt.Errorf("print report: %w", err)
	}
	if rep.Failed() {
		return fmt.Errorf("verdict scores moved past ±%.2f of the baseline (see %s)", bench.MaxScoreDelta, out)
	}
	return nil
}
