// Package worker is the distributed ingest role's loop: it takes accepted submissions from the
// LAE_INGEST work queue (one video goes to exactly one ingest process, through the shared
// durable consumer) and runs the ingest pipeline on each, a few at a time.
//
// # Poison submissions
//
// A submission whose ingest kills the process (a decoder crash, the OOM killer) is redelivered
// after AckWait, up to the consumer's MaxDeliver. Past that JetStream drops it silently: no
// end-of-stream, so no verdict ever, and the caller waits forever. So the last delivery is not
// run: it means every earlier attempt ended without settling the work item, and running it once
// more would most likely kill one more process. The worker publishes a failure end-of-stream
// instead, which the aggregator turns into a final "error" verdict with the reason, and
// acknowledges the work item. (The delivery count lives in the server, so this holds across
// restarts of every ingest process and needs no permission beyond the ingest role's own.)
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
	"google.golang.org/protobuf/proto"

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
	// is tried. A submission given up on is reported too, with its failure end-of-stream and
	// ErrGaveUp.
	Done func(videoID string, eos *laev1.EndOfStream, err error)
	// Error is called once per counted error, by kind: "malformed_submission" (a work item
	// that is not a valid submission, terminated), "eos_not_published" (the video's
	// end-of-stream or crops could not be stored, so it is handed back to run again),
	// "fetch" (a failed fetch of the work queue, retried with backoff), "upload_fetch" (an
	// upload that could not be read from the uploads bucket, handed back) and "gave_up" (a
	// submission whose earlier deliveries all ended without a result, failed on its last one:
	// see Poison submissions in the package doc).
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
	// AbandonPullOnStop cancels the waiting pull request when ctx ends instead of letting it
	// run out (up to pollWait). Only for a server that stops with the worker (the embedded
	// one): on a shared server a submission delivered to the abandoned request would wait out
	// its AckWait before another worker got it.
	AbandonPullOnStop bool

	// pollWait, when set (tests only), replaces the package's pollWait.
	pollWait time.Duration
}

// ErrGaveUp is the error Hooks.Done gets for a submission failed without being run, because its
// earlier deliveries all ended without a result (see Poison submissions in the package doc).
var ErrGaveUp = errors.New("ingest gave up")

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
	// The server's MaxDeliver, not the contract's: an operator may have changed it.
	maxDeliver := laev1.IngestConsumerConfig().MaxDeliver
	if info := cons.CachedInfo(); info != nil {
		maxDeliver = info.Config.MaxDeliver
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
		msg, err := next(ctx, cons, o.pollWait, o.AbandonPullOnStop)
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
			handle(workCtx, js, msg, maxDeliver, o)
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

// pollWait is how long one pull request waits for a submission. A submission is delivered as
// soon as it arrives whatever the wait; a short wait only bounds how long a stop waits for the
// pending request.
const pollWait = 500 * time.Millisecond

// next fetches one submission, or nil when none arrived within wait (0 = pollWait). With
// abandon, ctx ending cancels the request.
func next(ctx context.Context, cons jetstream.Consumer, wait time.Duration, abandon bool) (jetstream.Msg, error) {
	if wait <= 0 {
		wait = pollWait
	}
	opt := jetstream.FetchMaxWait(wait)
	if abandon {
		fctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		opt = jetstream.FetchContext(fctx)
	}
	batch, err := cons.Fetch(1, opt)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, nil
		}
		return nil, fmt.Errorf("fetch submission: %w", err)
	}
	for m := range batch.Messages() {
		return m, nil
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
		return nil, fmt.Errorf("fetch submission: %w", err)
	}
	return nil, nil
}

// handle runs one submission and settles its work item: acknowledged once the video's
// end-of-stream is published, handed back when it is not, terminated when it is malformed. On
// the work item's last delivery (maxDeliver) the video is not run but failed (giveUp).
func handle(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, maxDeliver int, o Options) {
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
	if md, err := msg.Metadata(); err == nil && maxDeliver > 1 && md.NumDelivered >= uint64(maxDeliver) {
		giveUp(ctx, js, msg, req, md.NumDelivered, log, o)
		return
	}

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
	po.SourceName = req.URL
	start := time.Now()
	path, release, err := localCopy(ctx, js, req.URL)
	if errors.Is(err, errUploadGone) {
		fail(ctx, js, msg, req, err.Error(), err, log, o)
		return
	}
	if err != nil {
		// NATS trouble: another delivery may find the bucket reachable.
		log.Warn("fetch upload; handed back", zap.Error(err))
		o.hookError("upload_fetch")
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	defer release()
	eos, err := pipeline.Run(ctx, js, req.VideoID, path, po)
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

// giveUp fails a submission on its last delivery (see Poison submissions in the package doc).
func giveUp(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, req laev1.SubmitRequest, delivered uint64, log *zap.Logger, o Options) {
	failure := fmt.Sprintf("%s: delivered %d times and the %d earlier attempts ended without a result "+
		"(the ingest process stopped, crashed or lost NATS while ingesting this video)",
		ErrGaveUp, delivered, delivered-1)
	log.Error("giving up on a submission", zap.Uint64("deliveries", delivered), zap.String("failure", failure))
	o.hookError("gave_up")
	fail(ctx, js, msg, req, failure, ErrGaveUp, log, o)
}

// fail ends a submission that will not be run with a failure end-of-stream (the aggregator's
// final "error" verdict, with the reason) and acknowledges its work item. The item will never
// be delivered again, so the end-of-stream is retried until it is stored or the worker stops;
// Hooks.Done gets it with cause.
func fail(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, req laev1.SubmitRequest, failure string, cause error, log *zap.Logger, o Options) {
	eos := &laev1.EndOfStream{VideoId: req.VideoID, SourceUrl: req.URL, Failure: failure}
	data, err := proto.Marshal(eos)
	if err != nil {
		// A message of strings always marshals; nothing to retry if it does not.
		log.Error("encode failure end-of-stream", zap.Error(err))
		return
	}
	backoff := minBackoff
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ack, err := js.Publish(pctx, laev1.EOSSubject(req.VideoID), data, jetstream.WithMsgID(laev1.EOSMsgID(req.VideoID, 0)))
		cancel()
		if err == nil {
			if ack.Duplicate {
				// An earlier attempt stored its end-of-stream and died before acknowledging the
				// work item: its verdict stands.
				log.Info("an earlier attempt's end-of-stream is stored; failure end-of-stream dropped")
			}
			break
		}
		log.Warn("publish failure end-of-stream; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			log.Error("stopped before the failure end-of-stream was stored: the submission is lost", zap.Error(err))
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	if o.Hooks.Done != nil {
		o.Hooks.Done(req.VideoID, eos, cause)
	}
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
