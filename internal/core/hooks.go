package core

import (
	"github.com/lae-screening/lae/aggregator/service"
	"github.com/lae-screening/lae/detector/worker"
	"github.com/lae-screening/lae/ingest/pipeline"
	ingestworker "github.com/lae-screening/lae/ingest/worker"
	"github.com/lae-screening/lae/internal/metrics"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// The stages report through hooks; this is the one place they meet the metrics. A nil
// *Metrics gives nil hooks, which the stages skip.

func ingestHooks(mt *metrics.Metrics, progress func(videoID string, p pipeline.Progress)) ingestworker.Hooks {
	h := ingestworker.Hooks{Error: mt.StageErrors("ingest"), Progress: progress}
	if mt != nil {
		h.Done = func(_ string, eos *laev1.EndOfStream, err error) {
			mt.IngestDone(err == nil, eos.GetFramesDecoded(), eos.GetFramesSampled(), eos.GetFaces(), eos.GetCropsPublished())
		}
	}
	return h
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
		h.Verdict = func(v *laev1.Verdict) { mt.Verdict(v.Verdict) }
	}
	return h
}
