// Package verdict turns the per-crop scores of one video into the video's verdict.
//
// It is pure computation (no I/O, no OpenCV), so the rules can be read, tested and reused by
// anything that holds the scores of a video: the aggregator service, a batch rescoring job or a
// report generator.
//
// # What a verdict means
//
// Every face crop the ingest stage published is scored once by the detector with a probability
// of manipulation in [0,1]. The rule (below) reduces the usable scores of a video to one
// video score; the video is "fake" when that score is at or above the calibrated threshold of
// the model (read from its model card by the caller), "real" otherwise.
//
//   - A crop is usable when its FrameScore has no error and a finite score. Scores outside
//     [0,1] (a broken model) are clamped into [0,1] rather than dropped, so they still count.
//   - A video with no usable crop (no face found, every face too small to judge, or every crop
//     failed to score) is "unknown", never "real": the absence of a face is not evidence that
//     the video is authentic. Faces too small to judge (EndOfStream.faces_too_small: ingest
//     counts them instead of publishing upsampled crops) are reported in FacesTooSmall; they
//     never enter a score.
//   - A video whose ingest failed (EndOfStream.failure set) is "error" with the failure as the
//     reason, whatever scores arrived before the failure; its score is 0 (the score of part of
//     a video is not a verdict), while the counts, tracks and timeline are still filled in.
//
// # Rules
//
//   - "mean": the mean of all usable face scores. Simple, but every real face in the video
//     dilutes a manipulated one: one swapped face among four real speakers scores about 1/4.
//   - "topk_mean": the mean of the k highest face scores, k = Options.TopK or, when that is 0,
//     max(3, ceil(10% of the usable crops)), capped at the number of usable crops. Sensitive to
//     a short manipulated segment, but a handful of false-positive crops can flip a long video.
//   - "max_face_mean" (the default): for every sampled frame with at least one usable face take
//     the highest face score, then the mean over those frames. Taking the max per frame means
//     a manipulated face is not diluted by real faces next to it (the common case of one
//     swapped face in a group), and averaging over frames means one noisy frame cannot decide
//     the video on its own. It equals "mean" for single-face videos, which is what a detector
//     trained on single-face crops is calibrated for, so the model card's threshold carries
//     over without recalibration.
//
// Tracks (laev1.Track) are summarised with the same rule restricted to the track's crops; a
// track has at most one face per frame, so "mean" and "max_face_mean" coincide there.
package verdict

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Rule names.
const (
	RuleMean        = "mean"
	RuleTopKMean    = "topk_mean"
	RuleMaxFaceMean = "max_face_mean"
	// DefaultRule is used when Options.Rule is empty; see the package comment for why.
	DefaultRule = RuleMaxFaceMean
)

// Rules lists the rule names a caller may select.
func Rules() []string { return []string{RuleMean, RuleTopKMean, RuleMaxFaceMean} }

// Options selects the rule and the decision threshold.
type Options struct {
	// Rule is one of Rules(); "" means DefaultRule.
	Rule string
	// TopK is k for "topk_mean"; 0 means max(3, ceil(10% of usable crops)).
	TopK int
	// Threshold is the calibrated decision threshold in (0,1]: score >= Threshold is "fake".
	Threshold float64
	// Model names the model when the scores do not (they normally do).
	Model string
}

// Normalize fills defaults and reports an unusable configuration.
func (o Options) Normalize() (Options, error) {
	if o.Rule == "" {
		o.Rule = DefaultRule
	}
	if !slices.Contains(Rules(), o.Rule) {
		return o, fmt.Errorf("unknown verdict rule %q (want one of %v)", o.Rule, Rules())
	}
	if o.TopK < 0 {
		return o, fmt.Errorf("top-k %d: must be >= 0", o.TopK)
	}
	// A zero threshold would call every video fake; it almost always means the caller forgot
	// to read the model card, so it is refused rather than silently used.
	if !(o.Threshold > 0 && o.Threshold <= 1) {
		return o, fmt.Errorf("threshold %v: must be in (0,1] (read it from the model card)", o.Threshold)
	}
	return o, nil
}

// Usable reports whether a score may enter a verdict (no scoring error, finite score).
func Usable(s *laev1.FrameScore) bool {
	if s == nil || s.GetError() != "" {
		return false
	}
	f := float64(s.GetScore())
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}

