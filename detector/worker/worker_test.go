package worker

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// The worker tests run the real embedded nats-server and the real ONNX Runtime with the tiny
// fixture model (detector/testdata/gen_tiny.py): score = sigmoid(0.5*mean(R_norm - B_norm)),
// so a red crop scores high and a blue one low, which lets the tests check that each score
// belongs to its crop.

func loadTiny(t testing.TB) *model.Model {
	t.Helper()
	m, err := model.Load(model.Options{Path: filepath.Join("..", "testdata", "tiny.onnx")})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// tinyScore is the fixture's score for a solid BGR colour (its mean/std are ImageNet's).
func tinyScore(b, r byte) float64 {
	nr := (float64(r)/255 - 0.485) / 0.229
	nb := (float64(b)/255 - 0.406) / 0.225
	return 1 / (1 + math.Exp(-0.5*(nr-nb)))
}

func solidBGR(w, h int, b, g, r byte) []byte { return bytes.Repeat([]byte{b, g, r}, w*h) }

func encode(t testing.TB, ext string, w, h int, b, g, r byte) []byte {
	t.Helper()
	mat, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, solidBGR(w, h, b, g, r))
	require.NoError(t, err)
	defer mat.Close()
	buf, err := gocv.IMEncode(gocv.FileExt(ext), mat)
	require.NoError(t, err)
	defer buf.Close()
	return bytes.Clone(buf.GetBytes())
}

// validCrop is a well-formed crop of frame i: even frames red, odd frames blue.
func validCrop(video string, i int) *laev1.FaceCrop {
	var b, r byte = 0, 255
	if i%2 == 1 {
		b, r = 255, 0
	}
	return &laev1.FaceCrop{
		VideoId: video, FrameIndex: uint64(i), SampleIndex: uint64(i / 2), PtsSeconds: float64(i) / 5,
		FaceIndex: 0, TrackId: uint64(100 + i%3), Box: &laev1.Box{X: 10, Y: 20, W: 30, H: 40},
		CropToFrame: []float64{0.5, 0, 10, 0, 0.5, 20}, Width: 96, Height: 96,
		Format: laev1.PixelFormat_PIXEL_FORMAT_BGR8, Pixels: solidBGR(96, 96, b, 0, r),
		FrameWidth: 640, FrameHeight: 360, DetectorConfidence: 0.9,
	}
}

func publishCrop(t testing.TB, js jetstream.JetStream, video string, frame uint64, face uint32, data []byte) {
	t.Helper()
	msg := &nats.Msg{Subject: laev1.FacesSubject(video), Data: data}
	_, err := js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(laev1.CropMsgID(video, frame, face)))
	require.NoError(t, err)
}

func publishValid(t testing.TB, js jetstream.JetStream, video string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		c := validCrop(video, i)
		data, err := proto.Marshal(c)
		require.NoError(t, err)
		publishCrop(t, js, video, c.FrameIndex, c.FaceIndex, data)
	}
}

// readScores returns every FrameScore stored under lae.scores.>.
func readScores(t testing.TB, js jetstream.JetStream) []*laev1.FrameScore {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, laev1.StreamScores)
	require.NoError(t, err)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(laev1.SubjectScoresPrefix+">"))
	require.NoError(t, err)
	var out []*laev1.FrameScore
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // a deleted or EOS slot
		}
		var s laev1.FrameScore
		require.NoError(t, proto.Unmarshal(raw.Data, &s))
		out = append(out, &s)
	}
	return out
}

