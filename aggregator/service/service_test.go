package service

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/aggregator/evidence"
	"github.com/lae-screening/lae/aggregator/internal/synth"
	"github.com/lae-screening/lae/aggregator/verdict"
	"github.com/lae-screening/lae/internal/natsembed"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

const threshold = 0.5

// harness is an embedded NATS server with one aggregator running on it.
type harness struct {
	srv      *natsembed.Server
	js       jetstream.JetStream
	nc       *nats.Conn
	stats    *Stats
	mu       sync.Mutex
	verdicts []laev1.Verdict
	// hooked is what Hooks.Verdict saw ("<id> <label> final=<bool>"); hookErrors what
	// Hooks.Error counted by kind.
	hooked     []string
	hookErrors map[string]int
	stop       func()
}

func startServer(t testing.TB) *harness {
	t.Helper()
	srv := testenv.StartNATS(t)
	return &harness{srv: srv, js: srv.JS, nc: srv.NC, stats: &Stats{}, hookErrors: map[string]int{}}
}

// run starts an aggregator; stop (also run at cleanup) cancels it and checks it returned nil.
func (h *harness) run(t testing.TB, o Options) {
	t.Helper()
	o.Threshold = threshold
	o.Stats = h.stats
	o.OnVerdict = func(v laev1.Verdict) {
		h.mu.Lock()
		h.verdicts = append(h.verdicts, v)
		h.mu.Unlock()
	}
	o.Hooks = Hooks{
		Verdict: func(v *laev1.Verdict) {
			h.mu.Lock()
			h.hooked = append(h.hooked, fmt.Sprintf("%s %s final=%v", v.VideoID, v.Verdict, v.Final))
			h.mu.Unlock()
		},
		Error: func(kind string) { h.mu.Lock(); h.hookErrors[kind]++; h.mu.Unlock() },
	}
	if o.Tick == 0 {
		o.Tick = 50 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, h.js, o) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err, "Run after cancel")
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(h.stop)
}

func (h *harness) verdictsFor(id string) []laev1.Verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []laev1.Verdict
	for _, v := range h.verdicts {
		if v.VideoID == id {
			out = append(out, v)
		}
	}
	return out
}

func (h *harness) publishScore(t testing.TB, s *laev1.FrameScore) {
	t.Helper()
	data, err := proto.Marshal(s)
	require.NoError(t, err)
	_, err = h.js.Publish(context.Background(), laev1.ScoresSubject(s.GetVideoId()), data,
		jetstream.WithMsgID(laev1.ScoreMsgID(s.GetVideoId(), s.GetFrameIndex(), s.GetFaceIndex(), s.GetRevision())))
	require.NoError(t, err)
}

func (h *harness) publishEOS(t testing.TB, e *laev1.EndOfStream) {
	t.Helper()
	data, err := proto.Marshal(e)
	require.NoError(t, err)
	_, err = h.js.Publish(context.Background(), laev1.EOSSubject(e.GetVideoId()), data,
		jetstream.WithMsgID(laev1.EOSMsgID(e.GetVideoId(), e.GetRevision())))
	require.NoError(t, err)
}

func (h *harness) publishFrame(t testing.TB, fi *laev1.FrameImage) {
	t.Helper()
	data, err := proto.Marshal(fi)
	require.NoError(t, err)
	_, err = h.js.Publish(context.Background(), laev1.FrameSubject(fi.GetVideoId(), fi.GetFrameIndex()), data,
		jetstream.WithMsgID(laev1.FrameMsgID(fi.GetVideoId(), fi.GetFrameIndex())))
	require.NoError(t, err)
}

// video is a synthetic scored video: track 1 is a manipulated face (hot spot on the mouth,
// high score when fake), track 2 a real face in every other frame.
type video struct {
	id     string
	fw, fh uint32
	scores []*laev1.FrameScore
	frames []*laev1.FrameImage
	eos    *laev1.EndOfStream
}

