package verdict

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// fs builds a score for frame f, face i, track tr.
func fs(f uint64, i uint32, tr uint64, score float32) *laev1.FrameScore {
	return &laev1.FrameScore{VideoId: "v1", FrameIndex: f, FaceIndex: i, TrackId: tr, Score: score,
		PtsSeconds: float64(f) / 25, Model: "lae-small", ModelVersion: "0.1"}
}

func errScore(f uint64, i uint32) *laev1.FrameScore {
	s := fs(f, i, 9, 0.99)
	s.Error = "malformed crop"
	return s
}

func TestScoreRules(t *testing.T) {
	// Two frames: frame 0 has a fake face (0.9) next to a real one (0.1); frame 1 has only a
	// real face (0.2); frame 2 has a real (0.1) and a middling face (0.5).
	group := []*laev1.FrameScore{fs(0, 0, 1, 0.9), fs(0, 1, 2, 0.1), fs(1, 0, 2, 0.2), fs(2, 0, 1, 0.5), fs(2, 1, 2, 0.1)}
	tests := []struct {
		name       string
		rule       string
		topK       int
		scores     []*laev1.FrameScore
		want       float64
		wantUsable int
	}{
		{"mean of all faces", RuleMean, 0, group, (0.9 + 0.1 + 0.2 + 0.5 + 0.1) / 5, 5},
		{"max per frame then mean", RuleMaxFaceMean, 0, group, (0.9 + 0.2 + 0.5) / 3, 5},
		{"empty rule is the default", "", 0, group, (0.9 + 0.2 + 0.5) / 3, 5},
		{"top-k with explicit k", RuleTopKMean, 2, group, (0.9 + 0.5) / 2, 5},
		{"top-k default k is at least 3", RuleTopKMean, 0, group, (0.9 + 0.5 + 0.2) / 3, 5},
		{"top-k larger than crops", RuleTopKMean, 50, group, (0.9 + 0.1 + 0.2 + 0.5 + 0.1) / 5, 5},
		{"errored crops are ignored", RuleMean, 0, []*laev1.FrameScore{fs(0, 0, 1, 0.4), errScore(0, 1)}, 0.4, 1},
		{"NaN is unusable", RuleMean, 0, []*laev1.FrameScore{fs(0, 0, 1, float32(math.NaN())), fs(1, 0, 1, 0.6)}, 0.6, 1},
		{"out of range is clamped", RuleMean, 0, []*laev1.FrameScore{fs(0, 0, 1, 1.5), fs(1, 0, 1, -1)}, 0.5, 2},
		{"no usable crop", RuleMaxFaceMean, 0, []*laev1.FrameScore{errScore(0, 0)}, 0, 0},
		{"nothing at all", RuleTopKMean, 0, nil, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, usable, err := Score(tc.rule, tc.topK, tc.scores)
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-6)
			assert.Equal(t, tc.wantUsable, usable)
		})
	}
	_, _, err := Score("median", 0, group)
	require.ErrorContains(t, err, "unknown verdict rule")
}

func TestDefaultTopK(t *testing.T) {
	for _, tc := range []struct{ n, want int }{{1, 3}, {30, 3}, {31, 4}, {100, 10}, {10000, 1000}} {
		assert.Equal(t, tc.want, DefaultTopK(tc.n), "n=%d", tc.n)
	}
}

func TestOptionsNormalize(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"defaults the rule", Options{Threshold: 0.5}, ""},
		{"zero threshold refused", Options{Rule: RuleMean}, "threshold"},
		{"threshold above 1 refused", Options{Threshold: 1.5}, "threshold"},
		{"unknown rule", Options{Rule: "vote", Threshold: 0.5}, "unknown verdict rule"},
		{"negative k", Options{Rule: RuleTopKMean, TopK: -1, Threshold: 0.5}, "top-k"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := tc.o.Normalize()
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, DefaultRule, o.Rule)
		})
	}
}