func scoreCount(t testing.TB, js jetstream.JetStream) uint64 {
	st, err := js.Stream(context.Background(), laev1.StreamScores)
	require.NoError(t, err)
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

func consumerInfo(t testing.TB, js jetstream.JetStream) *jetstream.ConsumerInfo {
	c, err := js.Consumer(context.Background(), laev1.StreamFaces, laev1.ConsumerDetector)
	require.NoError(t, err)
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	return info
}

// runWorker starts Run in the background and returns a stop function that cancels it and
// returns Run's error.
func runWorker(t testing.TB, js jetstream.JetStream, m Scorer, o Options) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, js, m, o) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("worker did not stop within 10s")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestWorkerScoresEveryCropOnce(t *testing.T) {
	s := testenv.StartNATS(t)
	m := loadTiny(t)
	const video = "vid-mixed"
	publishValid(t, s.JS, video, 0, 20)

	// Compressed crops: ingest may send JPEG or PNG instead of raw BGR.
	jpg := validCrop(video, 20) // red
	jpg.Format, jpg.Pixels, jpg.Width, jpg.Height = laev1.PixelFormat_PIXEL_FORMAT_JPEG, encode(t, ".jpg", 80, 80, 0, 0, 255), 0, 0
	png := validCrop(video, 21) // blue
	png.Format, png.Pixels = laev1.PixelFormat_PIXEL_FORMAT_PNG, encode(t, ".png", 96, 96, 255, 0, 0)
	for _, c := range []*laev1.FaceCrop{jpg, png} {
		data, err := proto.Marshal(c)
		require.NoError(t, err)
		publishCrop(t, s.JS, video, c.FrameIndex, c.FaceIndex, data)
	}
	const valid = 22

	// Malformed crops whose identity is recoverable: each must get an error score.
	malformed := map[uint64]string{}
	add := func(frame uint64, want string, mutate func(c *laev1.FaceCrop)) {
		c := validCrop(video, int(frame))
		mutate(c)
		data, err := proto.Marshal(c)
		require.NoError(t, err)
		publishCrop(t, s.JS, video, frame, 0, data)
		malformed[frame] = want
	}
	add(30, "bytes of BGR", func(c *laev1.FaceCrop) { c.Pixels = c.Pixels[:100] })
	add(31, "unsupported pixel format", func(c *laev1.FaceCrop) { c.Format = laev1.PixelFormat_PIXEL_FORMAT_UNSPECIFIED })
	add(32, "unsupported pixel format", func(c *laev1.FaceCrop) { c.Format = 42 })
	add(33, "crop size 0x0", func(c *laev1.FaceCrop) { c.Width, c.Height, c.Pixels = 0, 0, nil })
	add(34, "JPEG", func(c *laev1.FaceCrop) {
		c.Format, c.Pixels = laev1.PixelFormat_PIXEL_FORMAT_JPEG, []byte("not a jpeg")
	})
	add(35, "PNG", func(c *laev1.FaceCrop) { c.Format, c.Pixels = laev1.PixelFormat_PIXEL_FORMAT_PNG, nil })
	// Not protobuf at all: identity comes from the crop's message id.
	publishCrop(t, s.JS, video, 36, 0, []byte{0xff, 0xff, 0xff, 0x01, 0x02})
	malformed[36] = "malformed crop"
	// Unrecoverable: not protobuf and no message id; only terminated.
	_, err := s.JS.Publish(context.Background(), laev1.FacesSubject(video), []byte{0x0a, 0xff})
	require.NoError(t, err)
	const unrecoverable = 1
	total := valid + len(malformed) + unrecoverable

	var mu sync.Mutex
	var reasons []string
	var scored atomic.Int64
	stop := runWorker(t, s.JS, m, Options{BatchSize: 8, Hooks: Hooks{
		Malformed: func(r string) { mu.Lock(); reasons = append(reasons, r); mu.Unlock() },
		Scored:    func(n int) { scored.Add(int64(n)) },
	}})

	want := uint64(valid + len(malformed))
	require.Eventually(t, func() bool { return scoreCount(t, s.JS) >= want && scored.Load() == valid },
		20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		ci := consumerInfo(t, s.JS)
		return ci.NumAckPending == 0 && ci.NumPending == 0
	}, 10*time.Second, 20*time.Millisecond, "every crop acked or terminated")
	require.NoError(t, stop())

	scores := readScores(t, s.JS)
	require.Len(t, scores, int(want), "exactly one score per recoverable crop")
	seen := map[uint64]bool{}
	for _, sc := range scores {
		require.False(t, seen[sc.FrameIndex], "frame %d scored twice", sc.FrameIndex)
		seen[sc.FrameIndex] = true
		require.Equal(t, video, sc.VideoId)
		require.Equal(t, "tiny-fixture", sc.Model)
		require.Equal(t, "tiny-fixture-1", sc.ModelVersion)
		require.Zero(t, sc.Revision)
		if reason, bad := malformed[sc.FrameIndex]; bad {
			require.Contains(t, sc.Error, reason, "frame %d", sc.FrameIndex)
			require.Empty(t, sc.Heatmap)
			continue
		}
		require.Empty(t, sc.Error, "frame %d", sc.FrameIndex)
		i := int(sc.FrameIndex)
		var b, r byte = 0, 255
		if i%2 == 1 {
			b, r = 255, 0
		}
		require.InDelta(t, tinyScore(b, r), sc.Score, 0.02, "frame %d score belongs to its crop", i)
		require.Equal(t, uint32(16), sc.HeatmapWidth)
		require.Equal(t, uint32(16), sc.HeatmapHeight)
		require.Len(t, sc.Heatmap, 256)
		if i < 20 {
			// Fields copied from the crop.
			require.Equal(t, uint64(i/2), sc.SampleIndex)
			require.InDelta(t, float64(i)/5, sc.PtsSeconds, 1e-9)
			require.Equal(t, uint64(100+i%3), sc.TrackId)
			require.True(t, proto.Equal(&laev1.Box{X: 10, Y: 20, W: 30, H: 40}, sc.Box))
			require.Equal(t, []float64{0.5, 0, 10, 0, 0.5, 20}, sc.CropToFrame)
			require.Equal(t, uint32(96), sc.CropWidth)
			require.Equal(t, uint32(640), sc.FrameWidth)
			require.Equal(t, uint32(360), sc.FrameHeight)
		}
	}
	require.Equal(t, uint32(80), findFrame(scores, 20).CropWidth, "decoded JPEG size is reported")
	mu.Lock()
	require.Len(t, reasons, len(malformed)+unrecoverable, "every malformed crop terminated once: %v", reasons)
	mu.Unlock()
	ci := consumerInfo(t, s.JS)
	require.Equal(t, uint64(total), ci.Delivered.Stream)
	require.Zero(t, ci.NumRedelivered)
}

