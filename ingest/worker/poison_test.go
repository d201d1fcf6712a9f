package worker

import (
	"context"
	"encoding/json"
	"errors"
	"image"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/aggregator/service"
	"github.com/lae-screening/lae/ingest/submit"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestPoisonSubmissionGetsFinalErrorVerdict: a submission whose ingest kills the process every
// time used to be dropped by JetStream after MaxDeliver deliveries, with no end-of-stream, so
// the video kept its rolling final:false verdict forever. Now the last delivery is not run: the
// worker publishes a failure end-of-stream and the aggregator stores a final "error" verdict
// with the reason. A submission that crashed once less is simply run again.
func TestPoisonSubmissionGetsFinalErrorVerdict(t *testing.T) {
	maxDeliver := laev1.IngestConsumerConfig().MaxDeliver
	require.Greater(t, maxDeliver, 1, "a retry budget to give up on")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	video := filepath.Join(t.TempDir(), "a.mp4")
	testenv.WriteClip(t, video, testenv.Clip{Width: 320, Height: 240, Frames: 10, FPS: 10,
		Size: 150, From: image.Pt(80, 40), To: image.Pt(80, 40), Face: testenv.Drawn, DrawnRes: 160, Seed: 1})

	tests := []struct {
		name string
		// crashes is how many deliveries died in an ingest process before this worker runs.
		crashes    int
		wantGaveUp bool
	}{
		{name: "no crash", crashes: 0},
		{name: "crashed once: run again", crashes: 1},
		{name: "every delivery but the last crashed: given up", crashes: maxDeliver - 1, wantGaveUp: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js := testenv.StartNATS(t).JS
			actx, stopAgg := context.WithCancel(ctx)
			aggDone := make(chan error, 1)
			go func() {
				aggDone <- service.Run(actx, js, service.Options{Threshold: 0.5, Tick: 20 * time.Millisecond, RollingEvery: time.Millisecond})
			}()
			defer func() { stopAgg(); require.NoError(t, <-aggDone) }()
			kv, err := js.KeyValue(ctx, laev1.BucketVerdicts)
			require.NoError(t, err)
			verdict := func() *laev1.Verdict {
				e, err := kv.Get(ctx, "poison")
				if err != nil {
					return nil
				}
				var v laev1.Verdict
				require.NoError(t, json.Unmarshal(e.Value(), &v))
				return &v
			}

			require.NoError(t, submit.Enqueue(ctx, js, &laev1.SubmitRequest{URL: video, VideoID: "poison"}))
			// The attempts that crashed had a crop scored: the video shows a rolling verdict.
			score, err := proto.Marshal(&laev1.FrameScore{VideoId: "poison", FrameIndex: 1_000_000, Score: 0.9})
			require.NoError(t, err)
			_, err = js.Publish(ctx, laev1.ScoresSubject("poison"), score)
			require.NoError(t, err)
			require.Eventually(t, func() bool { v := verdict(); return v != nil && !v.Final }, 10*time.Second, 10*time.Millisecond)

			// Each crash is an ingest process that died holding the work item: the server hands
			// it out again, after AckWait (a nak does the same at once).
			cons, err := js.CreateOrUpdateConsumer(ctx, laev1.StreamIngest, laev1.IngestConsumerConfig())
			require.NoError(t, err)
			for i := range tc.crashes {
				batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
				require.NoError(t, err)
				m := <-batch.Messages()
				require.NotNil(t, m, "delivery %d", i+1)
				md, err := m.Metadata()
				require.NoError(t, err)
				require.Equal(t, uint64(i+1), md.NumDelivered)
				require.NoError(t, m.Nak())
			}

			var mu sync.Mutex
			errs := map[string]int{}
			var doneErr error
			hooks := Hooks{
				Error: func(kind string) { mu.Lock(); errs[kind]++; mu.Unlock() },
				Done:  func(_ string, _ *laev1.EndOfStream, err error) { mu.Lock(); doneErr = err; mu.Unlock() },
			}
			wctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- Run(wctx, js, Options{DefaultSampleFPS: 5, Hooks: hooks}) }()

			scores, err := js.Stream(ctx, laev1.StreamScores)
			require.NoError(t, err)
			var eos laev1.EndOfStream
			require.Eventually(t, func() bool {
				m, err := scores.GetLastMsgForSubject(ctx, laev1.EOSSubject("poison"))
				return err == nil && proto.Unmarshal(m.Data, &eos) == nil
			}, time.Minute, 20*time.Millisecond)
			// Settled: nothing pending, nothing left in the work queue.
			require.Eventually(t, func() bool {
				info, err := cons.Info(ctx)
				return err == nil && info.NumPending == 0 && info.NumAckPending == 0
			}, 30*time.Second, 20*time.Millisecond)
			ingest, err := js.Stream(ctx, laev1.StreamIngest)
			require.NoError(t, err)
			info, err := ingest.Info(ctx)
			require.NoError(t, err)
			assert.Zero(t, info.State.Msgs, "work queue emptied")
			stop()
			require.NoError(t, <-done)

			mu.Lock()
			defer mu.Unlock()
			if !tc.wantGaveUp {
				assert.Empty(t, eos.Failure, "run again, and ingested")
				assert.Positive(t, eos.FramesSampled)
				assert.NotContains(t, errs, "gave_up")
				assert.NoError(t, doneErr)
				return
			}
			assert.Contains(t, eos.Failure, "ingest gave up")
			assert.Zero(t, eos.FramesSampled, "the last delivery is not run")
			assert.Equal(t, map[string]int{"gave_up": 1}, errs)
			assert.True(t, errors.Is(doneErr, ErrGaveUp), "Done gets ErrGaveUp, got %v", doneErr)
			var v *laev1.Verdict
			require.Eventually(t, func() bool { v = verdict(); return v != nil && v.Final }, 10*time.Second, 10*time.Millisecond,
				"a final verdict replaces the rolling one")
			assert.Equal(t, laev1.VerdictError, v.Verdict)
			assert.Contains(t, v.Error, "ingest gave up")
		})
	}
}
