package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/aggregator/evidence"
	"github.com/lae-screening/lae/aggregator/verdict"
	"github.com/lae-screening/lae/internal/jsretry"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// VerdictMsgID is the de-duplication id of a published verdict.
func VerdictMsgID(videoID string, revision int) string {
	return fmt.Sprintf("verdict/%s/%d", videoID, revision)
}

// finish computes, stores and publishes the verdict of one video, then drops its state. On a
// storage error the state is kept (and the end-of-stream held) so the next tick retries.
// incomplete, when non-empty, is the reason a verdict is forced before every crop was scored.
func (a *aggregator) finish(ctx context.Context, key videoKey, incomplete string) {
	st := a.states[key]
	// A shutdown must not cut a verdict in half: its I/O gets its own deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	scores := make([]*laev1.FrameScore, 0, len(st.crops))
	for _, c := range st.crops {
		scores = append(scores, c.score)
	}
	v, err := verdict.Compute(st.eos, scores, a.vo)
	if err != nil {
		// Options were validated at start; this cannot happen short of a bug, and retrying
		// would not help.
		a.log.Error("compute verdict", zap.Stringer("video", key), zap.Error(err))
		v = laev1.Verdict{VideoID: key.id, Input: st.eos.GetSourceUrl(), Verdict: laev1.VerdictError, Error: err.Error(),
			Rule: a.vo.Rule, Threshold: a.vo.Threshold, Revision: int(key.revision), Final: true,
			Tracks: []laev1.Track{}, Evidence: []laev1.Evidence{}}
	}
	if incomplete != "" && v.Error == "" {
		v.Error = incomplete
	}
	v.CreatedAt = a.now().UTC()
	// Evidence for "real" too: the faces that came closest to the threshold are what a
	// reviewer checks first. "unknown" has no usable face and "error" no verdict to support.
	if v.Verdict == laev1.VerdictFake || v.Verdict == laev1.VerdictReal {
		v.Evidence = a.evidence(ctx, key, st, verdict.TopFrames(scores, a.o.EvidenceFrames))
	}
	data, err := json.Marshal(v)
	if err != nil {
		// Only a value JSON cannot hold (NaN) gets here, and retrying would not change it: the
		// caller gets an error verdict instead of waiting forever.
		a.log.Error("marshal verdict", zap.Stringer("video", key), zap.Error(err))
		v = laev1.Verdict{VideoID: key.id, Verdict: laev1.VerdictError, Error: "marshal verdict: " + err.Error(),
			Rule: a.vo.Rule, Threshold: a.vo.Threshold, Revision: int(key.revision), Final: true,
			Tracks: []laev1.Track{}, Evidence: []laev1.Evidence{}, CreatedAt: v.CreatedAt}
		if data, err = json.Marshal(v); err != nil {
			a.log.Error("marshal error verdict", zap.Stringer("video", key), zap.Error(err))
			return
		}
	}
	err = a.store(ctx, v, data)
	if errors.Is(err, errSuperseded) {
		// An old revision's end-of-stream came back after a newer revision's final verdict:
		// that verdict stays, and this revision is finished without being published again.
		a.log.Info("verdict of an older revision not stored: a newer final verdict is in the bucket",
			zap.Stringer("video", key))
		a.stats.Late.Add(1)
		if st.eosMsg != nil {
			if err := st.eosMsg.DoubleAck(ctx); err != nil {
				a.log.Warn("ack end-of-stream", zap.Stringer("video", key), zap.Error(err))
			}
		}
		delete(a.states, key)
		a.done[key] = a.now()
		return
	}
	if err != nil {
		a.stats.StoreErrors.Add(1)
		a.hookError("store")
		a.log.Warn("store verdict (will retry)", zap.Stringer("video", key), zap.Error(err))
		return
	}
	if st.eosMsg != nil {
		if err := st.eosMsg.DoubleAck(ctx); err != nil {
			// The verdict is stored; a redelivered end-of-stream is dropped as late or, after
			// DoneTTL, recomputes the same verdict under the same message id.
			a.log.Warn("ack end-of-stream", zap.Stringer("video", key), zap.Error(err))
		}
	}
	delete(a.states, key)
	a.done[key] = a.now()
	a.stats.Verdicts.Add(1)
	if a.o.Hooks.Verdict != nil {
		a.o.Hooks.Verdict(&v)
	}
	a.log.Info("verdict", zap.String("video", v.VideoID), zap.Int("revision", v.Revision),
		zap.String("verdict", v.Verdict), zap.Float64("score", v.Score), zap.Uint64("crops", v.CropsScored),
		zap.Uint64("faces_too_small", v.FacesTooSmall),
		zap.Int("evidence", len(v.Evidence)), zap.String("error", v.Error))
	if a.o.OnVerdict != nil {
		a.o.OnVerdict(v)
	}
}

