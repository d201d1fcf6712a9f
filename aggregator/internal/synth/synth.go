// Package synth makes synthetic detector output (scores with heatmaps and crop→frame affines)
// and frame images for the aggregator's tests and benchmarks, with known geometry so a test
// can check where the evidence lands.
package synth

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"math"

	"gocv.io/x/gocv"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// CropSize is the side of the synthetic aligned crops, like the ingest stage's default.
const CropSize = 256

// HeatSize is the side of the synthetic heatmaps (the model's map is coarser than the crop).
const HeatSize = 32

// Face places one face in a frame and says where its heatmap is hot.
type Face struct {
	// Box is the face box in frame pixels; the crop covers exactly this box.
	Box laev1.Rect
	// AngleDeg rotates the crop about the box centre (an eye-aligned crop of a tilted head).
	AngleDeg float64
	// HotX, HotY is the hot spot's centre in heatmap pixels; HotR its radius (0 = no hot spot:
	// a flat, cold map).
	HotX, HotY, HotR float64
}

// Affine is the crop→frame transform of f: scale the CropSize square onto the box, rotated by
// AngleDeg about the box centre.
func (f Face) Affine() []float64 {
	s := f.Box.W / CropSize
	th := f.AngleDeg * math.Pi / 180
	c, sn := math.Cos(th)*s, math.Sin(th)*s
	cx, cy := f.Box.X+f.Box.W/2, f.Box.Y+f.Box.H/2
	// (x,y) = R*S*((u,v) - crop centre) + box centre.
	h := float64(CropSize) / 2
	return []float64{c, -sn, cx - c*h + sn*h, sn, c, cy - sn*h - c*h}
}

// Heatmap is f's HeatSize×HeatSize map: a cone of value 255 at the hot spot falling to a low
// noise floor at radius HotR.
func (f Face) Heatmap() []byte {
	out := make([]byte, HeatSize*HeatSize)
	for y := range HeatSize {
		for x := range HeatSize {
			v := 10 + (x*7+y*13)%9 // deterministic low "texture" so the map is not flat
			if f.HotR > 0 {
				d := math.Hypot(float64(x)-f.HotX, float64(y)-f.HotY)
				if d < f.HotR {
					v = max(v, int(255*(1-d/f.HotR)))
				}
			}
			out[y*HeatSize+x] = byte(v)
		}
	}
	return out
}

// Score is the detector's output for face f of frame (frame, face index faceIdx) of video id.
func Score(id string, frame uint64, faceIdx uint32, track uint64, score float32, f Face, frameW, frameH uint32) *laev1.FrameScore {
	return &laev1.FrameScore{
		VideoId: id, FrameIndex: frame, SampleIndex: frame, PtsSeconds: float64(frame) / 25,
		FaceIndex: faceIdx, TrackId: track,
		Box:         &laev1.Box{X: float32(f.Box.X), Y: float32(f.Box.Y), W: float32(f.Box.W), H: float32(f.Box.H)},
		CropToFrame: f.Affine(), CropWidth: CropSize, CropHeight: CropSize,
		FrameWidth: frameW, FrameHeight: frameH, Score: score,
		HeatmapWidth: HeatSize, HeatmapHeight: HeatSize, Heatmap: f.Heatmap(),
		Model: "lae-synthetic", ModelVersion: "test",
	}
}

// FrameJPEG draws a w×h frame with a pale ellipse per face box, downscaled by scale (1 = full
// size; ingest publishes smaller frame images), and returns it as JPEG.
func FrameJPEG(w, h int, scale float64, faces ...laev1.Rect) ([]byte, error) {
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(70, 90, 60, 0), h, w, gocv.MatTypeCV8UC3)
	defer img.Close()
	for _, b := range faces {
		c := image.Pt(int(b.X+b.W/2), int(b.Y+b.H/2))
		gocv.Ellipse(&img, c, image.Pt(int(b.W/2.4), int(b.H/2)), 0, 0, 360, color.RGBA{R: 220, G: 190, B: 170}, -1)
	}
	out := img
	if scale != 1 {
		small := gocv.NewMat()
		defer small.Close()
		gocv.Resize(img, &small, image.Pt(int(float64(w)*scale), int(float64(h)*scale)), 0, 0, gocv.InterpolationArea)
		out = small
	}
	buf, err := gocv.IMEncode(gocv.JPEGFileExt, out)
	if err != nil {
		return nil, fmt.Errorf("encode synthetic frame: %w", err)
	}
	defer buf.Close()
	return bytes.Clone(buf.GetBytes()), nil
}
