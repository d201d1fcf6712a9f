package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/lae-screening/lae/ingest/submit"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/core"
	"github.com/lae-screening/lae/internal/rescore"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// rescoreLine is one line of `lae rescore --json`.
type rescoreLine struct {
	VideoID     string  `json:"video_id"`
	Crops       uint64  `json:"crops"`
	OldRevision int     `json:"old_revision"`
	OldVerdict  string  `json:"old_verdict,omitempty"`
	OldScore    float64 `json:"old_score"`
	Revision    int     `json:"revision"`
	Verdict     string  `json:"verdict,omitempty"`
	Score       float64 `json:"score"`
	Model       string  `json:"model,omitempty"`
	Version     string  `json:"model_version,omitempty"`
	Changed     bool    `json:"changed"`
	Error       string  `json:"error,omitempty"`
}

// rescoreCmd replays archived crops through the current model and reports changed verdicts.
func rescoreCmd(ctx context.Context, args []string) error {
	var (
		all, jsonOut           bool
		since, until, reingest string
	)
	cmd := config.Command{Name: "rescore", Synopsis: "rescore [flags] (VIDEO_ID... | --all | --since T [--until T] | --reingest MANIFEST)",
		Doc: `Scores the archived face crops of the chosen videos with the current model (no decoding)
and publishes a new verdict revision for each; earlier revisions stay in the verdict history.
An aggregator must be running on the same NATS.`,
		Bind: func(fs *flag.FlagSet, c *config.Config) {
			config.ClientFlags(fs, c)
			config.DetectorFlags(fs, c)
			fs.BoolVar(&all, "all", false, "rescore every video whose crops are still archived")
			fs.StringVar(&since, "since", "", "only videos whose latest verdict is at or after this time (RFC 3339)")
			fs.StringVar(&until, "until", "", "only videos whose latest verdict is before this time (RFC 3339)")
			fs.BoolVar(&jsonOut, "json", false, "one JSON line per video")
			fs.StringVar(&reingest, "reingest", "", "JSONL manifest of videos whose crops expired ({\"video_id\", \"url\"} or verdict lines with \"input\"): submit their URLs again for a full scan")
		}}
	cfg, ids, err := config.Parse(cmd, args)
	if err != nil {
		return err
	}
	if reingest != "" {
		if len(ids) > 0 || all || since != "" || until != "" {
			return config.Usagef("--reingest takes no video ids, --all, --since or --until")
		}
		return reingestManifest(ctx, cfg, reingest, jsonOut)
	}
	sel := rescore.Selection{VideoIDs: ids}
	if sel.Since, err = parseTime(since); err != nil {
		return config.UsageError{Err: err}
	}
	if sel.Until, err = parseTime(until); err != nil {
		return config.UsageError{Err: err}
	}
	ranged := !sel.Since.IsZero() || !sel.Until.IsZero()
	if (len(sel.VideoIDs) > 0) == (all || ranged) {
		return config.Usagef("give video ids, or --all, or --since/--until")
	}
	if err := cfg.ValidateDetector(); err != nil {
		return err
	}
	nc, js, err := connectJS(cfg, "lae-rescore")
	if err != nil {
		return err
	}
	defer nc.Close()
	failed, changed := 0, 0
	results, err := core.Rescore(ctx, js, cfg.Detector, rescore.Options{
		Selection: sel,
		Progress: func(done, total int, r rescore.Result) {
			line := toLine(r)
			if jsonOut {
				b, _ := json.Marshal(line)
				fmt.Println(string(b))
				return
			}
			switch {
			case r.Err != nil:
				fmt.Printf("[%d/%d] %s: ERROR: %s\n", done, total, r.VideoID, oneLine(r.Err.Error()))
			default:
				mark := "unchanged"
				if r.Changed {
					mark = "CHANGED"
				}
				fmt.Printf("[%d/%d] %s: %s r%d %s %.3f -> r%d %s %.3f (%d crops, model %s %s)\n", done, total, r.VideoID, mark,
					line.OldRevision, line.OldVerdict, line.OldScore, line.Revision, line.Verdict, line.Score, line.Crops, line.Model, line.Version)
			}
		},
	})
	for _, r := range results {
		if r.Err != nil {
			failed++
		} else if r.Changed {
			changed++
		}
	}
	if !jsonOut {
		fmt.Printf("rescored %d video(s): %d changed, %d unchanged, %d failed\n", len(results), changed, len(results)-changed-failed, failed)
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

func toLine(r rescore.Result) rescoreLine {
	l := rescoreLine{VideoID: r.VideoID, Crops: r.Crops, Changed: r.Changed}
	if r.Old != nil {
		l.OldRevision, l.OldVerdict, l.OldScore = r.Old.Revision, r.Old.Verdict, r.Old.Score
	}
	if r.New != nil {
		l.Revision, l.Verdict, l.Score, l.Model, l.Version = r.New.Revision, r.New.Verdict, r.New.Score, r.New.Model, r.New.ModelVersion
	}
	if r.Err != nil {
		l.Error = r.Err.Error()
	}
	return l
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339, e.g. 2026-11-26T10:00:00Z", s)
	}
	return t, nil
}

// manifestLine is one video of a re-ingest manifest: the fields of a verdict line work too.
type manifestLine struct {
	VideoID string `json:"video_id"`
	URL     string `json:"url"`
	Input   string `json:"input"`
}

// reingestManifest submits the URLs of a manifest again. The new scan gets a new video id;
// the old id travels as the submission's reference, so the reply and logs tie the two.
func reingestManifest(ctx context.Context, cfg config.Config, path string, jsonOut bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reingest manifest: %w", err)
	}
	var lines []manifestLine
	for i, raw := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(raw) == "" {
			continue
		}
		var l manifestLine
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			return fmt.Errorf("reingest manifest %s:%d: %w", path, i+1, err)
		}
		if l.URL == "" {
			l.URL = l.Input
		}
		if l.URL == "" {
			return fmt.Errorf("reingest manifest %s:%d: no url", path, i+1)
		}
		lines = append(lines, l)
	}
	nc, err := connect(cfg, "lae-rescore")
	if err != nil {
		return err
	}
	defer nc.Close()
	failed := 0
	for _, l := range lines {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		reply, err := submit.Request(rctx, nc, laev1.SubmitRequest{URL: l.URL, Reference: l.VideoID})
		cancel()
		if err != nil {
			reply.Error = err.Error()
		}
		if reply.Error != "" {
			failed++
		}
		if jsonOut {
			out, _ := json.Marshal(struct {
				OldVideoID string `json:"old_video_id"`
				URL        string `json:"url"`
				VideoID    string `json:"video_id,omitempty"`
				Error      string `json:"error,omitempty"`
			}{l.VideoID, l.URL, reply.VideoID, reply.Error})
			fmt.Println(string(out))
		} else if reply.Error != "" {
			fmt.Printf("%s (%s): REJECTED: %s\n", l.VideoID, l.URL, oneLine(reply.Error))
		} else {
			fmt.Printf("%s -> %s\t%s\n", l.VideoID, reply.VideoID, l.URL)
		}
	}
	if !jsonOut {
		fmt.Printf("re-ingested %d of %d video(s); follow them with lae watch\n", len(lines)-failed, len(lines))
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}
