// Package service is the aggregator stage, the last of the pipeline: it collects the
// detector's scores of each video, decides when a video is complete, turns the scores into a
// verdict (package verdict) with localized evidence (package evidence), and publishes it.
//
// # Completeness
//
// Ingest ends every video with one EndOfStream carrying crops_published. A video (more exactly
// a video and a scoring revision: rescoring runs publish scores and an end-of-stream with a
// higher revision, and each revision gets its own verdict) is complete when its end-of-stream
// has arrived and the number of distinct scored crops, de-duplicated by (frame_index,
// face_index, revision), equals crops_published — every crop scored exactly once, errored
// crops included, since the detector publishes a score with its error set for a crop it cannot
// score. Scores and the end-of-stream may arrive in any order. An end-of-stream with a failure
// completes the video at once with verdict "error".
//
// # Delivery and crashes
//
// Scores are acknowledged as soon as they are folded into the in-memory state, so a large
// video never holds more unacknowledged messages than the consumer's MaxAckPending allows
// (8192 would deadlock a 10k-crop video if scores were held until the verdict). Only the scores'
// compact fields are kept in memory; heatmaps are fetched back from the LAE_SCORES stream by
// sequence number for the few crops that become evidence.
//
// The state is in the process: run one aggregator per durable consumer. (A second instance
// would split the scores of a video between them; verdicts stay correct through the replay
// below, but each pays a replay and the other keeps a partial state until IdleTimeout; its
// rolling verdicts cannot overwrite the final one, see Finality.)
//
// The end-of-stream is the one message held unacknowledged, kept alive with in-progress acks,
// until the verdict is in the KV bucket and published. After a crash the state is gone but the
// end-of-stream is redelivered; the aggregator then rebuilds the video's scores by replaying
// lae.scores.<video_id> from the stream (a limits stream that keeps scores for days), so no
// verdict is lost and none is computed from a partial state. The same replay runs when a video
// whose end-of-stream has arrived makes no progress for a couple of ticks while the stream
// holds all of its scores (an earlier instance acknowledged them before it died), and, as a
// last resort, when it makes no progress for StallTimeout. When even after the replay a video stays incomplete for
// GiveUpAfter, the verdict is published from the scores present, with Error saying
// how many crops were missing, rather than leaving the caller waiting forever.
//
// A graceful shutdown (ctx cancelled) finishes the verdict being stored, then hands the
// end-of-stream events it holds back to the server with a nak, so another instance takes those
// videos over at once (replaying their scores) instead of after AckWait.
//
// Messages that cannot be decoded, or whose video id disagrees with their subject, are
// terminated with a reason (never redelivered) and counted in Stats.Malformed.
//
// # Finality
//
// A final verdict is only ever replaced by a final verdict of the same or a newer revision:
// `lae watch` starts from a video's latest verdict and waits until one is final, so a rolling
// verdict written over a final one would leave it, and every reader of the KV bucket, waiting
// on a video that will never finish. Three rules keep it so:
//
//   - A score that comes after its video revision got its final verdict is late: it is counted
//     (Stats.Late, Hooks.Error "late_score"), acknowledged and dropped. Finished videos are
//     remembered for Options.DoneTTL; after that, or after a restart, a score for a video with
//     no state in memory is checked against the KV bucket before a state is made for it (a
//     detector that was down longer than DoneTTL sends exactly such scores).
//   - A rolling verdict is never put over a final one: it is written with a compare-and-set
//     on the KV entry it saw, and not at all when that entry is final (a rescoring run, whose
//     new revision is pending while the old one is final, gets no rolling verdicts).
//   - A final verdict of an older revision (an old end-of-stream redelivered after a rescoring)
//     does not replace the final verdict of a newer one.
//
// # Output
//
// The verdict JSON (laev1.Verdict, schemas/v1/verdict.schema.json) is put into the KV bucket
// laev1.BucketVerdicts under the video id and published on laev1.VerdictSubject(video id) with
// message id "verdict/<video id>/<revision>". Evidence images go to the object store
// laev1.BucketEvidence under laev1.EvidenceObjectName.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/aggregator/verdict"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Hooks let the caller observe the aggregator (metrics) without the aggregator knowing what
// observes it. Every field is optional (nil = not called). They run on the aggregator's one
// goroutine, between messages: they must not block.
type Hooks struct {
	// Verdict is called once for every final verdict stored and published, forced and error
	// verdicts included, at the moment it counts in Stats.Verdicts; rolling verdicts are not
	// reported, since each is replaced by the next and counting them would count a video many
	// times. v is the aggregator's: read it, do not keep or modify it.
	Verdict func(v *laev1.Verdict)
	// Error is called once per counted error, by kind: "malformed" (a message terminated),
	// "store" (a verdict that could not be stored, retried on the next tick), "evidence"
	// (an evidence image that could not be rendered) and "late_score" (a score that came after
	// its video's final verdict, dropped: a detector that fell far behind, or work lost).
	Error func(kind string)
}

