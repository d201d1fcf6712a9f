package pipeline

import (
	"testing"

	"google.golang.org/protobuf/proto"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// BenchmarkCropEncoding is ingest's per-crop message work: a 256x256 BGR crop (the aligned crop
// every face becomes) marshalled into its FaceCrop message.
func BenchmarkCropEncoding(b *testing.B) {
	msg := &laev1.FaceCrop{VideoId: "bench", FrameIndex: 798, SampleIndex: 133, PtsSeconds: 26.6, TrackId: 1,
		Box: &laev1.Box{X: 492, Y: 200, W: 282, H: 394}, CropToFrame: []float64{1.5, 0, 440, 0, 1.5, 180},
		Width: 256, Height: 256, Format: laev1.PixelFormat_PIXEL_FORMAT_BGR8, Pixels: make([]byte, 256*256*3),
		DetectorConfidence: 0.93, FrameWidth: 1280, FrameHeight: 720, EyesAligned: true, SourceScale: 0.67}
	b.SetBytes(int64(len(msg.Pixels)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(msg); err != nil {
			b.Fatal(err)
		}
	}
}