func TestComputeVerdicts(t *testing.T) {
	eos := func(failure string) *laev1.EndOfStream {
		return &laev1.EndOfStream{VideoId: "v1", SourceUrl: "file:///x.mp4", FramesDecoded: 100,
			FramesSampled: 20, Faces: 3, CropsPublished: 3, Failure: failure, Revision: 2}
	}
	tests := []struct {
		name        string
		eos         *laev1.EndOfStream
		scores      []*laev1.FrameScore
		threshold   float64
		wantVerdict string
		wantErrors  uint64
	}{
		{"fake above threshold", eos(""), []*laev1.FrameScore{fs(0, 0, 1, 0.8), fs(1, 0, 1, 0.9), fs(2, 0, 1, 0.7)}, 0.5, laev1.VerdictFake, 0},
		{"score equal to threshold is fake", eos(""), []*laev1.FrameScore{fs(0, 0, 1, 0.5)}, 0.5, laev1.VerdictFake, 0},
		{"real below threshold", eos(""), []*laev1.FrameScore{fs(0, 0, 1, 0.1), fs(1, 0, 1, 0.2), fs(2, 0, 1, 0.3)}, 0.5, laev1.VerdictReal, 0},
		{"no faces is unknown, not real", eos(""), nil, 0.5, laev1.VerdictUnknown, 0},
		{"all crops errored is unknown", eos(""), []*laev1.FrameScore{errScore(0, 0), errScore(1, 0), errScore(2, 0)}, 0.5, laev1.VerdictUnknown, 3},
		{"ingest failure is error even with scores", eos("open: no such file"), []*laev1.FrameScore{fs(0, 0, 1, 0.9)}, 0.5, laev1.VerdictError, 0},
		{"only faces too small is unknown", tiny(eos(""), 0, 7), nil, 0.5, laev1.VerdictUnknown, 0},
		{"faces too small beside judged ones do not change the verdict", tiny(eos(""), 3, 4),
			[]*laev1.FrameScore{fs(0, 0, 1, 0.8), fs(1, 0, 1, 0.9), fs(2, 0, 1, 0.7)}, 0.5, laev1.VerdictFake, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Compute(tc.eos, tc.scores, Options{Threshold: tc.threshold})
			require.NoError(t, err)
			assert.Equal(t, tc.wantVerdict, v.Verdict)
			assert.Equal(t, tc.eos.GetFailure(), v.Error)
			assert.Equal(t, uint64(len(tc.scores)), v.CropsScored)
			assert.Equal(t, tc.wantErrors, v.CropErrors)
			assert.Equal(t, tc.eos.GetFacesTooSmall(), v.FacesTooSmall)
			assert.Equal(t, "v1", v.VideoID)
			assert.Equal(t, "file:///x.mp4", v.Input)
			assert.Equal(t, uint64(20), v.FramesSampled)
			assert.Equal(t, 2, v.Revision)
			assert.True(t, v.Final)
			assert.NotNil(t, v.Tracks)
			assert.NotNil(t, v.Evidence)
			if len(tc.scores) > 0 {
				assert.Equal(t, "lae-small", v.Model)
			}
			if tc.wantVerdict == laev1.VerdictError || tc.wantVerdict == laev1.VerdictUnknown {
				assert.Zero(t, v.Score)
			}
		})
	}
	_, err := Compute(eos(""), nil, Options{Threshold: 0})
	require.Error(t, err)
}

