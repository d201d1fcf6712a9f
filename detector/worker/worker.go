// Package worker is the detector service loop: it pulls face crops from the shared JetStream
// consumer, batches them, scores them with the LAE model and publishes one FrameScore per crop.
//
// Delivery guarantees, in order of the steps for one crop:
//   - a crop is acknowledged only after its score's publish was acknowledged by JetStream, so a
//     crash anywhere before that redelivers the crop (after the consumer's AckWait);
//   - scores carry laev1.ScoreMsgID, so a crop scored twice (crash between publish and ack)
//     is stored once;
//   - a crop that cannot be scored (bad protobuf, wrong pixel count, unknown format, empty or
//     undecodable image) gets a FrameScore with Error set, when its identity can be recovered,
//     so the aggregator's count still closes; then it is terminated with the reason, never
//     retried;
//   - when inference fails the batch's crops are negatively acknowledged with a delay and come
//     back (MaxDeliver bounds the retries).
//
// The model is reached through the Scorer interface, so that this policy can be tested with a
// fake model and without ONNX Runtime.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/internal/jsretry"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Defaults for Options' zero values.
const (
	DefaultBatchSize    = 16
	DefaultBatchTimeout = 20 * time.Millisecond
	DefaultWorkers      = 2
	DefaultNakDelay     = 2 * time.Second
	// DefaultPublishTimeout outlasts a clustered stream's leader election, during which a
	// batch's scores are sent again rather than handed back (see settle).
	DefaultPublishTimeout = 20 * time.Second
)

// republishBackoff is the pause before a score publish refused for want of a stream leader
// is sent again.
const republishBackoff = 250 * time.Millisecond

// Scorer is what the worker needs of a model; *model.Model is the production one. It is an
// interface so that tests can check the delivery policy (what is published, acked, redelivered
// when scoring fails) with a fake whose results and failures they choose.
type Scorer interface {
	// Metadata is read once, when Run starts: Name and Version label every score, and
	// HeatmapW and HeatmapH give the size of each Prediction's Heatmap.
	Metadata() model.Metadata
	// Predict scores a batch: one Prediction per crop, in order, or an error for the whole
	// batch, whose crops are then redelivered (a result of the wrong length counts as an
	// error). It is called from Options.Workers goroutines at once.
	Predict(crops []model.Crop) ([]model.Prediction, error)
}

var _ Scorer = (*model.Model)(nil)

// Hooks receive events for metrics. Every field is optional; they are called from the worker
// goroutines, so they must be safe for concurrent use.
type Hooks struct {
	// Batch is called after each inference with the number of crops and the time Predict took.
	Batch func(size int, took time.Duration)
	// Scored is called with the number of crops whose score was stored and which were acked.
	Scored func(n int)
	// Malformed is called once per crop that was terminated because it cannot be scored.
	Malformed func(reason string)
	// Failed is called when a stage ("inference", "publish", "ack") failed for n crops; those
	// crops are redelivered.
	Failed func(stage string, n int, err error)
}

// Options configures Run. Zero values take the defaults.
type Options struct {
	// BatchSize is the most crops per inference (default 16).
	BatchSize int
	// BatchTimeout is how long a batch waits to fill after its first crop (default 20ms).
	BatchTimeout time.Duration
	// Workers is how many batches are in flight at once (default 2): while one batch runs the
	// model, the next one is decoded and the previous one's scores are published.
	Workers int
	// Logger receives structured logs (default: none).
	Logger *zap.Logger
	// Hooks receive metrics events.
	Hooks Hooks
	// Consumer, when set, is consumed instead of the shared detector consumer (rescoring uses
	// an ephemeral consumer over one video's archived crops).
	Consumer jetstream.Consumer
	// Revision is written into every score; rescoring with a new model uses a new revision so
	// its scores are not de-duplicated against the old ones (default 0).
	Revision uint32
	// NakDelay is how long a crop whose inference or publish failed waits before redelivery.
	NakDelay time.Duration
	// PublishTimeout bounds the wait for JetStream to acknowledge a batch's scores, resends
	// included.
	PublishTimeout time.Duration
	// answerWait, when set (tests only), replaces jsretry.AnswerWait.
	answerWait time.Duration
	// AbandonPullOnStop cancels the idle pull request when ctx ends instead of letting it run
	// out (up to idleWait). Only for a server that stops with the worker (the embedded one):
	// on a shared server crops delivered to the abandoned request would wait out AckWait.
	AbandonPullOnStop bool

	// idleWait, when set (tests only), replaces the package's idleWait.
	idleWait time.Duration
	// beforeAck, when set (tests only), runs after a batch's scores are stored and before its
	// crops are acked; an error makes the worker stop at once without acking, like a crash.
	beforeAck func() error
}

