package source_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lae-screening/lae/ingest/source"
)

// FuzzOpenBytes feeds arbitrary bytes to the demuxers and decoders through a
// temporary file: Open and Next may fail but must never panic, hang or leak
// a Mat.
func FuzzOpenBytes(f *testing.F) {
	clip, err := os.ReadFile(makeClip(f, f.TempDir(), 32, 32, 3, 3))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(clip)
	f.Add(clip[:len(clip)/2])
	f.Add(clip[:64])
	f.Add([]byte{})
	f.Add([]byte("<!DOCTYPE html><html><body>not a video</body></html>"))
	f.Add(wavBytes()[:512])
	f.Add([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nseg.ts\n#EXT-X-ENDLIST\n"))
	f.Add([]byte("ffconcat version 1.0\nfile clip.mp4\n"))
	f.Add([]byte{0x1a, 0x45, 0xdf, 0xa3, 0x01, 0, 0, 0, 0, 0, 0, 0x1f, 0x42, 0x86, 0x81, 0x01}) // EBML (Matroska) header start

	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "in.mp4")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Short timeouts: a mutated HLS playlist without #EXT-X-ENDLIST is a
		// "live" stream that FFmpeg polls until the open timeout ends it.
		s, err := source.Open(ctx, p, source.Options{OpenTimeout: time.Second, ReadTimeout: time.Second, MaxDuration: 10 * time.Second})
		if err != nil {
			return
		}
		defer s.Close()
		// A bounded number of frames: a crafted header can claim hours.
		for i := 0; i < 50; i++ {
			fr, err := s.Next(ctx)
			if err != nil {
				break
			}
			if fr.Image.Empty() {
				t.Fatalf("frame %d has an empty image", i)
			}
			fr.Image.Close()
		}
		_ = s.Info()
		_ = s.Stats()
	})
}