func makeVideo(t testing.TB, id string, frames int, fake bool) *video {
	t.Helper()
	v := &video{id: id, fw: 1280, fh: 720}
	r := rand.New(rand.NewPCG(uint64(len(id)), uint64(frames)))
	for f := range frames {
		fi := uint64(f * 5) // sampled every 5th decoded frame
		a := synth.Face{Box: laev1.Rect{X: 300 + float64(f)*4, Y: 200, W: 200, H: 200}, AngleDeg: 8, HotX: 16, HotY: 24, HotR: 5}
		scoreA := float32(0.1 + 0.1*r.Float64())
		if fake {
			scoreA = float32(0.8 + 0.15*r.Float64())
		}
		boxes := []laev1.Rect{a.Box}
		v.scores = append(v.scores, synth.Score(id, fi, 0, 1, scoreA, a, v.fw, v.fh))
		if f%2 == 0 {
			b := synth.Face{Box: laev1.Rect{X: 850, Y: 250, W: 160, H: 160}}
			v.scores = append(v.scores, synth.Score(id, fi, 1, 2, float32(0.05+0.1*r.Float64()), b, v.fw, v.fh))
			boxes = append(boxes, b.Box)
		}
		jpg, err := synth.FrameJPEG(int(v.fw), int(v.fh), 0.5, boxes...)
		require.NoError(t, err)
		v.frames = append(v.frames, &laev1.FrameImage{VideoId: id, FrameIndex: fi, PtsSeconds: float64(fi) / 25,
			FrameWidth: v.fw, FrameHeight: v.fh, Jpeg: jpg})
	}
	v.eos = &laev1.EndOfStream{VideoId: id, SourceUrl: "file:///synthetic/" + id + ".mp4", FramesDecoded: uint64(frames * 5),
		FramesSampled: uint64(frames), Faces: uint64(len(v.scores)), CropsPublished: uint64(len(v.scores)), Tracks: 2,
		DurationSeconds: float64(frames*5) / 25}
	return v
}

// TestSchemaInStepWithGoTypes checks that verdict.schema.json and laev1.Verdict (and its
// nested types) name the same JSON fields, and that the schema requires every field the Go
// type always writes (no omitempty).
func TestSchemaInStepWithGoTypes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "schemas", "v1", "verdict.schema.json"))
	require.NoError(t, err)
	type object struct {
		Required   []string                   `json:"required"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	var doc struct {
		object
		Defs map[string]object `json:"$defs"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	for _, tc := range []struct {
		name string
		obj  object
		typ  reflect.Type
	}{
		{"verdict", doc.object, reflect.TypeFor[laev1.Verdict]()},
		{"track", doc.Defs["track"], reflect.TypeFor[laev1.Track]()},
		{"evidence", doc.Defs["evidence"], reflect.TypeFor[laev1.Evidence]()},
		{"rect", doc.Defs["rect"], reflect.TypeFor[laev1.Rect]()},
		{"timeline_point", doc.Defs["timeline_point"], reflect.TypeFor[laev1.TimelinePoint]()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fields, required []string
			for i := range tc.typ.NumField() {
				tag := tc.typ.Field(i).Tag.Get("json")
				name, opts, _ := strings.Cut(tag, ",")
				fields = append(fields, name)
				if !strings.Contains(opts, "omitempty") {
					required = append(required, name)
				}
			}
			var props []string
			for p := range tc.obj.Properties {
				props = append(props, p)
			}
			assert.ElementsMatch(t, fields, props, "schema properties vs Go fields")
			assert.ElementsMatch(t, required, tc.obj.Required, "schema required vs Go fields without omitempty")
		})
	}
}

// waitVerdict waits for the verdict of id on its public subject and returns it with its JSON.
func waitVerdict(t testing.TB, sub *nats.Subscription) (laev1.Verdict, []byte) {
	t.Helper()
	m, err := sub.NextMsg(15 * time.Second)
	require.NoError(t, err, "no verdict on %s", sub.Subject)
	var v laev1.Verdict
	require.NoError(t, json.Unmarshal(m.Data, &v))
	return v, m.Data
}

func within(r, outer laev1.Rect) bool {
	const eps = 1e-6
	return r.X >= outer.X-eps && r.Y >= outer.Y-eps && r.X+r.W <= outer.X+outer.W+eps && r.Y+r.H <= outer.Y+outer.H+eps
}