// rolling publishes a non-final verdict from the scores so far (see Options.RollingEvery), unless
// the KV bucket holds a final verdict for the video: a final verdict is only ever replaced by a
// final one (see Finality in the package doc).
func (a *aggregator) rolling(ctx context.Context, key videoKey, st *state, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, finishTimeout)
	defer cancel()
	cur, kvRev, err := a.stored(ctx, key.id)
	if err != nil {
		a.log.Warn("rolling verdict (will retry)", zap.Stringer("video", key), zap.Error(err))
		return
	}
	if cur != nil && cur.Final {
		st.overFinal = true
		a.log.Info("rolling verdict withheld: a final verdict is in the bucket", zap.Stringer("video", key),
			zap.Int("final_revision", cur.Revision))
		return
	}
	scores := make([]*laev1.FrameScore, 0, len(st.crops))
	for _, c := range st.crops {
		scores = append(scores, c.score)
	}
	v, err := verdict.Compute(nil, scores, a.vo)
	if err != nil {
		a.log.Error("compute rolling verdict", zap.Stringer("video", key), zap.Error(err))
		return
	}
	v.VideoID, v.Revision, v.CreatedAt = key.id, int(key.revision), now.UTC()
	data, err := json.Marshal(v)
	if err != nil {
		a.log.Warn("marshal rolling verdict", zap.Stringer("video", key), zap.Error(err))
		return
	}
	// Compare-and-set against the entry read above: a final verdict stored in between (by an
	// instance this one should not share a consumer with, but might) is not overwritten.
	if kvRev == 0 {
		_, err = a.kv.Create(ctx, v.VideoID, data)
	} else {
		_, err = a.kv.Update(ctx, v.VideoID, data, kvRev)
	}
	if err != nil {
		a.log.Warn("put rolling verdict (will retry)", zap.Stringer("video", key), zap.Error(err))
		return
	}
	id := fmt.Sprintf("%s/partial-%d", VerdictMsgID(v.VideoID, v.Revision), len(scores))
	if _, err := a.js.Publish(ctx, laev1.VerdictSubject(v.VideoID), data, jetstream.WithMsgID(id)); err != nil {
		a.log.Warn("publish rolling verdict", zap.Stringer("video", key), zap.Error(err))
		return
	}
	st.lastRolling, st.rolledCrops = now, len(scores)
	a.stats.Rolling.Add(1)
}

// errSuperseded means a final verdict of a newer revision is in the KV bucket.
var errSuperseded = errors.New("a newer revision's final verdict is stored")

// store puts the verdict into the KV bucket, then publishes it. The KV comes first: a
// subscriber that sees the message can always read the bucket. It returns errSuperseded, and
// stores nothing, when the bucket holds a final verdict of a newer revision.
func (a *aggregator) store(ctx context.Context, v laev1.Verdict, data []byte) error {
	cur, _, err := a.stored(ctx, v.VideoID)
	if err != nil {
		return err
	}
	if cur != nil && cur.Final && cur.Revision > v.Revision {
		return errSuperseded
	}
	if _, err := a.kv.Put(ctx, v.VideoID, data); err != nil {
		return fmt.Errorf("put verdict %s into kv %s: %w", v.VideoID, laev1.BucketVerdicts, err)
	}
	if _, err := a.js.Publish(ctx, laev1.VerdictSubject(v.VideoID), data,
		jetstream.WithMsgID(VerdictMsgID(v.VideoID, v.Revision))); err != nil {
		return fmt.Errorf("publish verdict on %s: %w", laev1.VerdictSubject(v.VideoID), err)
	}
	return nil
}

