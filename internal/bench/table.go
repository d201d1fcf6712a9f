package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Targets of issue 11 on the 2-core machine, shown next to the figures.
const (
	TargetScanRealtimeX = 8.0
	TargetScanPeakRSSMB = 500.0
	TargetDetectorRatio = 0.9
	TargetLiveP95Ms     = 1000.0
)

// WriteTable prints the report for people: the headline figures against their targets, then
// each section's detail.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	m := r.Machine
	p("machine\t%d CPUs, %s; load %.2f %.2f %.2f at start, %.2f %.2f %.2f at end; medians of %d",
		m.CPUs, m.Model, m.LoadAtStart[0], m.LoadAtStart[1], m.LoadAtStart[2], m.LoadAtEnd[0], m.LoadAtEnd[1], m.LoadAtEnd[2], r.Repeats)
	p("")
	p("figure\tvalue\ttarget\t")
	p("scan_realtime_x\t%s\t>= %.0f\t%s", num(r.ScanRealtimeX, "%.2f"), TargetScanRealtimeX, mark(r.ScanRealtimeX, func(v float64) bool { return v >= TargetScanRealtimeX }))
	p("scan_peak_rss_mb\t%s\t< %.0f\t%s", num(r.ScanPeakRSSMB, "%.0f"), TargetScanPeakRSSMB, mark(r.ScanPeakRSSMB, func(v float64) bool { return v < TargetScanPeakRSSMB }))
	p("ingest_ratio\t%s\t\t", num(r.IngestRatio, "%.3f"))
	p("detector_ratio\t%s\t>= %.1f\t%s", num(r.DetectorRatio, "%.3f"), TargetDetectorRatio, mark(r.DetectorRatio, func(v float64) bool { return v >= TargetDetectorRatio }))
	p("live_p95_ms\t%s\t< %.0f\t%s", num(r.LiveP95Ms, "%.0f"), TargetLiveP95Ms, mark(r.LiveP95Ms, func(v float64) bool { return v < TargetLiveP95Ms }))
	if s := r.Scan; s != nil {
		p("")
		p("scan (lae scan --json)\twall s\t× RT\tCPU s\tpeak MB\tverdict\tscore")
		p("bench clip %.0fs 720p30 (median)\t%.1f\t%.2f\t%.1f\t%.0f\t\t", s.ClipMediaS, s.WallS, s.RealtimeX, s.CPUS, s.PeakRSSMB)
		for _, c := range s.SharedClips {
			v := c.Verdict
			if c.Error != "" {
				v += " (" + oneLine(c.Error, 40) + ")"
			}
			p("%s\t%.1f\t%.2f\t%.1f\t%.0f\t%s\t%.3f", c.Input, c.WallS, c.RealtimeX, c.CPUS, c.PeakRSSMB, v, c.Score)
		}
	}
	if v := r.Verdicts; v != nil {
		p("")
		p("verdicts vs baseline\t%s\tmax |Δ| %.4f\t%s\t(%d clips, limit %.2f)", v.Status, v.MaxDelta, v.Worst, len(v.Clips), MaxScoreDelta)
		for _, c := range v.Clips {
			switch {
			case c.Missing == "not in baseline":
			case c.Missing != "":
				p("  %s\t%.4f -> -\t\t%s", c.Clip, c.Baseline, c.Missing)
			case math.Abs(c.Delta) > MaxScoreDelta:
				p("  %s\t%.4f -> %.4f\tΔ %+.4f\t", c.Clip, c.Baseline, c.Score, c.Delta)
			}
		}
	}
	if in := r.Ingest; in != nil {
		p("")
		p("ingest (%s, %.0f fps sampling)\tframes/s\t", in.FaceModel, in.SampleFPS)
		p("pipeline.Run (median)\t%.1f\t", in.FPS)
		p("ffmpeg -f null (median)\t%.1f\t", in.FFmpegFPS)
		p("ratio\t%.3f\t", in.Ratio)
		specs := make([]string, 0, len(in.FaceDetectMs))
		for k := range in.FaceDetectMs {
			specs = append(specs, k)
		}
		slices.Sort(specs)
		for _, k := range specs {
			p("face detect %s\t%.2f ms/frame\t", k, in.FaceDetectMs[k])
		}
	}
	if d := r.Detector; d != nil {
		p("")
		p("detector (%s, batch %d, %d crops)\tcrops/s\t", d.Model, d.BatchSize, d.Crops)
		p("NATS worker (median)\t%.1f\t", d.Worker)
		p("Model.Predict direct (median)\t%.1f\t", d.Direct)
		p("ratio\t%.3f\t", d.Ratio)
	}
	if l := r.Live; l != nil {
		p("")
		p("live (%.0fs on %s)\tp50 ms\tp95 ms\tn", l.StreamS, l.URL)
		p("frame -> score\t%.0f\t%.0f\t%d", l.ScoreP50Ms, l.ScoreP95Ms, l.Scores)
		p("frame -> rolling verdict\t%.0f\t%.0f\t%d", l.VerdictP50Ms, l.VerdictP95Ms, l.Verdicts)
	}
	if g := r.GoBench; g != nil {
		p("")
		p("go benchmark\tns/op\tB/op\tallocs/op")
		for _, b := range g.Results {
			p("%s.%s\t%.0f\t%.0f\t%.0f", strings.TrimPrefix(b.Package, "./"), b.Name, b.NsPerOp, b.BytesPerOp, b.AllocsPerOp)
		}
		for pkg, e := range g.Failed {
			p("%s\tFAILED: %s", pkg, oneLine(e, 160))
		}
	}
	if len(r.Errors) > 0 {
		p("")
		for _, s := range AllSections {
			if e, ok := r.Errors[s]; ok {
				p("error %s\t%s", s, oneLine(e, 120))
			}
		}
	}
	return tw.Flush()
}

func num(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

func mark(v *float64, ok func(float64) bool) string {
	switch {
	case v == nil:
		return ""
	case ok(*v):
		return "ok"
	}
	return "MISS"
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