// Options configures Run. Threshold is required (from the model card); the rest has defaults.
type Options struct {
	// Rule is the verdict rule (verdict.Rules()); "" = verdict.DefaultRule.
	Rule string
	// TopK is k for the "topk_mean" rule; 0 = max(3, 10% of usable crops).
	TopK int
	// Threshold is the model's calibrated decision threshold in (0,1].
	Threshold float64
	// EvidenceFrames is how many top frames get evidence; 0 = 3, negative = none.
	EvidenceFrames int
	// Model names the model when the scores do not.
	Model string
	// Logger receives structured logs; nil = no logs.
	Logger *zap.Logger
	// OnVerdict, when set, is called with every final verdict after it is stored and
	// published (not with rolling ones). It runs on the aggregator's goroutine: it must not
	// block.
	OnVerdict func(laev1.Verdict)
	// Stats, when set, is updated with counters (for tests and status pages).
	Stats *Stats
	// Hooks observe verdicts and errors (metrics).
	Hooks Hooks

	// StallTimeout is how long a video whose end-of-stream has arrived may go without a new
	// score before its scores are replayed from the stream. 0 = 60s.
	StallTimeout time.Duration
	// GiveUpAfter is how long a video may stay incomplete after that replay before its
	// verdict is published from the scores present, with Error set. It is long because a
	// detector with a backlog of other videos is not a failure. 0 = 10m.
	GiveUpAfter time.Duration
	// IdleTimeout drops the state of a video that has seen no message for this long and has no
	// end-of-stream (an ingest that died); its end-of-stream, if it ever comes, replays the
	// scores. 0 = 1h.
	IdleTimeout time.Duration
	// Tick is how often held end-of-stream messages are kept alive and timeouts checked; it
	// must be well under the consumer's AckWait (30s). 0 = 5s.
	Tick time.Duration
	// DoneTTL is how long a finished video revision is remembered in memory, so that its late
	// or redelivered messages are dropped without a KV read. After it, a late score is still
	// recognized, by the final verdict in the KV bucket (see Finality in the package doc), so
	// this trades memory for reads only. 0 = 10m (the streams' de-duplication window).
	DoneTTL time.Duration
	// RollingEvery, when positive, publishes a rolling verdict (Final false) at most this
	// often for every video whose end-of-stream has not arrived yet and that got new scores
	// since its last update: live streams never end, and a long file shows where it is
	// heading. Rolling verdicts go to the same KV key and subject (message id
	// "verdict/<id>/<revision>/partial-<crops>") and carry no evidence; the final verdict
	// replaces them. 0 = off. The resolution is Tick.
	RollingEvery time.Duration
}

// Stats counts what the aggregator did. Fields are updated atomically; read them with Load.
type Stats struct {
	// Scores and EOS count the messages folded in; Duplicates and Late those dropped (a crop
	// already scored; a message of a video revision that already has its final verdict, found
	// in memory or in the KV bucket); Malformed those terminated.
	Scores, EOS, Duplicates, Late, Malformed atomic.Int64
	// Verdicts counts final verdicts stored; EvidenceImages the evidence images stored and
	// EvidenceErrors those that could not be located, rendered or stored (the verdict goes
	// out without them).
	Verdicts, EvidenceImages, EvidenceErrors atomic.Int64
	// Replays counts the replays of a video's scores from the stream; Forced the verdicts given
	// before every crop was scored; StoreErrors the verdict stores that failed (and were
	// retried); Rolling the rolling verdicts published.
	Replays, Forced, StoreErrors, Rolling atomic.Int64
}

