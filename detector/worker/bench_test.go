package worker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// benchModelPath picks $LAE_BENCH_MODEL, else the shipped model, else the tiny fixture (which
// then measures the NATS and preprocessing overhead alone).
func benchModelPath(b *testing.B) string {
	if p := os.Getenv("LAE_BENCH_MODEL"); p != "" {
		return p
	}
	return testenv.ServingModel(b)
}

// BenchmarkEndToEnd measures crops/s through the embedded nats-server: 256x256 BGR crops (what
// ingest publishes) are published, pulled, batched, scored, their scores stored and acked.
// Crops go in rounds of 512 and the faces stream is purged between rounds, so that a long run
// stays inside the memory stream's limit.
func BenchmarkEndToEnd(b *testing.B) {
	path := benchModelPath(b)
	for _, bs := range []int{1, 8, 16, 32} {
		b.Run(fmt.Sprintf("batch%d", bs), func(b *testing.B) {
			s := testenv.StartNATS(b)
			m, err := model.Load(model.Options{Path: path})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			b.Logf("model %s (%s)", path, m.Metadata().Version)
			var scored atomic.Int64
			stop := runWorker(b, s.JS, m, Options{BatchSize: bs, Hooks: Hooks{Scored: func(n int) { scored.Add(int64(n)) }}})
			defer func() {
				if err := stop(); err != nil {
					b.Error(err)
				}
			}()

			rng := rand.New(rand.NewPCG(1, 2))
			payloads := make([][]byte, 16)
			for i := range payloads {
				c := validCrop("bench", i)
				c.Width, c.Height = 256, 256
				c.Pixels = make([]byte, 256*256*3)
				for k := range c.Pixels {
					c.Pixels[k] = byte(rng.IntN(256))
				}
				payloads[i], _ = proto.Marshal(c)
			}
			ctx := context.Background()
			faces, err := s.JS.Stream(ctx, laev1.StreamFaces)
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			b.ResetTimer()
			cpu0 := testenv.CPUTime()
			const round = 512
			for done := 0; done < b.N; {
				n := min(round, b.N-done)
				target := scored.Load() + int64(n)
				for i := 0; i < n; i++ {
					frame := uint64(done + i)
					msg := &nats.Msg{Subject: laev1.FacesSubject("bench"), Data: payloads[i%len(payloads)]}
					if _, err := s.JS.PublishMsgAsync(msg, jetstream.WithMsgID(laev1.CropMsgID("bench", frame, 0))); err != nil {
						b.Fatal(err)
					}
				}
				deadline := time.Now().Add(5 * time.Minute)
				for scored.Load() < target {
					if time.Now().After(deadline) {
						b.Fatalf("only %d of %d crops scored", scored.Load(), target)
					}
					time.Sleep(time.Millisecond) // benchmark polling, not a test assertion
				}
				done += n
				if os.Getenv("LAE_BENCH_DEBUG") != "" {
					b.Logf("round done at %v, scored %d", time.Since(t0), scored.Load())
				}
				b.StopTimer()
				if err := faces.Purge(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			// The worker's stop (deferred) is not part of the measure.
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "crops/s")
			// Process CPU: worker, ONNX Runtime, the embedded nats-server and the publisher.
			if cpu := testenv.CPUTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(b.N)/cpu.Seconds(), "crops/cpu-s")
			}
		})
	}
}