func findFrame(scores []*laev1.FrameScore, frame uint64) *laev1.FrameScore {
	for _, s := range scores {
		if s.FrameIndex == frame {
			return s
		}
	}
	return &laev1.FrameScore{}
}

func TestWorkerBatchesUnderLoad(t *testing.T) {
	s := testenv.StartNATS(t)
	m := loadTiny(t)
	const n = 200
	publishValid(t, s.JS, "vid-load", 0, n)
	var mu sync.Mutex
	var sizes []int
	var scored atomic.Int64
	stop := runWorker(t, s.JS, m, Options{BatchSize: 16, BatchTimeout: 50 * time.Millisecond, Hooks: Hooks{
		Batch:  func(size int, _ time.Duration) { mu.Lock(); sizes = append(sizes, size); mu.Unlock() },
		Scored: func(k int) { scored.Add(int64(k)) },
	}})
	require.Eventually(t, func() bool { return scored.Load() == n }, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, stop())
	mu.Lock()
	defer mu.Unlock()
	maxSize, sum := 0, 0
	for _, b := range sizes {
		require.LessOrEqual(t, b, 16)
		maxSize = max(maxSize, b)
		sum += b
	}
	t.Logf("%d batches, sizes %v", len(sizes), sizes)
	require.Equal(t, n, sum)
	require.Greater(t, maxSize, 1, "crops waiting together are batched")
	require.Less(t, len(sizes), n/2)
	require.Equal(t, uint64(n), scoreCount(t, s.JS))
}