// defaultDoneTTL is Options.DoneTTL's default. It matches the streams' de-duplication window:
// within it a redelivered message is most likely, and costs no KV read.
const defaultDoneTTL = 10 * time.Minute

// finishTimeout bounds the I/O of one verdict (evidence, KV, publish), including during a
// graceful shutdown, when the caller's context is already cancelled.
const finishTimeout = 30 * time.Second

// Run consumes scores and end-of-stream events through the durable consumer
// laev1.AggregatorConsumerConfig() until ctx is cancelled, then stops fetching, finishes the
// message in hand (a verdict being stored is completed), hands the end-of-stream events it
// holds back to the server (nak: redelivered at once to another instance, which replays the
// video's scores) and returns nil. Messages fetched but not yet handled are nak'd as well.
// Streams, the KV bucket and the object store must exist (laev1.Provision).
func Run(ctx context.Context, js jetstream.JetStream, o Options) error {
	a, err := newAggregator(ctx, js, o)
	if err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, laev1.StreamScores, laev1.AggregatorConsumerConfig())
	if err != nil {
		return fmt.Errorf("aggregator: create consumer %s on %s: %w", laev1.ConsumerAggregator, laev1.StreamScores, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("aggregator: start consuming %s: %w", laev1.StreamScores, err)
	}
	type next struct {
		msg jetstream.Msg
		err error
	}
	ch := make(chan next)
	stopped := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			m, err := iter.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			select {
			case ch <- next{m, err}:
				continue
			case <-stopped:
			}
			// Shutting down: hand every message still buffered back to the server, so it is
			// redelivered now rather than after AckWait, until the drained iterator closes.
			for ; ; m, err = iter.Next() {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if m != nil {
					_ = m.Nak()
				}
			}
		}
	}()
	// stop drains the iterator (its unsubscribe reaches the server before anything sent after
	// the reader is done, so a nak'd message cannot land in this instance's dead pull request)
	// and waits for the reader.
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			iter.Drain()
			close(stopped)
			<-readerDone
		})
	}
	defer stop()

	tick := time.NewTicker(a.o.Tick)
	defer tick.Stop()
	a.log.Info("aggregator started", zap.String("rule", a.vo.Rule), zap.Float64("threshold", a.vo.Threshold))
	for {
		select {
		case <-ctx.Done():
			a.log.Info("aggregator stopping", zap.Int("videos_in_progress", len(a.states)))
			stop()
			a.handOver()
			return nil
		case n := <-ch:
			if n.err != nil {
				if errors.Is(n.err, nats.ErrConnectionClosed) {
					return fmt.Errorf("aggregator: consume %s: %w", laev1.StreamScores, n.err)
				}
				a.log.Warn("consume", zap.Error(n.err))
				continue
			}
			a.handle(ctx, n.msg)
		case now := <-tick.C:
			a.tick(ctx, now)
		}
	}
}

// handOver naks every held end-of-stream so that another instance takes the videos over now
// rather than after AckWait.
func (a *aggregator) handOver() {
	for key, st := range a.states {
		if st.eosMsg == nil {
			continue
		}
		if err := st.eosMsg.Nak(); err != nil {
			a.log.Warn("hand over end-of-stream", zap.Stringer("video", key), zap.Error(err))
		}
	}
}

// videoKey identifies one scoring run of one video.
type videoKey struct {
	id       string
	revision uint32
}

func (k videoKey) String() string { return fmt.Sprintf("%s/r%d", k.id, k.revision) }

// cropKey identifies one crop within a video revision.
type cropKey struct {
	frame uint64
	face  uint32
}

// crop is what is kept per scored crop: the score without its heatmap, and the stream
// sequence to fetch the heatmap back if the crop becomes evidence.
type crop struct {
	score *laev1.FrameScore
	seq   uint64
}

// state is one video revision in progress.
type state struct {
	crops        map[cropKey]crop
	eos          *laev1.EndOfStream
	eosMsg       jetstream.Msg // held until the verdict is stored
	lastProgress time.Time
	replayed     bool
	lastRolling  time.Time // when the last rolling verdict was published
	rolledCrops  int       // crops in the last rolling verdict
	// overFinal is set once a rolling verdict was withheld because the KV bucket holds a final
	// verdict for the video: none will ever be allowed for this state, so the check is not
	// repeated every tick.
	overFinal bool
}