func overlaps(a, b laev1.Rect) bool {
	return math.Min(a.X+a.W, b.X+b.W) > math.Max(a.X, b.X) && math.Min(a.Y+a.H, b.Y+b.H) > math.Max(a.Y, b.Y)
}

func TestFakeVideoVerdictWithEvidence(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{})
	v := makeVideo(t, "fake-1", 12, true)
	sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(v.id))
	require.NoError(t, err)
	for _, fi := range v.frames {
		h.publishFrame(t, fi)
	}
	for _, s := range v.scores {
		h.publishScore(t, s)
	}
	h.publishEOS(t, v.eos)

	got, data := waitVerdict(t, sub)
	testenv.RequireVerdictJSON(t, data)
	assert.Equal(t, laev1.VerdictFake, got.Verdict)
	assert.Equal(t, v.eos.GetCropsPublished(), got.CropsScored, "crops scored = crops published")
	assert.Equal(t, v.eos.GetSourceUrl(), got.Input)
	assert.Equal(t, verdict.DefaultRule, got.Rule)
	assert.Equal(t, threshold, got.Threshold)
	assert.Equal(t, "lae-synthetic", got.Model)
	assert.Equal(t, uint64(12), got.FramesSampled)
	assert.Equal(t, uint64(12), got.FramesWithFace)
	assert.Len(t, got.Timeline, 12)
	require.Len(t, got.Tracks, 2)
	assert.Equal(t, laev1.VerdictFake, got.Tracks[0].Verdict)
	assert.Equal(t, laev1.VerdictReal, got.Tracks[1].Verdict)
	want, _, err := verdict.Score(verdict.DefaultRule, 0, v.scores)
	require.NoError(t, err)
	assert.InDelta(t, want, got.Score, 1e-9)

	// Evidence: three crops across both tracks (the fake track first, then the real one's
	// best), boxes inside the frame, the fake track's hot region on the face (named), and a
	// decodable evidence image.
	require.Len(t, got.Evidence, 3)
	obs, err := h.js.ObjectStore(context.Background(), laev1.BucketEvidence)
	require.NoError(t, err)
	frame := laev1.Rect{W: float64(v.fw), H: float64(v.fh)}
	assert.Equal(t, uint64(1), got.Evidence[0].TrackID)
	tracks := map[uint64]bool{}
	for i, ev := range got.Evidence {
		tracks[ev.TrackID] = true
		if i > 0 {
			assert.LessOrEqual(t, ev.Score, got.Evidence[i-1].Score, "evidence is ordered by score")
		}
		assert.True(t, within(ev.FaceBox, frame), "face box %+v", ev.FaceBox)
		assert.True(t, within(ev.HotRegion, frame), "hot region %+v", ev.HotRegion)
		if ev.TrackID == 1 {
			assert.Positive(t, ev.HotRegion.W*ev.HotRegion.H)
			assert.True(t, overlaps(ev.HotRegion, ev.FaceBox), "hot region %+v off face %+v", ev.HotRegion, ev.FaceBox)
			// The hot spot was drawn on the lower half of the crop (the mouth).
			assert.Greater(t, ev.HotRegion.Y+ev.HotRegion.H/2, ev.FaceBox.Y+ev.FaceBox.H/2)
			assert.Equal(t, evidence.PartMouth, ev.Part)
		}
		require.Equal(t, laev1.EvidenceObjectName(v.id, 0, ev.FrameIndex, ev.FaceIndex), ev.Image)
		img, err := obs.GetBytes(context.Background(), ev.Image)
		require.NoError(t, err)
		m, err := gocv.IMDecode(img, gocv.IMReadColor)
		require.NoError(t, err)
		assert.Equal(t, evidence.Width, m.Cols())
		assert.Equal(t, evidence.Height, m.Rows())
		m.Close()
	}
	assert.Equal(t, map[uint64]bool{1: true, 2: true}, tracks, "both tracks are represented")

	kv, err := h.js.KeyValue(context.Background(), laev1.BucketVerdicts)
	require.NoError(t, err)
	entry, err := kv.Get(context.Background(), v.id)
	require.NoError(t, err)
	testenv.RequireVerdictJSON(t, entry.Value())
	assert.JSONEq(t, string(data), string(entry.Value()))
	assert.Len(t, h.verdictsFor(v.id), 1)
}