func TestTracksAndTimeline(t *testing.T) {
	scores := []*laev1.FrameScore{
		fs(0, 0, 7, 0.9), fs(0, 1, 8, 0.1),
		fs(5, 0, 7, 0.7), fs(5, 1, 8, 0.3),
		fs(10, 0, 9, 0.2), errScore(10, 1),
	}
	tracks := Tracks(Options{Rule: RuleMaxFaceMean, Threshold: 0.5}, scores)
	require.Len(t, tracks, 3) // 7, 8, 9 (the errored crop is on track 9 too)
	assert.Equal(t, uint64(7), tracks[0].TrackID)
	assert.InDelta(t, 0.8, tracks[0].Score, 1e-6)
	assert.Equal(t, laev1.VerdictFake, tracks[0].Verdict)
	assert.Equal(t, 0.0, tracks[0].FirstPTS)
	assert.InDelta(t, 0.2, tracks[0].LastPTS, 1e-9)
	assert.Equal(t, laev1.VerdictReal, tracks[1].Verdict)
	assert.Equal(t, 2, tracks[2].Faces)

	tl := Timeline(scores)
	require.Len(t, tl, 3)
	assert.Equal(t, []uint64{0, 5, 10}, []uint64{tl[0].FrameIndex, tl[1].FrameIndex, tl[2].FrameIndex})
	assert.InDelta(t, 0.9, tl[0].Score, 1e-6)
	assert.Equal(t, 2, tl[0].Faces)
	assert.Equal(t, 1, tl[2].Faces) // errored crop is not a usable face
}

func TestTopFramesIsOrderIndependent(t *testing.T) {
	scores := []*laev1.FrameScore{
		fs(3, 0, 1, 0.6), fs(3, 1, 2, 0.95), // frame 3's best face is face 1
		fs(1, 0, 1, 0.8), fs(2, 0, 1, 0.8), // tie: earlier frame first
		fs(4, 0, 1, 0.1), errScore(5, 0),
	}
	want := []struct {
		frame uint64
		face  uint32
	}{{3, 1}, {1, 0}, {2, 0}}
	for trial := range 20 {
		shuffled := append([]*laev1.FrameScore(nil), scores...)
		rand.New(rand.NewPCG(uint64(trial), 1)).Shuffle(len(shuffled), func(i, j int) {
			shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
		})
		top := TopFrames(shuffled, 3)
		require.Len(t, top, 3)
		for i, w := range want {
			assert.Equal(t, w.frame, top[i].GetFrameIndex(), "trial %d rank %d", trial, i)
			assert.Equal(t, w.face, top[i].GetFaceIndex(), "trial %d rank %d", trial, i)
		}
	}
	assert.Empty(t, TopFrames(scores, 0))
	assert.Len(t, TopFrames(scores, 100), 5) // only 5 crops are usable
	// A crop delivered twice counts once.
	assert.Len(t, TopFrames(append(scores, fs(3, 1, 2, 0.95)), 100), 5)
}

func TestTopFramesSpreadsAcrossTracksAndTime(t *testing.T) {
	type pick struct {
		frame uint64
		track uint64
	}
	picks := func(top []*laev1.FrameScore) []pick {
		out := make([]pick, len(top))
		for i, s := range top {
			out[i] = pick{s.GetFrameIndex(), s.GetTrackId()}
		}
		return out
	}
	// hump is a score peaking at frame peak and falling by 0.002 per frame.
	hump := func(f, peak uint64, top float64) float32 {
		d := float64(max(f, peak) - min(f, peak))
		return float32(max(0.01, top-0.002*d))
	}
	for _, c := range []struct {
		name   string
		scores func() []*laev1.FrameScore
		n      int
		want   []pick
	}{{
		// Track 1 beats track 2 in every frame: the old choice was three neighbours of
		// track 1's best; now track 2's best is there too.
		name: "two tracks, both represented",
		scores: func() []*laev1.FrameScore {
			var out []*laev1.FrameScore
			for f := range uint64(20) {
				out = append(out, fs(f, 0, 1, hump(f, 10, 0.95)), fs(f, 1, 2, hump(f, 4, 0.40)))
			}
			return out
		},
		n: 3,
		// Track 1 spans 19 frames: its second pick is at least 19/4 = 4 frames from its best
		// (6 and 14 tie; the earlier wins).
		want: []pick{{10, 1}, {6, 1}, {4, 2}},
	}, {
		name: "one long track, picks spread in time",
		scores: func() []*laev1.FrameScore {
			var out []*laev1.FrameScore
			for f := range uint64(300) {
				// A broad peak at 100 and a lower one at 250.
				out = append(out, fs(f, 0, 7, max(hump(f, 100, 0.9), hump(f, 250, 0.8))))
			}
			return out
		},
		n: 3,
		// Picks at least 299/4 = 74 frames apart: both peaks, then the best frame 74 from the
		// first peak (26 and 174 tie at 0.752; the earlier wins).
		want: []pick{{100, 7}, {250, 7}, {26, 7}},
	}, {
		name: "more tracks than picks: the best tracks",
		scores: func() []*laev1.FrameScore {
			var out []*laev1.FrameScore
			for tr := range uint64(5) {
				for f := range uint64(10) {
					out = append(out, fs(f, uint32(tr), tr, hump(f, 5, 0.5+0.1*float64(tr))))
				}
			}
			return out
		},
		n:    2,
		want: []pick{{5, 4}, {5, 3}},
	}, {
		name: "short track: neighbours when nothing else is left",
		scores: func() []*laev1.FrameScore {
			return []*laev1.FrameScore{fs(0, 0, 1, 0.5), fs(1, 0, 1, 0.7), fs(2, 0, 1, 0.6)}
		},
		n:    3,
		want: []pick{{1, 1}, {2, 1}, {0, 1}},
	}} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, picks(TopFrames(c.scores(), c.n)))
		})
	}
}