type aggregator struct {
	js     jetstream.JetStream
	o      Options
	vo     verdict.Options
	log    *zap.Logger
	stats  *Stats
	kv     jetstream.KeyValue
	obs    jetstream.ObjectStore
	scores jetstream.Stream
	frames jetstream.Stream
	crops  jetstream.Stream
	states map[videoKey]*state
	done   map[videoKey]time.Time
	now    func() time.Time
}

func newAggregator(ctx context.Context, js jetstream.JetStream, o Options) (*aggregator, error) {
	vo, err := verdict.Options{Rule: o.Rule, TopK: o.TopK, Threshold: o.Threshold, Model: o.Model}.Normalize()
	if err != nil {
		return nil, fmt.Errorf("aggregator: %w", err)
	}
	if o.EvidenceFrames == 0 {
		o.EvidenceFrames = 3
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = time.Minute
	}
	if o.GiveUpAfter <= 0 {
		o.GiveUpAfter = 10 * time.Minute
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Hour
	}
	if o.Tick <= 0 {
		o.Tick = 5 * time.Second
	}
	if o.DoneTTL <= 0 {
		o.DoneTTL = defaultDoneTTL
	}
	a := &aggregator{js: js, o: o, vo: vo, log: o.Logger, stats: o.Stats,
		states: make(map[videoKey]*state), done: make(map[videoKey]time.Time), now: time.Now}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	a.log = a.log.Named("aggregator")
	if a.stats == nil {
		a.stats = &Stats{}
	}
	if a.kv, err = js.KeyValue(ctx, laev1.BucketVerdicts); err != nil {
		return nil, fmt.Errorf("aggregator: open kv %s: %w", laev1.BucketVerdicts, err)
	}
	if a.obs, err = js.ObjectStore(ctx, laev1.BucketEvidence); err != nil {
		return nil, fmt.Errorf("aggregator: open object store %s: %w", laev1.BucketEvidence, err)
	}
	if a.scores, err = js.Stream(ctx, laev1.StreamScores); err != nil {
		return nil, fmt.Errorf("aggregator: open stream %s: %w", laev1.StreamScores, err)
	}
	if a.frames, err = js.Stream(ctx, laev1.StreamFrames); err != nil {
		return nil, fmt.Errorf("aggregator: open stream %s: %w", laev1.StreamFrames, err)
	}
	if a.crops, err = js.Stream(ctx, laev1.StreamFaces); err != nil {
		return nil, fmt.Errorf("aggregator: open stream %s: %w", laev1.StreamFaces, err)
	}
	return a, nil
}

// terminate stops redelivery of a message that can never be handled, and counts it.
func (a *aggregator) terminate(m jetstream.Msg, reason string) {
	a.stats.Malformed.Add(1)
	a.hookError("malformed")
	a.log.Warn("terminating malformed message", zap.String("subject", m.Subject()), zap.String("reason", reason))
	if err := m.TermWithReason(reason); err != nil {
		a.log.Warn("term", zap.String("subject", m.Subject()), zap.Error(err))
	}
}

func (a *aggregator) hookError(kind string) {
	if a.o.Hooks.Error != nil {
		a.o.Hooks.Error(kind)
	}
}

func (a *aggregator) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		a.log.Warn("ack", zap.String("subject", m.Subject()), zap.Error(err))
	}
}