// TestEvidenceUsesScoredCrop publishes the crops to LAE_FACES: the evidence image's crop
// panel shows the scored crop's own pixels (not a re-cut from the half-size frame image), and
// a crop aligned without landmarks gets no face part.
func TestEvidenceUsesScoredCrop(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{EvidenceFrames: 4})
	v := makeVideo(t, "crops-1", 6, true)
	sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(v.id))
	require.NoError(t, err)
	for _, fi := range v.frames {
		h.publishFrame(t, fi)
	}
	for _, s := range v.scores {
		px := make([]byte, synth.CropSize*synth.CropSize*3)
		for i := 0; i < len(px); i += 3 {
			px[i], px[i+1], px[i+2] = 10, 200, 30
		}
		fc := &laev1.FaceCrop{VideoId: v.id, FrameIndex: s.GetFrameIndex(), FaceIndex: s.GetFaceIndex(), TrackId: s.GetTrackId(),
			Width: synth.CropSize, Height: synth.CropSize, Format: laev1.PixelFormat_PIXEL_FORMAT_BGR8, Pixels: px,
			EyesAligned: s.GetTrackId() == 1}
		data, err := proto.Marshal(fc)
		require.NoError(t, err)
		ack, err := h.js.Publish(context.Background(), laev1.FacesSubject(v.id), data,
			jetstream.WithMsgID(laev1.CropMsgID(v.id, s.GetFrameIndex(), s.GetFaceIndex())))
		require.NoError(t, err)
		s.CropSeq = ack.Sequence // as the detector records it from the crop's delivery
		h.publishScore(t, s)
	}
	h.publishEOS(t, v.eos)
	got, _ := waitVerdict(t, sub)
	require.Len(t, got.Evidence, 4)
	obs, err := h.js.ObjectStore(context.Background(), laev1.BucketEvidence)
	require.NoError(t, err)
	tracks := map[uint64]bool{}
	for _, ev := range got.Evidence {
		tracks[ev.TrackID] = true
		if ev.TrackID == 1 {
			assert.Equal(t, evidence.PartMouth, ev.Part)
		} else {
			assert.Empty(t, ev.Part, "a crop aligned on the box alone names no part")
		}
		img, err := obs.GetBytes(context.Background(), ev.Image)
		require.NoError(t, err)
		m, err := gocv.IMDecode(img, gocv.IMReadColor)
		require.NoError(t, err)
		c := m.GetVecbAt(evidence.CropPanel.Min.Y+evidence.CropPanel.Dy()/2, evidence.CropPanel.Min.X+evidence.CropPanel.Dx()/2)
		m.Close()
		assert.InDelta(t, 10, int(c[0]), 20, "crop panel shows the crop's pixels: %v", c)
		assert.InDelta(t, 200, int(c[1]), 20, "crop panel shows the crop's pixels: %v", c)
		assert.InDelta(t, 30, int(c[2]), 20, "crop panel shows the crop's pixels: %v", c)
	}
	assert.Len(t, tracks, 2)
}