func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = DefaultBatchTimeout
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.NakDelay <= 0 {
		o.NakDelay = DefaultNakDelay
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	return o
}

// errCrash is what a beforeAck hook returns to simulate a crash.
var errCrash = errors.New("simulated crash")

// Consumer returns the shared detector consumer, creating it with
// laev1.DetectorConsumerConfig when it does not exist. An existing consumer is used as it is:
// deployment provisioning owns its settings (AckWait, MaxAckPending), not each worker.
func Consumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, laev1.StreamFaces, laev1.ConsumerDetector)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("look up consumer %s on %s: %w", laev1.ConsumerDetector, laev1.StreamFaces, err)
	}
	c, err = js.CreateConsumer(ctx, laev1.StreamFaces, laev1.DetectorConsumerConfig())
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", laev1.ConsumerDetector, laev1.StreamFaces, err)
	}
	return c, nil
}

// Run scores crops until ctx is cancelled, then stops pulling, finishes the crops it already
// holds, acknowledges them and returns nil. It returns an error when the consumer cannot be
// set up or the subscription ends for another reason (connection closed, consumer deleted).
func Run(ctx context.Context, js jetstream.JetStream, s Scorer, o Options) error {
	// A nil *model.Model in the interface is not nil, and would panic at Metadata.
	if mm, ok := s.(*model.Model); s == nil || ok && mm == nil {
		return errors.New("detector worker: no model")
	}
	o = o.withDefaults()
	cons := o.Consumer
	if cons == nil {
		var err error
		if cons, err = Consumer(ctx, js); err != nil {
			return fmt.Errorf("detector worker: %w", err)
		}
	}
	md := s.Metadata()
	w := &worker{js: js, s: s, o: o, log: o.Logger, modelName: md.Name, modelVersion: md.Version,
		heatW: uint32(md.HeatmapW), heatH: uint32(md.HeatmapH)}
	w.log.Info("detector worker started", zap.String("model", md.Name), zap.String("version", md.Version),
		zap.Int("batch_size", o.BatchSize), zap.Duration("batch_timeout", o.BatchTimeout), zap.Int("workers", o.Workers))

	batches := make(chan []jetstream.Msg)
	crashed := make(chan struct{})
	var crashOnce sync.Once
	pullCtx, stopPull := context.WithCancel(ctx)
	defer stopPull()
	var wg sync.WaitGroup
	for i := 0; i < o.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if err := w.process(ctx, b); errors.Is(err, errCrash) {
					crashOnce.Do(func() { close(crashed); stopPull() })
					return
				}
			}
		}()
	}
	pullErr := w.pull(pullCtx, cons, batches, crashed)
	wg.Wait()
	select {
	case <-crashed:
		return errCrash
	default:
	}
	if pullErr != nil {
		return fmt.Errorf("detector worker: %w", pullErr)
	}
	w.log.Info("detector worker stopped")
	return nil
}

type worker struct {
	js                      jetstream.JetStream
	s                       Scorer
	o                       Options
	log                     *zap.Logger
	modelName, modelVersion string
	heatW, heatH            uint32
}

// idleWait is how long one pull request waits for work when there is none. It bounds how
// long shutdown waits for the outstanding request (which is never abandoned, see pull).
const idleWait = time.Second