// handle folds one message into the state of its video and finishes the video if complete.
func (a *aggregator) handle(ctx context.Context, m jetstream.Msg) {
	subj := m.Subject()
	switch {
	case strings.HasPrefix(subj, laev1.SubjectScoresPrefix):
		s, err := DecodeScore(subj, m.Data())
		if err != nil {
			a.terminate(m, err.Error())
			return
		}
		a.stats.Scores.Add(1)
		key := videoKey{s.GetVideoId(), s.GetRevision()}
		if _, ok := a.done[key]; ok {
			a.lateScore(m, key, "finished here")
			return
		}
		if _, ok := a.states[key]; !ok && a.finalStored(ctx, key) {
			// Remember it, so the rest of a late batch costs no KV read.
			a.done[key] = a.now()
			a.lateScore(m, key, "final verdict in the bucket")
			return
		}
		var seq uint64
		if md, err := m.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		a.fold(key, s, seq, true)
		a.ack(m)
		a.maybeFinish(ctx, key)
	case strings.HasPrefix(subj, laev1.SubjectEOSPrefix):
		e, err := DecodeEOS(subj, m.Data())
		if err != nil {
			a.terminate(m, err.Error())
			return
		}
		a.stats.EOS.Add(1)
		key := videoKey{e.GetVideoId(), e.GetRevision()}
		if _, ok := a.done[key]; ok {
			a.stats.Late.Add(1)
			a.ack(m)
			return
		}
		st := a.state(key)
		if st.eosMsg != nil && st.eosMsg != m {
			// A redelivery while we hold the first copy: the newer one is the one to ack.
			a.ack(st.eosMsg)
		}
		st.eos, st.eosMsg, st.lastProgress = e, m, a.now()
		if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 && !a.complete(st) {
			// A redelivered end-of-stream means an earlier instance died holding it: the
			// scores it had acknowledged are only in the stream now.
			a.replay(ctx, key)
		}
		a.maybeFinish(ctx, key)
	default:
		a.terminate(m, fmt.Sprintf("unexpected subject %q on %s", subj, laev1.StreamScores))
	}
}

// lateScore drops a score whose video revision already has its final verdict (see Finality in
// the package doc): folding it would start a state whose rolling verdict replaces the final one.
func (a *aggregator) lateScore(m jetstream.Msg, key videoKey, why string) {
	a.stats.Late.Add(1)
	a.hookError("late_score")
	a.log.Info("late score dropped", zap.Stringer("video", key), zap.String("why", why))
	a.ack(m)
}

// storedVerdict is what the finality rules need of the verdict in the KV bucket.
type storedVerdict struct {
	Revision int  `json:"revision"`
	Final    bool `json:"final"`
}

// stored reads the verdict of a video from the KV bucket: nil (and KV revision 0) when there
// is none. An entry that is not a verdict reads as a pending one, which every write may replace.
func (a *aggregator) stored(ctx context.Context, id string) (*storedVerdict, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := a.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get verdict %s from kv %s: %w", id, laev1.BucketVerdicts, err)
	}
	var v storedVerdict
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		a.log.Warn("verdict in the bucket is not JSON", zap.String("video", id), zap.Error(err))
		return &storedVerdict{Revision: -1}, e.Revision(), nil
	}
	return &v, e.Revision(), nil
}

// finalStored reports whether the KV bucket holds a final verdict for key's revision or a newer
// one. When the bucket cannot be read it says no: the score is folded as before, and the
// rolling and store checks still keep the final verdict in place.
func (a *aggregator) finalStored(ctx context.Context, key videoKey) bool {
	v, _, err := a.stored(ctx, key.id)
	if err != nil {
		a.log.Warn("check for a final verdict (folding the score)", zap.Stringer("video", key), zap.Error(err))
		return false
	}
	return v != nil && v.Final && v.Revision >= int(key.revision)
}

func (a *aggregator) state(key videoKey) *state {
	st, ok := a.states[key]
	if !ok {
		st = &state{crops: make(map[cropKey]crop), lastProgress: a.now()}
		a.states[key] = st
	}
	return st
}

// fold adds one score to its video's state, dropping duplicates (counted when countDup: a
// replay re-reads scores the state already has on purpose). It reports whether the score was
// new.
func (a *aggregator) fold(key videoKey, s *laev1.FrameScore, seq uint64, countDup bool) bool {
	st := a.state(key)
	ck := cropKey{s.GetFrameIndex(), s.GetFaceIndex()}
	if _, dup := st.crops[ck]; dup {
		if countDup {
			a.stats.Duplicates.Add(1)
		}
		return false
	}
	// The heatmap is fetched back by sequence if this crop becomes evidence; keeping every
	// heatmap of a long video would cost megabytes per video for nothing.
	if seq != 0 {
		s.Heatmap = nil
	}
	st.crops[ck] = crop{score: s, seq: seq}
	st.lastProgress = a.now()
	return true
}

func (a *aggregator) complete(st *state) bool {
	if st.eos == nil {
		return false
	}
	return st.eos.GetFailure() != "" || uint64(len(st.crops)) >= st.eos.GetCropsPublished()
}