// evidence locates and renders the chosen crops. Failures cost the image, not the verdict.
func (a *aggregator) evidence(ctx context.Context, key videoKey, st *state, top []*laev1.FrameScore) []laev1.Evidence {
	out := make([]laev1.Evidence, 0, len(top))
	crops := a.faceCrops(ctx, key, top)
	for _, s := range top {
		s = a.withHeatmap(ctx, st, s)
		fc := crops[cropKey{s.GetFrameIndex(), s.GetFaceIndex()}]
		ev := laev1.Evidence{FrameIndex: s.GetFrameIndex(), PTSSeconds: s.GetPtsSeconds(), TrackID: s.GetTrackId(),
			FaceIndex: s.GetFaceIndex(), Score: float64(s.GetScore())}
		if math.IsNaN(ev.PTSSeconds) || math.IsInf(ev.PTSSeconds, 0) {
			ev.PTSSeconds = 0 // NaN cannot be written as JSON
		}
		loc, err := evidence.Locate(s)
		if err != nil {
			a.stats.EvidenceErrors.Add(1)
			a.log.Warn("locate evidence", zap.Stringer("video", key), zap.Error(err))
		}
		ev.FaceBox, ev.HotRegion = loc.Face, loc.Hot
		// The part is named on the canonical geometry of a crop aligned on detected eyes; a
		// crop known to be aligned on the box alone (no landmarks) gets none.
		if fc == nil || fc.GetEyesAligned() {
			ev.Part = evidence.Part(s, loc)
		}
		frame, err := a.frameImage(ctx, s.GetVideoId(), s.GetFrameIndex())
		if err != nil {
			a.log.Warn("fetch frame image (drawing on the heatmap alone)", zap.Stringer("video", key), zap.Error(err))
		}
		img, err := evidence.RenderWithCrop(s, frame, fc, loc)
		switch {
		case errors.Is(err, evidence.ErrNothingToDraw):
		case err != nil:
			a.stats.EvidenceErrors.Add(1)
			a.hookError("evidence")
			a.log.Warn("render evidence", zap.Stringer("video", key), zap.Error(err))
		default:
			name := laev1.EvidenceObjectName(s.GetVideoId(), int(key.revision), s.GetFrameIndex(), s.GetFaceIndex())
			if _, err := a.obs.PutBytes(ctx, name, img); err != nil {
				a.stats.EvidenceErrors.Add(1)
				a.log.Warn("store evidence image", zap.String("name", name), zap.Error(err))
			} else {
				ev.Image = name
				a.stats.EvidenceImages.Add(1)
			}
		}
		out = append(out, ev)
	}
	return out
}

// withHeatmap returns the full score of a crop, fetched back from the stream by sequence (the
// state keeps scores without heatmaps). On failure the score goes on without a heatmap.
func (a *aggregator) withHeatmap(ctx context.Context, st *state, s *laev1.FrameScore) *laev1.FrameScore {
	c := st.crops[cropKey{s.GetFrameIndex(), s.GetFaceIndex()}]
	if c.seq == 0 || len(s.GetHeatmap()) > 0 {
		return s
	}
	raw, err := a.scores.GetMsg(ctx, c.seq)
	if err != nil {
		a.log.Warn("fetch score back for its heatmap", zap.Uint64("seq", c.seq), zap.Error(err))
		return s
	}
	full, err := DecodeScore(raw.Subject, raw.Data)
	if err != nil || full.GetFrameIndex() != s.GetFrameIndex() || full.GetFaceIndex() != s.GetFaceIndex() {
		a.log.Warn("score fetched back does not match", zap.Uint64("seq", c.seq), zap.Error(err))
		return s
	}
	return full
}