func TestOrderIndependenceAndDuplicates(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{Rule: verdict.RuleTopKMean})
	base := makeVideo(t, "base", 10, true)
	want, _, err := verdict.Score(verdict.RuleTopKMean, 0, base.scores)
	require.NoError(t, err)

	tests := []struct {
		name      string
		eosFirst  bool
		shuffle   bool
		redeliver int // scores published a second time (as a redelivered detector would)
	}{
		{"scores then eos", false, false, 0},
		{"eos first", true, false, 0},
		{"eos first, shuffled, duplicated", true, true, 7},
		{"shuffled, duplicated, eos last", false, true, 5},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("order-%d", i)
			scores := make([]*laev1.FrameScore, len(base.scores))
			for j, s := range base.scores {
				c := proto.Clone(s).(*laev1.FrameScore)
				c.VideoId = id
				scores[j] = c
			}
			eos := proto.Clone(base.eos).(*laev1.EndOfStream)
			eos.VideoId = id
			if tc.shuffle {
				rand.New(rand.NewPCG(uint64(i), 3)).Shuffle(len(scores), func(a, b int) { scores[a], scores[b] = scores[b], scores[a] })
			}
			sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(id))
			require.NoError(t, err)
			dupsBefore := h.stats.Duplicates.Load()
			if tc.eosFirst {
				h.publishEOS(t, eos)
			}
			for j, s := range scores {
				h.publishScore(t, s)
				if j < tc.redeliver {
					// A different message id defeats JetStream's de-duplication, as a second
					// detector scoring a redelivered crop after the window would.
					data, err := proto.Marshal(s)
					require.NoError(t, err)
					_, err = h.js.Publish(context.Background(), laev1.ScoresSubject(id), data, jetstream.WithMsgID(fmt.Sprintf("again-%s-%d", id, j)))
					require.NoError(t, err)
				}
			}
			if !tc.eosFirst {
				h.publishEOS(t, eos)
			}
			got, _ := waitVerdict(t, sub)
			assert.Equal(t, laev1.VerdictFake, got.Verdict)
			assert.Equal(t, uint64(len(scores)), got.CropsScored)
			assert.InDelta(t, want, got.Score, 1e-9)
			assert.Equal(t, verdict.RuleTopKMean, got.Rule)
			require.Eventually(t, func() bool { return h.stats.Duplicates.Load()-dupsBefore == int64(tc.redeliver) }, 5*time.Second, 20*time.Millisecond)
			_, err = sub.NextMsg(200 * time.Millisecond)
			assert.ErrorIs(t, err, nats.ErrTimeout, "exactly one verdict per video")
		})
	}
}

func TestNoVerdictBeforeEveryCropIsScored(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{})
	v := makeVideo(t, "partial", 4, false)
	sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(v.id))
	require.NoError(t, err)
	h.publishEOS(t, v.eos)
	for _, s := range v.scores[:len(v.scores)-1] {
		h.publishScore(t, s)
	}
	require.Eventually(t, func() bool { return h.stats.Scores.Load() == int64(len(v.scores)-1) }, 5*time.Second, 10*time.Millisecond)
	_, err = sub.NextMsg(300 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "verdict published with a crop missing")
	h.publishScore(t, v.scores[len(v.scores)-1])
	got, _ := waitVerdict(t, sub)
	assert.Equal(t, laev1.VerdictReal, got.Verdict)
	assert.Equal(t, uint64(len(v.scores)), got.CropsScored)

	// A score arriving after the verdict is dropped, not the start of a new video.
	late := proto.Clone(v.scores[0]).(*laev1.FrameScore)
	data, err := proto.Marshal(late)
	require.NoError(t, err)
	_, err = h.js.Publish(context.Background(), laev1.ScoresSubject(v.id), data, jetstream.WithMsgID("late"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return h.stats.Late.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
}

func TestUnknownAndErrorVerdicts(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{})
	errored := func(id string, f uint64) *laev1.FrameScore {
		s := synth.Score(id, f, 0, 1, 0.9, synth.Face{Box: laev1.Rect{X: 1, Y: 1, W: 50, H: 50}}, 640, 360)
		s.Error = "crop is 0x0"
		return s
	}
	tests := []struct {
		name        string
		id          string
		scores      []*laev1.FrameScore
		eos         *laev1.EndOfStream
		wantVerdict string
		wantError   string
	}{
		{"no faces", "noface", nil,
			&laev1.EndOfStream{VideoId: "noface", FramesDecoded: 100, FramesSampled: 20}, laev1.VerdictUnknown, ""},
		// Tiny faces are counted by ingest, never published: the verdict closes with no crop
		// and says how many there were.
		{"only faces too small", "tiny", nil,
			&laev1.EndOfStream{VideoId: "tiny", FramesDecoded: 100, FramesSampled: 20, FacesTooSmall: 20}, laev1.VerdictUnknown, ""},
		{"every crop errored", "allerr", []*laev1.FrameScore{errored("allerr", 0), errored("allerr", 5)},
			&laev1.EndOfStream{VideoId: "allerr", FramesSampled: 2, Faces: 2, CropsPublished: 2}, laev1.VerdictUnknown, ""},
		{"ingest failure", "broken", nil,
			&laev1.EndOfStream{VideoId: "broken", SourceUrl: "/nope.mp4", Failure: "open /nope.mp4: no such file or directory"},
			laev1.VerdictError, "open /nope.mp4: no such file or directory"},
		{"failure midway with crops outstanding", "midway", []*laev1.FrameScore{synth.Score("midway", 0, 0, 1, 0.9, synth.Face{Box: laev1.Rect{X: 1, Y: 1, W: 50, H: 50}}, 640, 360)},
			&laev1.EndOfStream{VideoId: "midway", CropsPublished: 3, Failure: "read: connection reset"}, laev1.VerdictError, "read: connection reset"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(tc.id))
			require.NoError(t, err)
			for _, s := range tc.scores {
				h.publishScore(t, s)
			}
			h.publishEOS(t, tc.eos)
			got, data := waitVerdict(t, sub)
			testenv.RequireVerdictJSON(t, data)
			assert.Equal(t, tc.wantVerdict, got.Verdict)
			assert.Equal(t, tc.wantError, got.Error)
			assert.Empty(t, got.Evidence)
			assert.Zero(t, got.Score)
			assert.Equal(t, tc.eos.GetFacesTooSmall(), got.FacesTooSmall)
		})
	}
}