func (a *aggregator) maybeFinish(ctx context.Context, key videoKey) {
	st := a.states[key]
	if st == nil || !a.complete(st) {
		return
	}
	if n := uint64(len(st.crops)); n > st.eos.GetCropsPublished() && st.eos.GetFailure() == "" {
		a.log.Warn("more distinct crops scored than published", zap.Stringer("video", key),
			zap.Uint64("scored", n), zap.Uint64("published", st.eos.GetCropsPublished()))
	}
	a.finish(ctx, key, "")
}

// tick keeps held end-of-stream messages alive and handles stalled and idle videos.
func (a *aggregator) tick(ctx context.Context, now time.Time) {
	for key, t := range a.done {
		if now.Sub(t) > a.o.DoneTTL {
			delete(a.done, key)
			a.log.Debug("finished video forgotten", zap.Stringer("video", key))
		}
	}
	for key, st := range a.states {
		if st.eosMsg != nil {
			if err := st.eosMsg.InProgress(); err != nil {
				a.log.Warn("in-progress ack", zap.Stringer("video", key), zap.Error(err))
			}
		}
		idle := now.Sub(st.lastProgress)
		switch {
		case st.eos == nil && idle > a.o.IdleTimeout:
			a.log.Warn("dropping idle video without end-of-stream", zap.Stringer("video", key), zap.Int("crops", len(st.crops)))
			delete(a.states, key)
		case st.eos == nil && a.o.RollingEvery > 0 && !st.overFinal && len(st.crops) > st.rolledCrops && now.Sub(st.lastRolling) >= a.o.RollingEvery:
			a.rolling(ctx, key, st, now)
		case st.eos != nil && a.complete(st):
			// A previous store failed: retry.
			a.finish(ctx, key, "")
		case st.eos != nil && !st.replayed && idle > 2*a.o.Tick && a.inStream(ctx, key) >= st.eos.GetCropsPublished():
			// Every score is in the stream but not here: an earlier instance acknowledged the
			// rest before it died. No need to wait for StallTimeout.
			a.replay(ctx, key)
			st.lastProgress = now
			a.maybeFinish(ctx, key)
		case st.eos != nil && idle > a.o.StallTimeout && !st.replayed:
			a.replay(ctx, key)
			st.lastProgress = now
			a.maybeFinish(ctx, key)
		case st.eos != nil && idle > a.o.GiveUpAfter:
			a.stats.Forced.Add(1)
			a.finish(ctx, key, fmt.Sprintf("incomplete: %d of %d crops scored", len(st.crops), st.eos.GetCropsPublished()))
		}
	}
}

// inStream is the number of score messages of a video in the stream (duplicates published
// under other message ids included); 0 when it cannot be told.
func (a *aggregator) inStream(ctx context.Context, key videoKey) uint64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	subj := laev1.ScoresSubject(key.id)
	info, err := a.scores.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		a.log.Warn("count scores in stream", zap.Stringer("video", key), zap.Error(err))
		return 0
	}
	return info.State.Subjects[subj]
}

// DecodeScore decodes a FrameScore from a message on subject and checks it belongs there.
func DecodeScore(subject string, data []byte) (*laev1.FrameScore, error) {
	var s laev1.FrameScore
	if err := proto.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode FrameScore on %s: %w", subject, err)
	}
	if err := checkVideo(subject, laev1.SubjectScoresPrefix, s.GetVideoId()); err != nil {
		return nil, fmt.Errorf("decode FrameScore: %w", err)
	}
	return &s, nil
}

// DecodeEOS decodes an EndOfStream from a message on subject and checks it belongs there.
func DecodeEOS(subject string, data []byte) (*laev1.EndOfStream, error) {
	var e laev1.EndOfStream
	if err := proto.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode EndOfStream on %s: %w", subject, err)
	}
	if err := checkVideo(subject, laev1.SubjectEOSPrefix, e.GetVideoId()); err != nil {
		return nil, fmt.Errorf("decode EndOfStream: %w", err)
	}
	return &e, nil
}

// checkVideo refuses a message whose video id is invalid or is not its subject's: folding it
// under either id would corrupt another video's counts.
func checkVideo(subject, prefix, id string) error {
	if err := laev1.ValidateVideoID(id); err != nil {
		return err
	}
	if subject != prefix+id {
		return fmt.Errorf("video id %q does not match subject %q", id, subject)
	}
	return nil
}