// syntheticVideo makes n crops, 2 faces per frame, with deterministic pseudo-random scores.
func syntheticVideo(n int) []*laev1.FrameScore {
	r := rand.New(rand.NewPCG(42, 7))
	out := make([]*laev1.FrameScore, n)
	for i := range out {
		out[i] = fs(uint64(i/2), uint32(i%2), uint64(i%2), r.Float32())
	}
	return out
}

func BenchmarkCompute10k(b *testing.B) {
	scores := syntheticVideo(10000)
	eos := &laev1.EndOfStream{VideoId: "v1", CropsPublished: 10000, Faces: 10000}
	for _, rule := range Rules() {
		b.Run(rule, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, err := Compute(eos, scores, Options{Rule: rule, Threshold: 0.5})
				if err != nil || v.CropsScored != 10000 {
					b.Fatal(fmt.Sprint(err, v.CropsScored))
				}
				_ = TopFrames(scores, 3)
			}
		})
	}
}

// FuzzCompute decodes arbitrary bytes as a handful of scores (chunks of the input) and checks
// the verdict's invariants: it can be written as JSON, its label is one of the four, its score
// is in [0,1], and it never says "real" without a usable crop.
func FuzzCompute(f *testing.F) {
	seed, err := proto.Marshal(fs(3, 1, 2, 0.7))
	require.NoError(f, err)
	f.Add(seed, uint8(len(seed)), uint8(0))
	nan := fs(1, 0, 1, float32(math.NaN()))
	nan.PtsSeconds = math.Inf(1)
	seed2, err := proto.Marshal(nan)
	require.NoError(f, err)
	f.Add(append(seed2, seed...), uint8(len(seed2)), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, rule uint8) {
		if chunk == 0 {
			return
		}
		var scores []*laev1.FrameScore
		for len(data) > 0 {
			n := min(int(chunk), len(data))
			var s laev1.FrameScore
			if proto.Unmarshal(data[:n], &s) == nil {
				scores = append(scores, &s)
			}
			data = data[n:]
		}
		eos := &laev1.EndOfStream{VideoId: "v", CropsPublished: uint64(len(scores))}
		v, err := Compute(eos, scores, Options{Rule: Rules()[int(rule)%3], Threshold: 0.5})
		require.NoError(t, err)
		_, err = json.Marshal(v)
		require.NoError(t, err, "verdict cannot be written as JSON")
		require.Contains(t, []string{laev1.VerdictFake, laev1.VerdictReal, laev1.VerdictUnknown}, v.Verdict)
		require.True(t, v.Score >= 0 && v.Score <= 1, "score %v", v.Score)
		_, usable, _ := Score(v.Rule, 0, scores)
		if usable == 0 {
			require.Equal(t, laev1.VerdictUnknown, v.Verdict)
		}
	})
}

