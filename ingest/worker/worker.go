// Package worker is the distributed ingest role's loop: it takes accepted submissions from the
// LAE_INGEST work queue (one video goes to exactly one ingest process, through the shared
// durable consumer) and runs the ingest pipeline on each, a few at a time.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/ingest/pipeline"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Hooks let the caller observe the worker (metrics, progress displays) without the worker
// knowing what observes it. Every field is optional (nil = not called). They are called from
// the goroutines of the videos in hand, several at once: they must be safe for concurrent use
// and must not block, since a video waits for its hooks.
type Hooks struct {
	// Done is called once per video after its pipeline ended, successfully or not: err is the
	// pipeline's error, and eos the end-of-stream event with the video's counts, nil when the
	// pipeline could not produce one. It is called before the submission is acknowledged or
	// handed back, so a video whose end-of-stream was not published is reported each time it
	// is tried.
	Done func(videoID string, eos *laev1.EndOfStream, err error)
	// Error is called once per counted error, by kind: "malformed_submission" (a work item
	// that is not a valid submission, terminated), "eos_not_published" (the video's
	// end-of-stream or crops could not be stored, so it is handed back to run again) and
	// "fetch" (a failed fetch of the work queue, retried with backoff).
	Error func(kind string)
	// Progress is called with the video's id after every sampled frame, from the video's
	// pipeline (pipeline.Options.Progress); the id lets one observer follow many videos.
	Progress func(videoID string, p pipeline.Progress)
}

// Options configures Run.
type Options struct {
	// Concurrency is how many videos are ingested at once (default 2).
	Concurrency int
	// DefaultSampleFPS applies when a submission does not say (the product default is 5).
	DefaultSampleFPS float64
	// Pipeline is the template of every video's pipeline options (SampleFPS and MaxDuration
	// are taken from the submission when it sets them). Its Progress, when set, is called for
	// every video, as well as Hooks.Progress.
	Pipeline pipeline.Options
	// ShutdownTimeout bounds how long videos in hand may run after ctx ends; then they are
	// cut short and end with a failure event (live streams never end by themselves).
	ShutdownTimeout time.Duration
	// Abort, when closed, cuts the videos in hand at once (an interrupted `lae scan`): they
	// end with a failure event as after ShutdownTimeout.
	Abort <-chan struct{}
	// Logger receives structured logs; nil = no logs.
	Logger *zap.Logger
	// Hooks observe videos and errors (metrics).
	Hooks Hooks
}

// Run consumes submissions until ctx ends, then waits for the videos in hand.
func Run(ctx context.Context, js jetstream.JetStream, o Options) error {
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, laev1.StreamIngest, laev1.IngestConsumerConfig())
	if err != nil {
		return fmt.Errorf("ingest consumer: %w", err)
	}
	// Videos keep running for ShutdownTimeout after ctx ends, so they get their own context.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopTimer := context.AfterFunc(ctx, func() {
		t := time.NewTimer(o.ShutdownTimeout)
		go func() {
			select {
			case <-t.C:
				cancelWork()
			case <-o.Abort:
				cancelWork()
			case <-workCtx.Done():
				t.Stop()
			}
		}()
	})
	defer stopTimer()

	backoff := minBackoff
	slots := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case slots <- struct{}{}:
		}
		msg, err := next(ctx, cons)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			if fatal(err) {
				return err
			}
			// Transient (an outage, a full reconnect buffer, a leader change): the process
			// stays useful only if it keeps trying, so back off and fetch again.
			o.Logger.Warn("fetch submission; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			o.hookError("fetch")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		if msg == nil {
			<-slots
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			handle(workCtx, js, msg, o)
		}()
	}
}

// Backoff between failed fetches: short enough that a brief outage costs little, capped so a
// long one costs a request every few seconds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// fatal says a fetch error will not go away by retrying: the connection was closed by this
// process, or the work queue or its consumer is gone (the process restarts and provisions).
func fatal(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// next fetches one submission, or nil when none arrived within the poll interval.
func next(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	// A submission is delivered as soon as it arrives whatever the wait; a short wait only
	// bounds how long a stop waits for the pending fetch.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, nil
		}
		return nil, fmt.Errorf("fetch submission: %w", err)
	}
	for m := range batch.Messages() {
		return m, nil
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
		return nil, fmt.Errorf("fetch submission: %w", err)
	}
	return nil, nil
}

// handle runs one submission and settles its work item: acknowledged once the video's
// end-of-stream is published, handed back when it is not, terminated when it is malformed.
func handle(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, o Options) {
	var req laev1.SubmitRequest
	if err := json.Unmarshal(msg.Data(), &req); err != nil || laev1.ValidateVideoID(req.VideoID) != nil || req.URL == "" {
		o.Logger.Warn("malformed submission terminated", zap.ByteString("data", msg.Data()))
		o.hookError("malformed_submission")
		_ = msg.TermWithReason("malformed submission")
		return
	}
	log := o.Logger.With(zap.String("video_id", req.VideoID), zap.String("url", req.URL))
	// Keep the submission ours while the video runs: AckWait is short so that a crashed ingest's
	// videos go to another process quickly.
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go func() {
		t := time.NewTicker(laev1.IngestConsumerConfig().AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()

	po := o.Pipeline
	po.SampleFPS = o.DefaultSampleFPS
	if req.SampleFPS != nil {
		po.SampleFPS = *req.SampleFPS
	}
	if req.MaxDurationSeconds > 0 {
		po.MaxDuration = time.Duration(req.MaxDurationSeconds * float64(time.Second))
	}
	po.Logger = o.Logger // the pipeline adds the video's keys itself
	po.Progress = progress(req.VideoID, o.Pipeline.Progress, o.Hooks.Progress)
	start := time.Now()
	eos, err := pipeline.Run(ctx, js, req.VideoID, req.URL, po)
	stopHB()
	if err != nil {
		log.Warn("ingest failed", zap.Error(err))
	}
	if o.Hooks.Done != nil {
		o.Hooks.Done(req.VideoID, eos, err)
	}
	if eos != nil {
		log.Info("ingest done", zap.Uint64("frames_sampled", eos.FramesSampled), zap.Uint64("crops", eos.CropsPublished),
			zap.Duration("took", time.Since(start)))
	}
	if errors.Is(err, pipeline.ErrEOSNotPublished) {
		// Without its end-of-stream the video would never get a verdict: hand it back.
		o.hookError("eos_not_published")
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	// The end-of-stream event is published (success or failure), so the submission is done.
	if err := msg.DoubleAck(context.WithoutCancel(ctx)); err != nil {
		log.Warn("ack submission", zap.Error(err))
	}
}

func (o Options) hookError(kind string) {
	if o.Hooks.Error != nil {
		o.Hooks.Error(kind)
	}
}

// progress is one video's pipeline Progress: the template's and the hook's, tagged with the
// video id. It is nil when neither is set, so that the pipeline skips the call per frame.
func progress(videoID string, template func(pipeline.Progress), hook func(string, pipeline.Progress)) func(pipeline.Progress) {
	switch {
	case hook == nil:
		return template
	case template == nil:
		return func(p pipeline.Progress) { hook(videoID, p) }
	default:
		return func(p pipeline.Progress) {
			template(p)
			hook(videoID, p)
		}
	}
}