func TestMalformedMessagesAreTerminated(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{})
	ctx := context.Background()
	good := synth.Score("other", 0, 0, 1, 0.9, synth.Face{Box: laev1.Rect{X: 1, Y: 1, W: 50, H: 50}}, 640, 360)
	mismatched, err := proto.Marshal(good) // video "other" published on lae.scores.victim
	require.NoError(t, err)
	for _, m := range []struct {
		subj string
		data []byte
	}{
		{laev1.ScoresSubject("victim"), []byte{0xff, 0xff, 0xff, 0x01}},
		{laev1.EOSSubject("victim"), []byte("{\"json\": \"not protobuf\"}")},
		{laev1.ScoresSubject("victim"), mismatched},
	} {
		_, err := h.js.Publish(ctx, m.subj, m.data)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return h.stats.Malformed.Load() == 3 }, 5*time.Second, 10*time.Millisecond)
	// Terminated, not left pending: the consumer has nothing outstanding.
	cons, err := h.js.Consumer(ctx, laev1.StreamScores, laev1.ConsumerAggregator)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, 5*time.Second, 20*time.Millisecond)
	// And the aggregator carries on with the next video.
	v := makeVideo(t, "victim", 2, false)
	sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(v.id))
	require.NoError(t, err)
	for _, s := range v.scores {
		h.publishScore(t, s)
	}
	h.publishEOS(t, v.eos)
	got, _ := waitVerdict(t, sub)
	assert.Equal(t, uint64(len(v.scores)), got.CropsScored)
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Equal(t, map[string]int{"malformed": 3}, h.hookErrors, "every terminated message reported once")
}

func TestMissingFrameImageDrawsOnHeatmap(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{EvidenceFrames: 1})
	v := makeVideo(t, "noframes", 3, true)
	sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(v.id))
	require.NoError(t, err)
	for _, s := range v.scores {
		h.publishScore(t, s)
	}
	h.publishEOS(t, v.eos)
	got, _ := waitVerdict(t, sub)
	require.Len(t, got.Evidence, 1)
	require.NotEmpty(t, got.Evidence[0].Image)
	obs, err := h.js.ObjectStore(context.Background(), laev1.BucketEvidence)
	require.NoError(t, err)
	img, err := obs.GetBytes(context.Background(), got.Evidence[0].Image)
	require.NoError(t, err)
	m, err := gocv.IMDecode(img, gocv.IMReadColor)
	require.NoError(t, err)
	defer m.Close()
	assert.Equal(t, evidence.Width, m.Cols(), "heatmap-only evidence has the same layout")
	assert.Equal(t, evidence.Height, m.Rows())
}