// pull groups crops into batches: one request waits (up to idleWait) for a first crop, a second
// asks for the rest of the batch and waits at most BatchTimeout.
//
// Each pull request asks for a bounded number of crops and is read to its end. An open-ended
// subscription (Consumer.Messages) would leave a pull request on the server when the worker
// stops, and crops delivered to it after the stop would sit unacknowledged until AckWait
// (30s) expired; with bounded requests a stopped worker holds nothing.
func (w *worker) pull(ctx context.Context, cons jetstream.Consumer, batches chan<- []jetstream.Msg, crashed <-chan struct{}) error {
	defer close(batches)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-crashed:
			return nil
		default:
		}
		wait := idleWait
		if w.o.idleWait > 0 {
			wait = w.o.idleWait
		}
		batch, err := fetch(ctx, w.o.AbandonPullOnStop, cons, 1, wait, nil)
		if err == nil && len(batch) > 0 && w.o.BatchSize > 1 {
			batch, err = fetch(ctx, false, cons, w.o.BatchSize-1, w.o.BatchTimeout, batch)
		}
		if len(batch) > 0 {
			// Crops in hand are always handed over, even when stopping: they are ours to ack.
			select {
			case batches <- batch:
			case <-crashed:
				return nil
			}
		}
		if err != nil {
			if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("pull crops: %w", err)
			}
			// Transient (leader change, reconnect): log and try again shortly.
			w.log.Warn("pull crops", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// fetch sends one pull request for up to n crops, waiting at most wait, reads it to its end
// and appends what came to into. With abandon, ctx ending cancels the request (see
// Options.AbandonPullOnStop).
func fetch(ctx context.Context, abandon bool, cons jetstream.Consumer, n int, wait time.Duration, into []jetstream.Msg) ([]jetstream.Msg, error) {
	opt := jetstream.FetchMaxWait(wait)
	if abandon {
		fctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		opt = jetstream.FetchContext(fctx)
	}
	b, err := cons.Fetch(n, opt)
	if err != nil {
		if abandon && ctx.Err() != nil {
			return into, nil
		}
		return into, err
	}
	for msg := range b.Messages() {
		into = append(into, msg)
	}
	if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, context.Canceled) {
		return into, err
	}
	return into, nil
}

// process decodes, scores, publishes and acknowledges one batch. Only a simulated crash
// (tests) makes it return an error: every other failure is handled per crop.
func (w *worker) process(ctx context.Context, msgs []jetstream.Msg) error {
	jobs := make([]job, len(msgs))
	var good []int
	for i, msg := range msgs {
		jobs[i] = decodeCrop(msg.Subject(), msg.Headers(), msg.Data())
		jobs[i].msg = msg
		if jobs[i].reason == "" {
			good = append(good, i)
		}
	}

	var preds []model.Prediction
	if len(good) > 0 {
		crops := make([]model.Crop, len(good))
		for k, i := range good {
			crops[k] = jobs[i].img
		}
		start := time.Now()
		var err error
		preds, err = w.s.Predict(crops)
		took := time.Since(start)
		if err == nil && len(preds) != len(crops) {
			// Indexing a short result would panic; a long one would pair scores with the
			// wrong crops. Either way the batch is not trustworthy.
			err = fmt.Errorf("scorer returned %d predictions for %d crops", len(preds), len(crops))
		}
		if err != nil {
			w.log.Error("inference failed; crops will be redelivered", zap.Int("crops", len(good)), zap.Error(err))
			w.hookFailed("inference", len(good), err)
			for _, i := range good {
				w.nak(jobs[i].msg)
			}
			preds, good = nil, nil
		} else if h := w.o.Hooks.Batch; h != nil {
			h(len(good), took)
		}
	}

	// Build every score to publish: the predictions, and error scores for malformed crops.
	var pend []pending
	scored := make(map[int]model.Prediction, len(good))
	for k, i := range good {
		scored[i] = preds[k]
	}
	for i := range jobs {
		j := &jobs[i]
		if _, ok := scored[i]; j.reason == "" && !ok {
			continue // inference failed: already nak'd
		}
		if j.reason != "" && j.key == nil {
			// Nothing to tell the aggregator: the crop's identity is lost.
			w.terminate(j)
			continue
		}
		var p *model.Prediction
		if j.reason == "" {
			pr := scored[i]
			p = &pr
		}
		data, err := proto.Marshal(w.score(j, p))
		if err != nil {
			// Cannot happen with generated messages; handled rather than assumed.
			w.log.Error("marshal score", zap.Error(err))
			w.nak(j.msg)
			continue
		}
		msg := &nats.Msg{Subject: laev1.ScoresSubject(j.key.videoID), Data: data}
		id := laev1.ScoreMsgID(j.key.videoID, j.key.frameIndex, j.key.faceIndex, w.o.Revision)
		f, err := w.js.PublishMsgAsync(msg, jetstream.WithMsgID(id))
		if err != nil {
			w.log.Warn("publish score", zap.Error(err))
			w.hookFailed("publish", 1, err)
			w.nak(j.msg)
			continue
		}
		pend = append(pend, pending{job: j, future: f, id: id})
	}

	// Wait for JetStream to store every score, then acknowledge the crops whose score is safe.
	// The wait is not tied to ctx: on shutdown the current batch is finished, not abandoned.
	waitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.o.PublishTimeout)
	defer cancel()
	stored := make([]bool, len(pend))
	for k := range pend {
		err := w.settle(waitCtx, &pend[k])
		if stored[k] = err == nil; !stored[k] {
			w.log.Warn("score not stored; crop will be redelivered", zap.Error(err))
			w.hookFailed("publish", 1, err)
			w.nak(pend[k].job.msg)
		}
	}
	if w.o.beforeAck != nil {
		if err := w.o.beforeAck(); err != nil {
			return err
		}
	}
	n := 0
	for k, p := range pend {
		if !stored[k] {
			continue
		}
		if p.job.reason != "" {
			w.terminate(p.job)
			continue
		}
		if err := p.job.msg.Ack(); err != nil {
			w.log.Warn("ack crop", zap.Error(err))
			w.hookFailed("ack", 1, err)
			continue
		}
		n++
	}
	if h := w.o.Hooks.Scored; h != nil && n > 0 {
		h(n)
	}
	return nil
}

