package core

import (
	"sync"
	"time"

	"github.com/lae-screening/lae/aggregator/service"
	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/detector/worker"
	"github.com/lae-screening/lae/ingest/pipeline"
	ingestworker "github.com/lae-screening/lae/ingest/worker"
	"github.com/lae-screening/lae/internal/metrics"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// The stages report through hooks; this is the one place they meet the metrics. A nil
// *Metrics gives nil hooks, which the stages skip.
//
// Time to verdict: a final verdict ends the clock that Metrics.Accepted started for its video
// in this process. The HTTP API starts it when it accepts a submission; a process that both
// ingests and aggregates also starts it at the video's first sampled frame (Accepted keeps
// the earlier time), so the histogram is fed without the API too. Rescoring revisions are not
// submissions and do not count. A process that only ingests starts no clock: no verdict of
// its own would ever stop it.

// ingestHooks reports ingest's outcomes, its live lag and (with clock) the start of its
// videos' time to verdict, then hands the progress on to progress.
func ingestHooks(mt *metrics.Metrics, clock bool, progress func(videoID string, p pipeline.Progress)) ingestworker.Hooks {
	h := ingestworker.Hooks{Error: mt.StageErrors("ingest"), Progress: progress}
	if mt == nil {
		return h
	}
	live := newLiveLag(mt, time.Now)
	h.Progress = func(videoID string, p pipeline.Progress) {
		if clock {
			mt.Accepted(videoID, time.Now())
		}
		live.progress(videoID, p)
		if progress != nil {
			progress(videoID, p)
		}
	}
	h.Done = func(videoID string, eos *laev1.EndOfStream, err error) {
		mt.IngestDone(err == nil, eos.GetFramesDecoded(), eos.GetFramesSampled(), eos.GetFaces(), eos.GetCropsPublished())
		live.ended(videoID)
	}
	return h
}

// stageTime feeds the pipeline's per-frame stage times to the decode and face-detection
// histograms (nil without metrics, so the pipeline does not time at all).
func stageTime(mt *metrics.Metrics) func(stage string, d time.Duration) {
	if mt == nil {
		return nil
	}
	return func(stage string, d time.Duration) {
		switch stage {
		case pipeline.StageDecode:
			mt.ObserveDecode(d)
		case pipeline.StageFaceDetect:
			mt.ObserveFaceDetect(d)
		}
	}
}

// liveLag turns the progress of live sources (no duration) into lae_live_lag_seconds: the
// wall-clock time since the first sampled frame minus the media time read since it. A
// stream read in real time stays near 0; one that ingest cannot keep up with grows. Files
// (known duration) are read faster than real time and have no lag. Its map holds the videos
// in hand: each is removed when its ingest ends (Hooks.Done is called for every video).
type liveLag struct {
	mt  *metrics.Metrics
	now func() time.Time

	mu    sync.Mutex
	start map[string]liveStart
}

// liveStart is a live video's first sampled frame: when it was read and its media time.
type liveStart struct {
	wall time.Time
	pts  float64
}

func newLiveLag(mt *metrics.Metrics, now func() time.Time) *liveLag {
	return &liveLag{mt: mt, now: now, start: map[string]liveStart{}}
}

func (l *liveLag) progress(videoID string, p pipeline.Progress) {
	if p.Duration > 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	s, ok := l.start[videoID]
	if !ok {
		s = liveStart{wall: now, pts: p.PTS}
		l.start[videoID] = s
	}
	l.mu.Unlock()
	media := time.Duration((p.PTS - s.pts) * float64(time.Second))
	// Media time ahead of the wall clock is a burst the source had buffered: no lag.
	l.mt.SetLiveLag(videoID, max(now.Sub(s.wall)-media, 0))
}

func (l *liveLag) ended(videoID string) {
	l.mu.Lock()
	delete(l.start, videoID)
	l.mu.Unlock()
	l.mt.LiveEnded(videoID)
}

func detectorHooks(mt *metrics.Metrics) worker.Hooks {
	if mt == nil {
		return worker.Hooks{}
	}
	return worker.Hooks{
		Batch:     mt.Batch,
		Malformed: func(string) { mt.Error("detector", "malformed_crop") },
		Failed:    func(stage string, n int, _ error) { mt.ErrorN("detector", stage, n) },
	}
}

func aggregatorHooks(mt *metrics.Metrics) service.Hooks {
	h := service.Hooks{Error: mt.StageErrors("aggregator")}
	if mt != nil {
		h.Verdict = func(v *laev1.Verdict) {
			mt.Verdict(v.Verdict)
			if v.Final && v.Revision == 0 {
				mt.VerdictFinal(v.VideoID, time.Now())
			}
		}
	}
	return h
}

// buildModel is lae_build_info's model label: the card's name@version, "none" for a process
// that runs no detector model (ingest alone).
func buildModel(c model.CardInfo) string {
	switch {
	case c.Name == "":
		return "none"
	case c.Version == "":
		return c.Name
	}
	return c.Name + "@" + c.Version
}
