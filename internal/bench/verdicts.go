package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Baseline is testdata/bench/verdicts-baseline.json: every shared clip's score before the
// speed work, keyed by its path relative to the data directory.
type Baseline struct {
	Model  string             `json:"model"`
	Scores map[string]float64 `json:"scores"`
}

// LoadBaseline reads a baseline file; ok is false when it does not exist.
func LoadBaseline(path string) (b Baseline, ok bool, err error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, false, nil
	}
	if err != nil {
		return b, false, fmt.Errorf("read verdict baseline: %w", err)
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, false, fmt.Errorf("parse verdict baseline %s: %w", path, err)
	}
	return b, true, nil
}

// ScoreDelta is one clip's score now against the baseline.
type ScoreDelta struct {
	Clip     string  `json:"clip"`
	Baseline float64 `json:"baseline"`
	Score    float64 `json:"score"`
	Delta    float64 `json:"delta"`
	// Missing says the clip was in only one of the two (baseline or this run), or failed.
	Missing string `json:"missing,omitempty"`
}

// VerdictsReport is the accuracy guard: the largest score change and whether it fails.
type VerdictsReport struct {
	Status   string       `json:"status"` // "ok", "FAIL" or "no baseline"
	Model    string       `json:"baseline_model,omitempty"`
	MaxDelta float64      `json:"max_abs_delta"`
	Worst    string       `json:"worst_clip,omitempty"`
	Fail     bool         `json:"fail"`
	Clips    []ScoreDelta `json:"clips"`
}

// CompareScores compares scores (clip -> score of this run) with the baseline. A clip whose
// |delta| exceeds maxDelta fails the report, and so does a baseline clip that this run did
// not score (a clip that now errors has changed its verdict as surely as a moved score).
// Clips not in the baseline are listed but cannot fail.
func CompareScores(b Baseline, scores map[string]float64, maxDelta float64) *VerdictsReport {
	rep := &VerdictsReport{Status: "ok", Model: b.Model}
	keys := make([]string, 0, len(b.Scores)+len(scores))
	for k := range b.Scores {
		keys = append(keys, k)
	}
	for k := range scores {
		if _, ok := b.Scores[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		base, inBase := b.Scores[k]
		now, inRun := scores[k]
		d := ScoreDelta{Clip: k, Baseline: base, Score: now}
		switch {
		case !inBase:
			d.Missing = "not in baseline"
		case !inRun:
			d.Missing = "not scored in this run"
			rep.Fail = true
		default:
			d.Delta = now - base
			if a := math.Abs(d.Delta); a > rep.MaxDelta {
				rep.MaxDelta, rep.Worst = a, k
			}
			// The limit is inclusive; the epsilon keeps 0.52-0.5 (0.0200000000000000178)
			// from failing a clip that moved by exactly the allowed amount.
			if math.Abs(d.Delta) > maxDelta+1e-9 {
				rep.Fail = true
			}
		}
		rep.Clips = append(rep.Clips, d)
	}
	if rep.Fail {
		rep.Status = "FAIL"
	}
	return rep
}

// Verdicts scores every clip of dataDir/deepfakes-dev (one `lae scan` each) and, with the
// scores of dataDir/videos already measured by the scan section (shared, keyed by relative
// path; nil: scanned here too), compares all of them with the baseline at baselinePath.
func Verdicts(ctx context.Context, lae, dataDir, baselinePath string, shared []ScanRun, logf func(string, ...any)) (*VerdictsReport, error) {
	b, ok, err := LoadBaseline(baselinePath)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &VerdictsReport{Status: "no baseline"}, nil
	}
	scores := map[string]float64{}
	for _, r := range shared {
		if r.Error == "" {
			scores[r.Input] = r.Score
		}
	}
	files, err := MediaFiles(dataDir, "deepfakes-dev")
	if err != nil {
		return nil, fmt.Errorf("list deepfakes-dev: %w", err)
	}
	if shared == nil { // the scan section did not run: score the shared videos here
		videos, err := MediaFiles(dataDir, "videos")
		if err != nil {
			return nil, fmt.Errorf("list shared videos: %w", err)
		}
		files = append(videos, files...)
	}
	for _, rel := range files {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r, err := ScanOne(ctx, lae, filepath.Join(dataDir, rel), 0)
		if err != nil || r.Error != "" {
			logf("verdicts %s: %v %s", rel, err, r.Error)
			continue
		}
		logf("verdicts %s: %s %.3f", rel, r.Verdict, r.Score)
		scores[rel] = r.Score
	}
	return CompareScores(b, scores, MaxScoreDelta), nil
}