// finite replaces a non-finite time (a malformed score) by 0: NaN cannot be written as JSON,
// and one bad timestamp must not cost the video its verdict.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// clamp01 keeps a usable score in [0,1].
func clamp01(f float64) float64 { return math.Min(1, math.Max(0, f)) }

// DefaultTopK is the k "topk_mean" uses for n usable crops when Options.TopK is 0.
func DefaultTopK(n int) int {
	return max(3, int(math.Ceil(0.10*float64(n))))
}

// Score applies rule ("" = DefaultRule) to the usable scores in scores. It returns the video score and the number
// of usable crops; with no usable crop the score is 0 and the caller must say "unknown".
func Score(rule string, topK int, scores []*laev1.FrameScore) (float64, int, error) {
	if rule == "" {
		rule = DefaultRule
	}
	switch rule {
	case RuleMean:
		sum, n := 0.0, 0
		for _, s := range scores {
			if Usable(s) {
				sum += clamp01(float64(s.GetScore()))
				n++
			}
		}
		if n == 0 {
			return 0, 0, nil
		}
		return sum / float64(n), n, nil
	case RuleTopKMean:
		vals := make([]float64, 0, len(scores))
		for _, s := range scores {
			if Usable(s) {
				vals = append(vals, clamp01(float64(s.GetScore())))
			}
		}
		n := len(vals)
		if n == 0 {
			return 0, 0, nil
		}
		k := topK
		if k <= 0 {
			k = DefaultTopK(n)
		}
		k = min(k, n)
		// Descending order; a full sort of 10k floats is well under a millisecond, and
		// simpler to trust than a selection algorithm.
		slices.SortFunc(vals, func(a, b float64) int { return cmp.Compare(b, a) })
		sum := 0.0
		for _, v := range vals[:k] {
			sum += v
		}
		return sum / float64(k), n, nil
	case RuleMaxFaceMean:
		perFrame := make(map[uint64]float64)
		n := 0
		for _, s := range scores {
			if !Usable(s) {
				continue
			}
			n++
			v := clamp01(float64(s.GetScore()))
			if cur, ok := perFrame[s.GetFrameIndex()]; !ok || v > cur {
				perFrame[s.GetFrameIndex()] = v
			}
		}
		if n == 0 {
			return 0, 0, nil
		}
		sum := 0.0
		for _, v := range perFrame {
			sum += v
		}
		return sum / float64(len(perFrame)), n, nil
	default:
		return 0, 0, fmt.Errorf("unknown verdict rule %q (want one of %v)", rule, Rules())
	}
}

// label turns a score into fake/real given that at least one crop was usable.
func label(score, threshold float64) string {
	if score >= threshold {
		return laev1.VerdictFake
	}
	return laev1.VerdictReal
}

// Completeness says whether ingest read the whole source, and which share of it. A source is
// complete when it ended no earlier than the expected time less a tolerance of three frames
// (at least half a second: the last frame's end and the declared duration differ by
// rounding) and ingest did not stop on an error. A rolling verdict (no end-of-stream yet)
// and a source of unknown length are complete, with no share.
func Completeness(eos *laev1.EndOfStream) (complete bool, share *float64) {
	if eos == nil {
		return true, nil
	}
	complete = eos.GetFailure() == ""
	want, got := eos.GetExpectedSeconds(), eos.GetReadSeconds()
	if want <= 0 || math.IsNaN(want) || math.IsNaN(got) {
		return complete, nil
	}
	sh := clamp01(got / want)
	tolerance := 0.5
	if eos.GetFramesDecoded() > 0 && got > 0 {
		tolerance = max(tolerance, 3*got/float64(eos.GetFramesDecoded()))
	}
	return complete && got >= want-tolerance, &sh
}

