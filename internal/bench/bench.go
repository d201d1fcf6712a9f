// Package bench measures lae against its physical floor (issue 11): `lae scan` end to end,
// ingest against `ffmpeg -f null`, the NATS detector worker against the same model called
// directly, live latency on a stream served on loopback, and the hot paths' Go benchmarks.
// Each measurement is a function returning a section of the Report; cmd/laebench wires them
// to flags and prints the table. Every headline figure is a median of repeats, and the
// machine's load is recorded with it because the shared 2-core box is rarely idle.
package bench

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Section names, in the order Run measures them.
const (
	SectionScan     = "scan"
	SectionVerdicts = "verdicts"
	SectionIngest   = "ingest"
	SectionDetector = "detector"
	SectionLive     = "live"
	SectionGoBench  = "gobench"
)

// AllSections is every section, in run order.
var AllSections = []string{SectionScan, SectionVerdicts, SectionIngest, SectionDetector, SectionLive, SectionGoBench}

// MaxScoreDelta is how far a clip's score may move from the baseline before the bench fails:
// the speed work must not change what lae concludes (issue 11, "No accuracy change").
const MaxScoreDelta = 0.02

// Report is the JSON the bench writes. The top-level figures are the ones the issue's
// targets name; nil means the section was not run or could not measure them.
type Report struct {
	DetectorRatio *float64 `json:"detector_ratio"`
	IngestRatio   *float64 `json:"ingest_ratio"`
	ScanRealtimeX *float64 `json:"scan_realtime_x"`
	ScanPeakRSSMB *float64 `json:"scan_peak_rss_mb"`
	LiveP95Ms     *float64 `json:"live_p95_ms"`

	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Repeats  int       `json:"repeats"`
	Machine  Machine   `json:"machine"`

	Scan     *ScanReport     `json:"scan,omitempty"`
	Verdicts *VerdictsReport `json:"verdicts,omitempty"`
	Ingest   *IngestReport   `json:"ingest,omitempty"`
	Detector *DetectorReport `json:"detector,omitempty"`
	Live     *LiveReport     `json:"live,omitempty"`
	GoBench  *GoBenchReport  `json:"gobench,omitempty"`
	// Errors are the sections that could not be measured, by name.
	Errors map[string]string `json:"errors,omitempty"`
}

// Failed reports whether the report holds a result that must fail the run: a verdict score
// that moved past MaxScoreDelta. A section that could not run is reported, not failed, so
// that one missing tool does not hide the other figures.
func (r *Report) Failed() bool { return r.Verdicts != nil && r.Verdicts.Fail }

// Median is the median of xs (the mean of the middle two for an even count), 0 when empty.
// Medians, not means: one run slowed by a neighbour's build must not move the figure.
func Median(xs []float64) float64 {
	return Percentile(xs, 50)
}

// Percentile is the p-th percentile (0..100) of xs, linearly interpolated between the
// closest ranks; 0 when xs is empty. xs is not modified.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := p / 100 * float64(len(s)-1)
	lo := int(rank)
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	frac := rank - float64(lo)
	return s[lo] + frac*(s[lo+1]-s[lo])
}

func ptr(f float64) *float64 { return &f }

// mediaExts are the file types the bench scans in a data directory (what lae scan takes).
var mediaExts = []string{".mp4", ".mkv", ".mpg", ".webm", ".mov"}

// MediaFiles lists the media files under dir, recursively, sorted, as paths relative to
// base (the data directory) so that they match the baseline's keys.
func MediaFiles(base, dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(filepath.Join(base, dir), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !slices.Contains(mediaExts, filepath.Ext(p)) {
			return nil
		}
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	slices.SortFunc(out, cmp.Compare)
	return out, err
}

// DefaultDataDir is ../shared/data beside the repository that holds the working directory
// (the lookup internal/testenv.SharedDataDir makes for tests, from the working directory
// instead of the source file, since a built binary has no source path), "" when absent.
func DefaultDataDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "data")
			if _, err := os.Stat(d); err == nil {
				return filepath.Clean(d)
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
