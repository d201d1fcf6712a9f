package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/core"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// LiveReport is the live section: how long after a frame arrives its score, and a rolling
// verdict covering it, are published.
type LiveReport struct {
	URL           string  `json:"url"`
	StreamS       float64 `json:"stream_s"`
	Scores        int     `json:"scores"`
	Verdicts      int     `json:"verdicts"`
	ScoreP50Ms    float64 `json:"frame_to_score_p50_ms"`
	ScoreP95Ms    float64 `json:"frame_to_score_p95_ms"`
	VerdictP50Ms  float64 `json:"frame_to_verdict_p50_ms"`
	VerdictP95Ms  float64 `json:"frame_to_verdict_p95_ms"`
	FinalVerdict  string  `json:"final_verdict,omitempty"`
	T0Observation string  `json:"t0"`
}

// t0Doc says how frame arrival is placed in time; kept with the figures in the report.
const t0Doc = "frame arrival = T0 + pts, T0 = min over ingest progress events of (wall time of the event - its pts): " +
	"a frame cannot be ingested before it arrives, so T0 is the latest start consistent with every event, " +
	"and the latencies are lower bounds by at most the quickest frame's ingest time"

// Live serves clip as a live MPEG-TS stream on loopback (ffmpeg -re, copied, for seconds of
// media) and scans it with the in-process stack lae scan uses (core.Start, source policy
// off), recording when each score and rolling verdict of the video is published on core NATS.
//
// The bench serves the stream itself: it listens on 127.0.0.1, and the connection ingest
// opens gets ffmpeg's paced output piped in, so the listener exists before the submission
// (ffmpeg's own listen=1 would race with it).
func Live(ctx context.Context, clip string, seconds float64, logf func(string, ...any)) (*LiveReport, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the live stream: %w", err)
	}
	defer func() { _ = ln.Close() }()
	url := "tcp://" + ln.Addr().String()
	rep := &LiveReport{URL: url, T0Observation: t0Doc}

	cfg := config.ForCommand("scan")
	if err := cfg.Validate(config.AllRoles); err != nil {
		return nil, fmt.Errorf("live bench config: %w", err)
	}
	st, err := core.Start(ctx, core.Options{Config: cfg, Roles: config.AllRoles, Name: "bench-live", Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		st.Close(cctx)
	}()

	var mu sync.Mutex
	type arrival struct {
		at  time.Time
		pts float64
	}
	var scores, verdicts []arrival
	t0 := time.Time{}
	subScores, err := st.NC.Subscribe(laev1.SubjectScoresPrefix+">", func(m *nats.Msg) {
		at := time.Now()
		var s laev1.FrameScore
		if proto.Unmarshal(m.Data, &s) != nil || s.Error != "" {
			return
		}
		mu.Lock()
		scores = append(scores, arrival{at, s.PtsSeconds})
		mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to scores: %w", err)
	}
	defer func() { _ = subScores.Unsubscribe() }()
	final := make(chan laev1.Verdict, 1)
	subVerdicts, err := st.NC.Subscribe(laev1.SubjectVerdictsPrefix+">", func(m *nats.Msg) {
		at := time.Now()
		var v laev1.Verdict
		if json.Unmarshal(m.Data, &v) != nil {
			return
		}
		if v.Final {
			select {
			case final <- v:
			default:
			}
			return
		}
		covered := -1.0
		for _, p := range v.Timeline {
			covered = math.Max(covered, p.PTSSeconds)
		}
		if covered < 0 {
			return
		}
		mu.Lock()
		verdicts = append(verdicts, arrival{at, covered})
		mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to verdicts: %w", err)
	}
	defer func() { _ = subVerdicts.Unsubscribe() }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- serveStream(ctx, ln, clip, seconds) }()
	id, err := st.Submit(ctx, laev1.SubmitRequest{URL: url, Reference: "bench-live"})
	if err != nil {
		return nil, fmt.Errorf("submit live stream: %w", err)
	}
	stop := st.FollowProgress(id, func(p pipeline.Progress) {
		cand := time.Now().Add(-time.Duration(p.PTS * float64(time.Second)))
		mu.Lock()
		if t0.IsZero() || cand.Before(t0) {
			t0 = cand
		}
		mu.Unlock()
	})
	defer stop()
	t1 := time.Now()
	if err := <-serveErr; err != nil {
		return nil, err
	}
	rep.StreamS = time.Since(t1).Seconds()
	// The stream has ended; the final verdict follows once ingest sees the end (or gives up
	// reconnecting). Its latency is not measured, only waited for, boundedly.
	select {
	case v := <-final:
		rep.FinalVerdict = v.Verdict
	case <-time.After(30 * time.Second):
		logf("live: no final verdict within 30s of the stream's end")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	if t0.IsZero() {
		return rep, fmt.Errorf("live stream: ingest reported no progress")
	}
	lat := func(as []arrival) []float64 {
		out := make([]float64, 0, len(as))
		for _, a := range as {
			out = append(out, float64(a.at.Sub(t0.Add(time.Duration(a.pts*float64(time.Second)))).Microseconds())/1000)
		}
		return out
	}
	sl, vl := lat(scores), lat(verdicts)
	rep.Scores, rep.Verdicts = len(sl), len(vl)
	rep.ScoreP50Ms, rep.ScoreP95Ms = Percentile(sl, 50), Percentile(sl, 95)
	rep.VerdictP50Ms, rep.VerdictP95Ms = Percentile(vl, 50), Percentile(vl, 95)
	if len(sl) == 0 {
		return rep, fmt.Errorf("live stream: no score published")
	}
	return rep, nil
}

// serveStream accepts ingest's connection and pipes ffmpeg's real-time paced MPEG-TS of
// clip (stream copy, the first seconds) into it, then closes it: the end of the stream.
func serveStream(ctx context.Context, ln net.Listener, clip string, seconds float64) error {
	if tl, ok := ln.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Now().Add(time.Minute))
	}
	conn, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("live stream: ingest did not connect: %w", err)
	}
	defer func() { _ = conn.Close() }()
	cmd := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-re", "-i", clip, "-t", strconv.FormatFloat(seconds, 'f', -1, 64),
		"-c", "copy", "-f", "mpegts", "pipe:1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("live stream: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("live stream: start ffmpeg: %w", err)
	}
	_, cerr := io.Copy(conn, out)
	werr := cmd.Wait()
	if werr != nil {
		return fmt.Errorf("live stream: ffmpeg: %w", werr)
	}
	if cerr != nil {
		return fmt.Errorf("live stream: send to ingest: %w", cerr)
	}
	return nil
}