// Compute builds the verdict of one video from its end-of-stream event and its scores (one per
// crop, already de-duplicated by the caller). eos may be nil only for a rolling (non-final)
// update. Evidence is left empty (see TopFrames and package evidence); CreatedAt is left zero
// for the caller to stamp.
func Compute(eos *laev1.EndOfStream, scores []*laev1.FrameScore, o Options) (laev1.Verdict, error) {
	o, err := o.Normalize()
	if err != nil {
		return laev1.Verdict{}, err
	}
	v := laev1.Verdict{
		VideoID:   eos.GetVideoId(),
		Input:     eos.GetSourceUrl(),
		Threshold: o.Threshold,
		Rule:      o.Rule,
		Model:     o.Model,
		Revision:  int(eos.GetRevision()),
		// Final is true whenever the end-of-stream has arrived, live or not: rolling updates
		// of a live stream are built without one.
		Final:    eos != nil,
		Tracks:   []laev1.Track{},
		Evidence: []laev1.Evidence{},
		Timeline: []laev1.TimelinePoint{},

		FramesDecoded: eos.GetFramesDecoded(),
		FramesSampled: eos.GetFramesSampled(),
		Faces:         eos.GetFaces(),
		FacesTooSmall: eos.GetFacesTooSmall(),
		CropsScored:   uint64(len(scores)),
	}
	v.Complete, v.ReadShare = Completeness(eos)
	v.Source = SourceFacts(eos.GetSource())
	frames := make(map[uint64]struct{})
	modelFromScores := false
	for _, s := range scores {
		if v.VideoID == "" {
			v.VideoID = s.GetVideoId()
		}
		frames[s.GetFrameIndex()] = struct{}{}
		if !Usable(s) {
			v.CropErrors++
		}
		// The scores name the model that actually produced them; prefer that over the
		// caller's idea of the model.
		if s.GetModel() != "" && !modelFromScores {
			v.Model, modelFromScores = s.GetModel(), true
		}
		if s.GetModelVersion() != "" && v.ModelVersion == "" {
			v.ModelVersion = s.GetModelVersion()
		}
	}
	v.FramesWithFace = uint64(len(frames))
	if eos == nil {
		v.Faces = uint64(len(scores))
	}

	score, usable, err := Score(o.Rule, o.TopK, scores)
	if err != nil {
		return laev1.Verdict{}, err
	}
	v.Score = score
	v.Timeline = Timeline(scores)
	v.Tracks = Tracks(o, scores)
	switch {
	case eos.GetFailure() != "":
		// The score of part of a video is not a verdict on the video: report 0 so no reader
		// mistakes it for one. Tracks and the timeline still show what was scored.
		v.Verdict, v.Error, v.Score = laev1.VerdictError, eos.GetFailure(), 0
	case usable == 0:
		v.Verdict = laev1.VerdictUnknown
	default:
		v.Verdict = label(score, o.Threshold)
	}
	return v, nil
}

// SourceFacts copies the end-of-stream's description of the input into the verdict's form;
// nil when ingest sent none (it could not open the input, or an older ingest).
func SourceFacts(si *laev1.SourceInfo) *laev1.SourceFacts {
	if si == nil {
		return nil
	}
	return &laev1.SourceFacts{
		FileSize: si.GetFileSize(), SHA256: si.GetSha256(), Container: si.GetContainer(), Codec: si.GetCodec(),
		Width: int(si.GetWidth()), Height: int(si.GetHeight()),
		CodedWidth: int(si.GetCodedWidth()), CodedHeight: int(si.GetCodedHeight()),
		FPS: finite(si.GetFps()), DurationSeconds: finite(si.GetDurationSeconds()),
		Rotation: int(si.GetRotation()), Mirrored: si.GetMirrored(),
	}
}

// Timeline is the per-frame maximum usable face score, in frame order, for plots.
func Timeline(scores []*laev1.FrameScore) []laev1.TimelinePoint {
	byFrame := make(map[uint64]*laev1.TimelinePoint)
	for _, s := range scores {
		if !Usable(s) {
			continue
		}
		v := clamp01(float64(s.GetScore()))
		p, ok := byFrame[s.GetFrameIndex()]
		if !ok {
			p = &laev1.TimelinePoint{FrameIndex: s.GetFrameIndex(), PTSSeconds: finite(s.GetPtsSeconds()), Score: v}
			byFrame[s.GetFrameIndex()] = p
		}
		p.Faces++
		p.Score = math.Max(p.Score, v)
	}
	out := make([]laev1.TimelinePoint, 0, len(byFrame))
	for _, p := range byFrame {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b laev1.TimelinePoint) int { return cmp.Compare(a.FrameIndex, b.FrameIndex) })
	return out
}