// tiny sets the end-of-stream's face counts: faces published and faces too small to judge.
func tiny(e *laev1.EndOfStream, faces, tooSmall uint64) *laev1.EndOfStream {
	e.Faces, e.CropsPublished, e.FacesTooSmall = faces, faces, tooSmall
	return e
}

func TestCompleteness(t *testing.T) {
	share := func(f float64) *float64 { return &f }
	cases := []struct {
		name     string
		eos      *laev1.EndOfStream
		complete bool
		share    *float64
	}{
		{"rolling", nil, true, nil},
		{"whole file", &laev1.EndOfStream{ExpectedSeconds: 10, ReadSeconds: 10.04, FramesDecoded: 251}, true, share(1)},
		{"last frame rounding", &laev1.EndOfStream{ExpectedSeconds: 10, ReadSeconds: 9.6, FramesDecoded: 240}, true, share(0.96)},
		{"cut at two thirds", &laev1.EndOfStream{ExpectedSeconds: 9, ReadSeconds: 6, FramesDecoded: 150}, false, share(6.0 / 9)},
		{"long video cut 10 s short", &laev1.EndOfStream{ExpectedSeconds: 600, ReadSeconds: 590, FramesDecoded: 14750}, false, share(590.0 / 600)},
		{"live", &laev1.EndOfStream{Live: true, ReadSeconds: 30, FramesDecoded: 750}, true, nil},
		{"failed", &laev1.EndOfStream{ExpectedSeconds: 10, ReadSeconds: 10, FramesDecoded: 250, Failure: "decode: boom"}, false, share(1)},
		{"failed before reading", &laev1.EndOfStream{Failure: "open: no such file"}, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			complete, sh := Completeness(tc.eos)
			require.Equal(t, tc.complete, complete)
			if tc.share == nil {
				require.Nil(t, sh)
				return
			}
			require.NotNil(t, sh)
			require.InDelta(t, *tc.share, *sh, 1e-9)
		})
	}
}

// TestComputeSource: the end-of-stream's description of the input reaches the verdict (and
// its JSON) unchanged; without one (rolling, or an input that never opened) there is none.
func TestComputeSource(t *testing.T) {
	o := Options{Threshold: 0.5}
	eos := &laev1.EndOfStream{VideoId: "v1", SourceUrl: "clip.mp4", Source: &laev1.SourceInfo{
		FileSize: 1234, Sha256: "ab", Container: "mov,mp4,m4a,3gp,3g2,mj2", Codec: "h264",
		Width: 360, Height: 640, CodedWidth: 640, CodedHeight: 360, Fps: 25, DurationSeconds: 4.2,
		Rotation: 90, Mirrored: true,
	}}
	v, err := Compute(eos, []*laev1.FrameScore{fs(0, 0, 1, 0.2)}, o)
	require.NoError(t, err)
	require.Equal(t, &laev1.SourceFacts{FileSize: 1234, SHA256: "ab", Container: "mov,mp4,m4a,3gp,3g2,mj2", Codec: "h264",
		Width: 360, Height: 640, CodedWidth: 640, CodedHeight: 360, FPS: 25, DurationSeconds: 4.2, Rotation: 90, Mirrored: true}, v.Source)
	b, err := json.Marshal(v)
	require.NoError(t, err)
	require.Contains(t, string(b), `"source":{"file_size":1234,"sha256":"ab"`)

	v, err = Compute(nil, []*laev1.FrameScore{fs(0, 0, 1, 0.2)}, o)
	require.NoError(t, err)
	require.Nil(t, v.Source)
	b, err = json.Marshal(v)
	require.NoError(t, err)
	require.NotContains(t, string(b), `"source"`)
}
