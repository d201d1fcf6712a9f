package source_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/testenv"
)

// BenchmarkDecode measures decode throughput on the real clips, reported as
// decoded frames per second: every frame (each converted to a BGR Mat) and
// sampled at the default 5 fps (all frames decoded, few converted).
func BenchmarkDecode(b *testing.B) {
	for _, rel := range []string{"videos/hamilton_short.mp4", "videos/crowd_1080p.mp4"} {
		for _, fps := range []float64{0, 5} {
			name := filepath.Base(rel) + "/all"
			if fps > 0 {
				name = filepath.Base(rel) + "/5fps"
			}
			b.Run(name, func(b *testing.B) {
				path := testenv.SharedData(b, rel)
				ctx := context.Background()
				var decoded, sampled uint64
				var elapsed time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					s, err := source.Open(ctx, path, source.Options{SampleFPS: fps})
					require.NoError(b, err)
					for {
						f, err := s.Next(ctx)
						if errors.Is(err, io.EOF) {
							break
						}
						require.NoError(b, err)
						f.Image.Close()
					}
					st := s.Stats()
					s.Close()
					elapsed += time.Since(start)
					decoded += st.FramesDecoded
					sampled += st.FramesSampled
				}
				b.ReportMetric(float64(decoded)/elapsed.Seconds(), "frames/s")
				b.ReportMetric(float64(sampled)/elapsed.Seconds(), "sampled/s")
			})
		}
	}
}