// A worker cancelled mid-way finishes what it holds; a second worker does the rest; no crop
// is scored twice and none is lost.
func TestWorkerGracefulShutdownAndHandover(t *testing.T) {
	s := testenv.StartNATS(t)
	m := loadTiny(t)
	const n = 300
	publishValid(t, s.JS, "vid-stop", 0, n)
	var first atomic.Int64
	stop := runWorker(t, s.JS, m, Options{BatchSize: 8, Hooks: Hooks{Scored: func(k int) { first.Add(int64(k)) }}})
	require.Eventually(t, func() bool { return first.Load() >= 40 }, 20*time.Second, 5*time.Millisecond)
	require.NoError(t, stop(), "graceful stop returns nil")
	stoppedAt := first.Load()
	require.Less(t, stoppedAt, int64(n), "stopped before the end (make n larger if this fails)")
	require.Eventually(t, func() bool { return consumerInfo(t, s.JS).NumAckPending == 0 }, 5*time.Second, 10*time.Millisecond,
		"the stopped worker acknowledged everything it held")
	require.Equal(t, uint64(stoppedAt), scoreCount(t, s.JS))

	var second atomic.Int64
	stop2 := runWorker(t, s.JS, m, Options{BatchSize: 8, Hooks: Hooks{Scored: func(k int) { second.Add(int64(k)) }}})
	require.Eventually(t, func() bool { return first.Load()+second.Load() == n }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, stop2())
	require.Equal(t, uint64(n), scoreCount(t, s.JS))
	seen := map[uint64]bool{}
	for _, sc := range readScores(t, s.JS) {
		require.False(t, seen[sc.FrameIndex], "frame %d twice", sc.FrameIndex)
		seen[sc.FrameIndex] = true
	}
	require.Len(t, seen, n)
}

