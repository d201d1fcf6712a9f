package core

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/ingest/pipeline"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// progressEvery is the least time between two progress messages of one video: the pipeline
// reports every sampled frame, a progress bar needs a few updates a second.
const progressEvery = 250 * time.Millisecond

// progressPublisher sends ingest's progress on laev1.ProgressSubject, so that an API process
// that does not ingest (`lae serve --api-only`, a client) can follow a scan without receiving
// its crops. Publishing is core NATS: a message lost to a slow subscriber or a reconnect costs
// one step of a progress bar, and the end-of-stream carries the final counts.
type progressPublisher struct {
	nc  *nats.Conn
	log *zap.Logger
	now func() time.Time

	mu   sync.Mutex
	last map[string]time.Time // per video in progress: when its last message went out
}

func newProgressPublisher(nc *nats.Conn, log *zap.Logger) *progressPublisher {
	return &progressPublisher{nc: nc, log: log, now: time.Now, last: map[string]time.Time{}}
}

// progress publishes p unless the video's last message is more recent than progressEvery.
func (pp *progressPublisher) progress(videoID string, p pipeline.Progress) {
	now := pp.now()
	pp.mu.Lock()
	if t, ok := pp.last[videoID]; ok && now.Sub(t) < progressEvery {
		pp.mu.Unlock()
		return
	}
	pp.last[videoID] = now
	pp.mu.Unlock()
	b, err := json.Marshal(laev1.IngestProgress{VideoID: videoID, FramesSampled: p.FramesSampled,
		CropsPublished: p.CropsPublished, MediaSeconds: max(p.PTS, 0), DurationSeconds: p.Duration.Seconds()})
	if err != nil {
		return // numbers and a string always encode
	}
	if err := pp.nc.Publish(laev1.ProgressSubject(videoID), b); err != nil {
		pp.log.Debug("publish progress", zap.String("video_id", videoID), zap.Error(err))
	}
}

// done forgets a video whose ingest ended.
func (pp *progressPublisher) done(videoID string) {
	pp.mu.Lock()
	delete(pp.last, videoID)
	pp.mu.Unlock()
}
