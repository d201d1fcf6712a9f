package worker

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// fakeScorer stands in for the model: it fails its first bad calls (all of them when bad is
// negative), by error or, when short, by returning one prediction too few; after that it
// scores a crop from its red channel, so that each score can be traced to its crop without
// ONNX Runtime.
type fakeScorer struct {
	bad   int
	short bool

	mu         sync.Mutex
	calls      int
	failedCrop int // crops in the calls that failed
}

var errFakeScorer = errors.New("fake scorer: out of memory")

// Fake model identity and heatmap size, checked in every score.
const (
	fakeName, fakeVersion = "fake", "fake-1"
	fakeHeatW, fakeHeatH  = 4, 2
)

func (f *fakeScorer) Metadata() model.Metadata {
	return model.Metadata{Name: fakeName, Version: fakeVersion, InputSize: 64, HeatmapW: fakeHeatW, HeatmapH: fakeHeatH}
}

func (f *fakeScorer) Predict(crops []model.Crop) ([]model.Prediction, error) {
	f.mu.Lock()
	f.calls++
	failing := f.bad < 0 || f.calls <= f.bad
	if failing {
		f.failedCrop += len(crops)
	}
	f.mu.Unlock()
	if failing && !f.short {
		return nil, errFakeScorer
	}
	out := make([]model.Prediction, 0, len(crops))
	for _, c := range crops {
		out = append(out, model.Prediction{Score: fakeScore(c.BGR[2]), Heatmap: bytes.Repeat([]byte{c.BGR[2]}, fakeHeatW*fakeHeatH)})
	}
	if failing {
		out = out[:len(out)-1]
	}
	return out, nil
}

func (f *fakeScorer) failedCrops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failedCrop
}

// fakeScore is the fake's score of a crop whose first pixel has this red value: validCrop's
// red frames score 0.75 and its blue ones 0.25.
func fakeScore(red byte) float32 { return 0.25 + 0.5*float32(red)/255 }

// TestWorkerWithFakeScorer checks the delivery policy of the package comment against a model
// whose failures the test chooses: scores carry the model's values; a batch whose inference
// fails is counted through Hooks.Failed, publishes nothing, is not acked and comes back after
// NakDelay, until MaxDeliver.
func TestWorkerWithFakeScorer(t *testing.T) {
	maxDeliver := laev1.DetectorConsumerConfig().MaxDeliver
	for _, tc := range []struct {
		name  string
		bad   int  // Predict calls that fail first; -1 = every one
		short bool // fail by a short result rather than an error
	}{
		{name: "scores carry the scorer's values", bad: 0},
		{name: "failed batches come back and are scored once", bad: 2},
		{name: "a short result is a failed batch", bad: 1, short: true},
		{name: "a scorer that always fails gets MaxDeliver tries and nothing is published", bad: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testenv.StartNATS(t)
			const n = 10
			const video = "vid-fake"
			publishValid(t, s.JS, video, 0, n)
			fake := &fakeScorer{bad: tc.bad, short: tc.short}

			var mu sync.Mutex
			failed := map[string]int{} // crops by stage
			var failErrs []error
			var scored atomic.Int64
			stop := runWorker(t, s.JS, fake, Options{BatchSize: 4, NakDelay: 20 * time.Millisecond, Hooks: Hooks{
				Scored: func(k int) { scored.Add(int64(k)) },
				Failed: func(stage string, k int, err error) {
					mu.Lock()
					defer mu.Unlock()
					failed[stage] += k
					failErrs = append(failErrs, err)
				},
			}})

			if tc.bad < 0 {
				// Every delivery of every crop fails, MaxDeliver times, and then no more.
				want := n * maxDeliver
				require.Eventually(t, func() bool { return fake.failedCrops() == want }, 20*time.Second, 10*time.Millisecond)
				time.Sleep(300 * time.Millisecond) // many NakDelays: a further delivery would show
				require.NoError(t, stop())
				require.Equal(t, want, fake.failedCrops(), "no delivery after MaxDeliver")
				require.Equal(t, uint64(want), consumerInfo(t, s.JS).Delivered.Consumer)
				require.Zero(t, scoreCount(t, s.JS), "nothing published for a failed batch")
				require.Zero(t, scored.Load(), "nothing acked as scored")
			} else {
				require.Eventually(t, func() bool { return scored.Load() == n }, 20*time.Second, 10*time.Millisecond)
				require.Eventually(t, func() bool {
					ci := consumerInfo(t, s.JS)
					return ci.NumAckPending == 0 && ci.NumPending == 0
				}, 10*time.Second, 10*time.Millisecond, "every crop acked")
				require.NoError(t, stop())
				require.Equal(t, uint64(n+fake.failedCrops()), consumerInfo(t, s.JS).Delivered.Consumer,
					"each crop of a failed batch was delivered once more")
				scores := readScores(t, s.JS)
				require.Len(t, scores, n, "one score per crop, none for the failed tries")
				faces, err := s.JS.Stream(context.Background(), laev1.StreamFaces)
				require.NoError(t, err)
				for _, sc := range scores {
					var red byte = 255 // validCrop: even frames red, odd frames blue
					if sc.FrameIndex%2 == 1 {
						red = 0
					}
					require.Equal(t, video, sc.VideoId)
					require.Empty(t, sc.Error)
					require.Equal(t, fakeScore(red), sc.Score, "frame %d", sc.FrameIndex)
					require.Equal(t, fakeName, sc.Model)
					require.Equal(t, fakeVersion, sc.ModelVersion)
					require.Equal(t, uint32(fakeHeatW), sc.HeatmapWidth)
					require.Equal(t, uint32(fakeHeatH), sc.HeatmapHeight)
					require.Equal(t, bytes.Repeat([]byte{red}, fakeHeatW*fakeHeatH), sc.Heatmap)
					// The score names its crop's place in LAE_FACES, where evidence fetches it.
					raw, err := faces.GetMsg(context.Background(), sc.CropSeq)
					require.NoError(t, err, "crop of frame %d by its sequence", sc.FrameIndex)
					var fc laev1.FaceCrop
					require.NoError(t, proto.Unmarshal(raw.Data, &fc))
					require.Equal(t, sc.FrameIndex, fc.FrameIndex)
				}
			}

			mu.Lock()
			defer mu.Unlock()
			if tc.bad == 0 {
				assert.Empty(t, failed)
				return
			}
			assert.Equal(t, map[string]int{"inference": fake.failedCrops()}, failed, "every failed crop counted once, as inference")
			for _, err := range failErrs {
				if tc.short {
					assert.ErrorContains(t, err, "predictions for")
				} else {
					assert.ErrorIs(t, err, errFakeScorer)
				}
			}
		})
	}
}