// With AbandonPullOnStop a stop does not wait for the idle pull request to run out (here a
// minute, far beyond runWorker's stop bound, which a worker without it hits).
func TestWorkerAbandonsIdlePullOnStop(t *testing.T) {
	s := testenv.StartNATS(t)
	stop := runWorker(t, s.JS, loadTiny(t), Options{AbandonPullOnStop: true, idleWait: time.Minute})
	require.Eventually(t, func() bool {
		c, err := s.JS.Consumer(context.Background(), laev1.StreamFaces, laev1.ConsumerDetector)
		if err != nil {
			return false // the worker has not created it yet
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumWaiting > 0
	}, 20*time.Second, 10*time.Millisecond, "the worker waits on a pull request")
	require.NoError(t, stop())
}

// A worker that dies after publishing scores but before acking: the crops come back after
// AckWait, the next worker scores them again, and JetStream keeps one score per crop.
func TestWorkerCrashRedeliversWithoutDuplicates(t *testing.T) {
	s := testenv.StartNATS(t)
	m := loadTiny(t)
	cfg := laev1.DetectorConsumerConfig()
	cfg.AckWait = time.Second // the test cannot wait the production 30s
	_, err := s.JS.CreateConsumer(context.Background(), laev1.StreamFaces, cfg)
	require.NoError(t, err)
	const n = 64
	publishValid(t, s.JS, "vid-crash", 0, n)

	var batches atomic.Int64
	var inferred atomic.Int64
	crashing := Options{BatchSize: 8, Workers: 1, Hooks: Hooks{Batch: func(k int, _ time.Duration) { inferred.Add(int64(k)) }}}
	crashing.beforeAck = func() error {
		if batches.Add(1) == 2 {
			return errCrash
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.ErrorIs(t, Run(ctx, s.JS, m, crashing), errCrash)
	crashedAt := scoreCount(t, s.JS)
	require.Equal(t, uint64(16), crashedAt, "two batches published, the second never acked")

	var scored atomic.Int64
	stop := runWorker(t, s.JS, m, Options{BatchSize: 8, Hooks: Hooks{
		Batch:  func(k int, _ time.Duration) { inferred.Add(int64(k)) },
		Scored: func(k int) { scored.Add(int64(k)) },
	}})
	require.Eventually(t, func() bool { return scored.Load() == n-8 }, 20*time.Second, 20*time.Millisecond,
		"the second worker acks everything the first did not")
	require.Eventually(t, func() bool { return consumerInfo(t, s.JS).NumAckPending == 0 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())
	require.Equal(t, uint64(n), scoreCount(t, s.JS), "re-scored crops were de-duplicated")
	require.Greater(t, inferred.Load(), int64(n), "the crashed batch was scored again")
}

// When inference fails the crops are not acked: they come back and a healthy worker scores them.
func TestWorkerInferenceFailureRedelivers(t *testing.T) {
	s := testenv.StartNATS(t)
	const n = 12
	publishValid(t, s.JS, "vid-fail", 0, n)
	broken := loadTiny(t)
	require.NoError(t, broken.Close()) // Predict now fails: "model is closed"
	var failed atomic.Int64
	stop := runWorker(t, s.JS, broken, Options{BatchSize: 4, NakDelay: 50 * time.Millisecond, Hooks: Hooks{
		Failed: func(stage string, k int, _ error) {
			if stage == "inference" {
				failed.Add(int64(k))
			}
		},
	}})
	require.Eventually(t, func() bool { return failed.Load() >= n }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())
	require.Zero(t, scoreCount(t, s.JS), "nothing published for a failed batch")

	var scored atomic.Int64
	stop2 := runWorker(t, s.JS, loadTiny(t), Options{BatchSize: 4, Hooks: Hooks{Scored: func(k int) { scored.Add(int64(k)) }}})
	require.Eventually(t, func() bool { return scored.Load() == n }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, stop2())
	for _, sc := range readScores(t, s.JS) {
		require.Empty(t, sc.Error)
	}
	require.Equal(t, uint64(n), scoreCount(t, s.JS))
}

func TestRunFailsClearlyWithoutStream(t *testing.T) {
	s := testenv.StartNATS(t)
	require.NoError(t, s.JS.DeleteStream(context.Background(), laev1.StreamFaces))
	err := Run(context.Background(), s.JS, loadTiny(t), Options{})
	require.ErrorContains(t, err, laev1.StreamFaces)
	require.ErrorContains(t, Run(context.Background(), s.JS, nil, Options{}), "no model")
	require.ErrorContains(t, Run(context.Background(), s.JS, (*model.Model)(nil), Options{}), "no model",
		"a nil model in the interface is still no model")
}

// Rescoring: a given consumer (here over one video's archived crops) replaces the shared one,
// and scores carry the new revision, so they are not de-duplicated against revision 0.
func TestWorkerWithOwnConsumerAndRevision(t *testing.T) {
	s := testenv.StartNATS(t)
	m := loadTiny(t)
	publishValid(t, s.JS, "vid-a", 0, 6)
	publishValid(t, s.JS, "vid-b", 0, 4)
	ctx := context.Background()
	cons, err := s.JS.CreateConsumer(ctx, laev1.StreamFaces, jetstream.ConsumerConfig{
		AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: laev1.FacesSubject("vid-a"),
		InactiveThreshold: time.Minute,
	})
	require.NoError(t, err)
	var scored atomic.Int64
	stop := runWorker(t, s.JS, m, Options{Consumer: cons, Revision: 1, Hooks: Hooks{Scored: func(n int) { scored.Add(int64(n)) }}})
	require.Eventually(t, func() bool { return scored.Load() == 6 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())
	scores := readScores(t, s.JS)
	require.Len(t, scores, 6, "only vid-a's crops")
	for _, sc := range scores {
		require.Equal(t, "vid-a", sc.VideoId)
		require.Equal(t, uint32(1), sc.Revision)
	}
	_, err = s.JS.Consumer(ctx, laev1.StreamFaces, laev1.ConsumerDetector)
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "the shared consumer was not touched")
}