// TestRestartRecoversAcknowledgedScores kills the aggregator after it acknowledged a video's
// scores but before the end-of-stream: the next instance replays them from the stream.
func TestRestartRecoversAcknowledgedScores(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{})
	v := makeVideo(t, "restart", 6, true)
	for _, s := range v.scores {
		h.publishScore(t, s)
	}
	require.Eventually(t, func() bool { return h.stats.Scores.Load() == int64(len(v.scores)) }, 5*time.Second, 10*time.Millisecond)
	h.stop()

	h.stats = &Stats{}
	h.run(t, Options{}) // the default StallTimeout (60s) is not what recovers the scores
	sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(v.id))
	require.NoError(t, err)
	h.publishEOS(t, v.eos)
	got, _ := waitVerdict(t, sub)
	assert.Equal(t, uint64(len(v.scores)), got.CropsScored)
	assert.Equal(t, laev1.VerdictFake, got.Verdict)
	assert.Equal(t, int64(1), h.stats.Replays.Load())
	assert.Equal(t, int64(0), h.stats.Scores.Load(), "the second instance saw no score live")
	// Heatmaps were fetched back from the stream for the evidence.
	require.NotEmpty(t, got.Evidence)
	assert.Positive(t, got.Evidence[0].HotRegion.W)
}

// TestShutdownHandsOverHeldEndOfStream stops an aggregator that holds an incomplete video's
// end-of-stream: the next instance gets it at once (not after AckWait), replays the scores the
// first one acknowledged, and completes the video when the last score arrives.
func TestShutdownHandsOverHeldEndOfStream(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{})
	v := makeVideo(t, "handover", 5, false)
	h.publishEOS(t, v.eos)
	for _, s := range v.scores[:len(v.scores)-1] {
		h.publishScore(t, s)
	}
	require.Eventually(t, func() bool { return h.stats.Scores.Load() == int64(len(v.scores)-1) }, 5*time.Second, 10*time.Millisecond)
	h.stop()

	h.stats = &Stats{}
	h.run(t, Options{StallTimeout: time.Hour}) // only the redelivery may trigger the replay
	sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(v.id))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return h.stats.Replays.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	h.publishScore(t, v.scores[len(v.scores)-1])
	got, _ := waitVerdict(t, sub)
	assert.Equal(t, uint64(len(v.scores)), got.CropsScored)
	assert.Equal(t, laev1.VerdictReal, got.Verdict)
}

// TestGiveUpPublishesIncompleteVerdict: a crop that is never scored must not leave the caller
// waiting forever.
func TestGiveUpPublishesIncompleteVerdict(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{StallTimeout: 100 * time.Millisecond, GiveUpAfter: 300 * time.Millisecond})
	v := makeVideo(t, "stuck", 3, false)
	sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(v.id))
	require.NoError(t, err)
	for _, s := range v.scores[1:] {
		h.publishScore(t, s)
	}
	h.publishEOS(t, v.eos)
	got, _ := waitVerdict(t, sub)
	assert.Equal(t, fmt.Sprintf("incomplete: %d of %d crops scored", len(v.scores)-1, len(v.scores)), got.Error)
	assert.Equal(t, uint64(len(v.scores)-1), got.CropsScored)
	assert.Equal(t, int64(1), h.stats.Forced.Load())
}

func TestRollingVerdictsBeforeTheEnd(t *testing.T) {
	h := startServer(t)
	h.run(t, Options{RollingEvery: 50 * time.Millisecond})
	v := makeVideo(t, "live-1", 8, true)
	sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(v.id))
	require.NoError(t, err)
	half := len(v.scores) / 2
	for _, s := range v.scores[:half] {
		h.publishScore(t, s)
	}
	// Rolling verdicts follow the scores as they are folded in, until all of the first half.
	var got laev1.Verdict
	for got.CropsScored < uint64(half) {
		var data []byte
		got, data = waitVerdict(t, sub)
		testenv.RequireVerdictJSON(t, data)
		require.False(t, got.Final)
		require.LessOrEqual(t, got.CropsScored, uint64(half))
	}
	assert.Equal(t, laev1.VerdictFake, got.Verdict)
	assert.Empty(t, got.Evidence)
	// No new scores, no new rolling verdict.
	_, err = sub.NextMsg(300 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout)

	for _, s := range v.scores[half:] {
		h.publishScore(t, s)
	}
	h.publishEOS(t, v.eos)
	require.Eventually(t, func() bool { return len(h.verdictsFor(v.id)) == 1 }, 10*time.Second, 10*time.Millisecond)
	for {
		got, _ = waitVerdict(t, sub)
		if got.Final {
			break
		}
	}
	assert.Equal(t, uint64(len(v.scores)), got.CropsScored)
	assert.NotEmpty(t, got.Evidence)
	kv, err := h.js.KeyValue(context.Background(), laev1.BucketVerdicts)
	require.NoError(t, err)
	entry, err := kv.Get(context.Background(), v.id)
	require.NoError(t, err)
	var stored laev1.Verdict
	require.NoError(t, json.Unmarshal(entry.Value(), &stored))
	assert.True(t, stored.Final, "the final verdict is the one left in the bucket")
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Equal(t, []string{"live-1 fake final=true"}, h.hooked, "Hooks.Verdict sees the final verdict only")
}