// pending is a score published and not yet acknowledged.
type pending struct {
	job    *job
	future jetstream.PubAckFuture
	id     string // the score's message id
}

// settle waits until JetStream stores p's score or ctx ends. A score the stream leaves
// unanswered for answerWait (lost: see jsretry), or refuses for want of a leader, is sent again
// with its message id, so it is stored once: a clustered stream electing a leader costs the
// batch the election, not the crop's AckWait (a nak sent then is lost too).
func (w *worker) settle(ctx context.Context, p *pending) error {
	silence := cmp.Or(w.o.answerWait, jsretry.AnswerWait)
	for {
		timer := time.NewTimer(silence)
		select {
		case <-p.future.Ok():
			timer.Stop()
			return nil
		case err := <-p.future.Err():
			timer.Stop()
			if !jsretry.Unanswered(err) {
				return err
			}
			select {
			case <-time.After(republishBackoff):
			case <-ctx.Done():
				return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
			}
		case <-timer.C:
			w.log.Debug("score unanswered; publishing again", zap.String("msg", p.id))
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
		f, err := w.js.PublishMsgAsync(p.future.Msg(), jetstream.WithMsgID(p.id))
		if err != nil {
			return err
		}
		p.future = f
	}
}

// score builds the FrameScore of a crop: the prediction when p is set, else the error.
func (w *worker) score(j *job, p *model.Prediction) *laev1.FrameScore {
	s := &laev1.FrameScore{
		VideoId: j.key.videoID, FrameIndex: j.key.frameIndex, FaceIndex: j.key.faceIndex,
		Model: w.modelName, ModelVersion: w.modelVersion, Revision: w.o.Revision,
	}
	if md, err := j.msg.Metadata(); err == nil {
		s.CropSeq = md.Sequence.Stream
	}
	if c := j.crop; c != nil {
		s.SampleIndex, s.PtsSeconds, s.TrackId = c.SampleIndex, c.PtsSeconds, c.TrackId
		s.Box, s.CropToFrame = c.Box, c.CropToFrame
		s.CropWidth, s.CropHeight = c.Width, c.Height
		s.FrameWidth, s.FrameHeight = c.FrameWidth, c.FrameHeight
	}
	if p == nil {
		s.Error = j.reason
		return s
	}
	// Compressed crops may leave width/height unset; the decoded image is the truth.
	s.CropWidth, s.CropHeight = uint32(j.img.Width), uint32(j.img.Height)
	s.Score = p.Score
	s.HeatmapWidth, s.HeatmapHeight, s.Heatmap = w.heatW, w.heatH, p.Heatmap
	return s
}

func (w *worker) terminate(j *job) {
	w.log.Warn("crop terminated", zap.String("subject", j.msg.Subject()), zap.String("reason", j.reason))
	if err := j.msg.TermWithReason(j.reason); err != nil {
		w.log.Warn("terminate crop", zap.Error(err))
	}
	if h := w.o.Hooks.Malformed; h != nil {
		h(j.reason)
	}
}

func (w *worker) nak(msg jetstream.Msg) {
	if err := msg.NakWithDelay(w.o.NakDelay); err != nil {
		w.log.Warn("nak crop", zap.Error(err))
	}
}

func (w *worker) hookFailed(stage string, n int, err error) {
	if h := w.o.Hooks.Failed; h != nil {
		h(stage, n, err)
	}
}