// faceCrops fetches the aligned crops of the chosen scores from LAE_FACES by the sequence the
// detector recorded on each score, for the evidence image's crop panel at full crop
// resolution. Crops not found (expired, scored before sequences were recorded, or the stream
// unreachable) are left out: the image then re-cuts the crop from the frame image.
func (a *aggregator) faceCrops(ctx context.Context, key videoKey, top []*laev1.FrameScore) map[cropKey]*laev1.FaceCrop {
	out := make(map[cropKey]*laev1.FaceCrop, len(top))
	ctx, cancel := context.WithTimeout(ctx, finishTimeout)
	defer cancel()
	for _, s := range top {
		k, seq := cropKey{s.GetFrameIndex(), s.GetFaceIndex()}, s.GetCropSeq()
		if seq == 0 {
			continue
		}
		raw, err := a.crops.GetMsg(ctx, seq)
		if err != nil {
			a.log.Warn("fetch evidence crop (re-cutting it from the frame image)", zap.Stringer("video", key),
				zap.Uint64("seq", seq), zap.Error(err))
			continue
		}
		var fc laev1.FaceCrop
		if err := proto.Unmarshal(raw.Data, &fc); err != nil || raw.Subject != laev1.FacesSubject(key.id) ||
			fc.GetFrameIndex() != k.frame || fc.GetFaceIndex() != k.face {
			a.log.Warn("evidence crop does not match its score", zap.Stringer("video", key), zap.Uint64("seq", seq), zap.Error(err))
			continue
		}
		out[k] = &fc
	}
	return out
}

// frameImage fetches the frame image of one frame; (nil, nil) when there is none.
func (a *aggregator) frameImage(ctx context.Context, videoID string, frame uint64) (*laev1.FrameImage, error) {
	raw, err := a.frames.GetLastMsgForSubject(ctx, laev1.FrameSubject(videoID, frame))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get frame image %s: %w", laev1.FrameSubject(videoID, frame), err)
	}
	var fi laev1.FrameImage
	if err := proto.Unmarshal(raw.Data, &fi); err != nil {
		return nil, fmt.Errorf("decode frame image %s: %w", laev1.FrameSubject(videoID, frame), err)
	}
	return &fi, nil
}

// replay rebuilds a video's scores from the stream (see the package comment). Scores already
// in the state are dropped as duplicates.
func (a *aggregator) replay(ctx context.Context, key videoKey) {
	st := a.states[key]
	st.replayed = true
	a.stats.Replays.Add(1)
	ctx, cancel := context.WithTimeout(ctx, finishTimeout)
	defer cancel()
	before := len(st.crops)
	// Each request is asked again when a cluster electing a leader leaves it unanswered.
	var cons jetstream.Consumer
	err := jsretry.Do(ctx, func(ctx context.Context) (err error) {
		cons, err = a.js.OrderedConsumer(ctx, laev1.StreamScores, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{laev1.ScoresSubject(key.id)}, DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		return err
	})
	if err != nil {
		a.log.Warn("replay scores", zap.Stringer("video", key), zap.Error(err))
		return
	}
	var info *jetstream.ConsumerInfo
	err = jsretry.Do(ctx, func(ctx context.Context) (err error) {
		info, err = cons.Info(ctx)
		return err
	})
	if err != nil {
		a.log.Warn("replay scores", zap.Stringer("video", key), zap.Error(err))
		return
	}
	// Only what is in the stream now: later scores come through the durable consumer.
	remaining := info.NumPending
	for remaining > 0 {
		batch, err := cons.Fetch(int(min(remaining, 1024)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			a.log.Warn("replay scores", zap.Stringer("video", key), zap.Error(err))
			return
		}
		got := 0
		for m := range batch.Messages() {
			got++
			remaining--
			s, err := DecodeScore(m.Subject(), m.Data())
			if err != nil || s.GetRevision() != key.revision {
				continue
			}
			var seq uint64
			if md, err := m.Metadata(); err == nil {
				seq = md.Sequence.Stream
			}
			a.fold(key, s, seq, false)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			a.log.Warn("replay scores", zap.Stringer("video", key), zap.Error(err))
		}
		if got == 0 {
			break
		}
	}
	a.log.Info("replayed scores", zap.Stringer("video", key), zap.Int("recovered", len(st.crops)-before),
		zap.Int("crops", len(st.crops)), zap.Uint64("published", st.eos.GetCropsPublished()))
}