func TestRunRefusesBadOptions(t *testing.T) {
	h := startServer(t)
	for _, o := range []Options{{Threshold: 0}, {Threshold: 0.5, Rule: "vote"}} {
		err := Run(context.Background(), h.js, o)
		require.Error(t, err)
	}
}

// FuzzDecode feeds arbitrary bytes to the decoders of the consumed subjects: they must return
// an error or a message whose video id matches the subject, never panic.
func FuzzDecode(f *testing.F) {
	s, err := proto.Marshal(synth.Score("vid", 3, 1, 2, 0.5, synth.Face{Box: laev1.Rect{W: 10, H: 10}, HotR: 2}, 64, 64))
	require.NoError(f, err)
	e, err := proto.Marshal(&laev1.EndOfStream{VideoId: "vid", CropsPublished: 3, Failure: "x"})
	require.NoError(f, err)
	f.Add(s)
	f.Add(e)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x03, 'v', 'i', 'd'})
	f.Fuzz(func(t *testing.T, data []byte) {
		if sc, err := DecodeScore(laev1.ScoresSubject("vid"), data); err == nil && sc.GetVideoId() != "vid" {
			t.Fatalf("score for %q accepted on vid's subject", sc.GetVideoId())
		}
		if eos, err := DecodeEOS(laev1.EOSSubject("vid"), data); err == nil && eos.GetVideoId() != "vid" {
			t.Fatalf("eos for %q accepted on vid's subject", eos.GetVideoId())
		}
	})
}

// BenchmarkVideo10k measures the service end to end for a 10k-crop video: publish 10k scores
// and the end-of-stream, until the verdict (3 evidence images) is stored and published.
func BenchmarkVideo10k(b *testing.B) {
	h := startServer(b)
	h.run(b, Options{})
	const crops = 10000
	face := synth.Face{Box: laev1.Rect{X: 300, Y: 200, W: 200, H: 200}, HotX: 16, HotY: 24, HotR: 5}
	payloads := make([][]byte, crops)
	for i := range payloads {
		s := synth.Score("bench", uint64(i/2), uint32(i%2), uint64(i%2), float32(i%97)/97, face, 1280, 720)
		data, err := proto.Marshal(s)
		require.NoError(b, err)
		payloads[i] = data
	}
	b.ResetTimer()
	for n := range b.N {
		id := fmt.Sprintf("bench-%d", n)
		sub, err := h.nc.SubscribeSync(laev1.VerdictSubject(id))
		require.NoError(b, err)
		for i, p := range payloads {
			var s laev1.FrameScore
			require.NoError(b, proto.Unmarshal(p, &s))
			s.VideoId = id
			data, _ := proto.Marshal(&s)
			if _, err := h.js.PublishAsync(laev1.ScoresSubject(id), data, jetstream.WithMsgID(laev1.ScoreMsgID(id, uint64(i/2), uint32(i%2), 0))); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-h.js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publish timed out")
		}
		h.publishEOS(b, &laev1.EndOfStream{VideoId: id, CropsPublished: crops, Faces: crops})
		v, _ := waitVerdict(b, sub)
		if v.CropsScored != crops {
			b.Fatalf("crops scored %d", v.CropsScored)
		}
		_ = sub.Unsubscribe()
	}
	b.ReportMetric(float64(b.N*crops)/b.Elapsed().Seconds(), "crops/s")
}