// Tracks summarises every face track: its crop count, its score under the video's rule, its
// own verdict and its time span. A track with no usable crop is "unknown".
func Tracks(o Options, scores []*laev1.FrameScore) []laev1.Track {
	byTrack := make(map[uint64][]*laev1.FrameScore)
	for _, s := range scores {
		byTrack[s.GetTrackId()] = append(byTrack[s.GetTrackId()], s)
	}
	out := make([]laev1.Track, 0, len(byTrack))
	for id, ss := range byTrack {
		t := laev1.Track{TrackID: id, Faces: len(ss), FirstPTS: math.Inf(1), LastPTS: math.Inf(-1)}
		for _, s := range ss {
			t.FirstPTS = math.Min(t.FirstPTS, finite(s.GetPtsSeconds()))
			t.LastPTS = math.Max(t.LastPTS, finite(s.GetPtsSeconds()))
		}
		score, usable, err := Score(o.Rule, o.TopK, ss)
		switch {
		case err != nil || usable == 0:
			t.Verdict = laev1.VerdictUnknown
		default:
			t.Score, t.Verdict = score, label(score, o.Threshold)
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b laev1.Track) int { return cmp.Compare(a.TrackID, b.TrackID) })
	return out
}

// TopFrames picks the evidence: up to n usable crops spread across tracks and time, highest
// score first. Crops are ranked by better (higher score, then earlier frame, then lower face
// index) and taken in three passes, each in rank order:
//
//  1. each track's best crop, best tracks first: every face in the video is represented
//     before any face gets a second frame (when there are more tracks than n, the n with the
//     highest crops);
//  2. further crops of a track at least span/(n+1) frames (and at least 1) from every crop
//     already picked of that track, where span is the track's first-to-last frame distance:
//     different moments of a long track, not neighbours of its best frame;
//  3. the best remaining crops, when the first two passes found fewer than n.
//
// A crop delivered twice counts once (the better copy). The result is deterministic whatever
// order the scores arrived in.
func TopFrames(scores []*laev1.FrameScore, n int) []*laev1.FrameScore {
	if n <= 0 {
		return nil
	}
	type cropID struct {
		frame uint64
		face  uint32
	}
	type span struct{ lo, hi uint64 }
	best := make(map[cropID]*laev1.FrameScore)
	spans := make(map[uint64]span)
	for _, s := range scores {
		if !Usable(s) {
			continue
		}
		id := cropID{s.GetFrameIndex(), s.GetFaceIndex()}
		if cur, ok := best[id]; !ok || better(s, cur) {
			best[id] = s
		}
		f := s.GetFrameIndex()
		sp, ok := spans[s.GetTrackId()]
		if !ok {
			sp = span{f, f}
		}
		spans[s.GetTrackId()] = span{min(sp.lo, f), max(sp.hi, f)}
	}
	cands := make([]*laev1.FrameScore, 0, len(best))
	for _, s := range best {
		cands = append(cands, s)
	}
	rank := func(a, b *laev1.FrameScore) int {
		switch {
		case better(a, b):
			return -1
		case better(b, a):
			return 1
		}
		return 0
	}
	slices.SortFunc(cands, rank)
	out := make([]*laev1.FrameScore, 0, min(n, len(cands)))
	picked := make([]bool, len(cands))
	frames := make(map[uint64][]uint64) // picked frames per track
	pick := func(i int) {
		picked[i] = true
		out = append(out, cands[i])
		frames[cands[i].GetTrackId()] = append(frames[cands[i].GetTrackId()], cands[i].GetFrameIndex())
	}
	for i, s := range cands {
		if len(out) == n {
			break
		}
		if len(frames[s.GetTrackId()]) == 0 {
			pick(i)
		}
	}
	for i, s := range cands {
		if len(out) == n {
			break
		}
		if picked[i] {
			continue
		}
		sp := spans[s.GetTrackId()]
		gap := max(1, (sp.hi-sp.lo)/uint64(n+1))
		far := true
		for _, f := range frames[s.GetTrackId()] {
			if d := max(f, s.GetFrameIndex()) - min(f, s.GetFrameIndex()); d < gap {
				far = false
				break
			}
		}
		if far {
			pick(i)
		}
	}
	for i := range cands {
		if len(out) == n {
			break
		}
		if !picked[i] {
			pick(i)
		}
	}
	slices.SortFunc(out, rank)
	return out
}

// better orders crops for evidence: higher score, then earlier frame, then lower face index.
func better(a, b *laev1.FrameScore) bool {
	sa, sb := clamp01(float64(a.GetScore())), clamp01(float64(b.GetScore()))
	if sa != sb {
		return sa > sb
	}
	if a.GetFrameIndex() != b.GetFrameIndex() {
		return a.GetFrameIndex() < b.GetFrameIndex()
	}
	return a.GetFaceIndex() < b.GetFaceIndex()
}
