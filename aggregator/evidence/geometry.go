// Package evidence says where in a frame the detector saw a forgery and draws it.
//
// For one scored face crop (laev1.FrameScore) it computes two rectangles in frame pixel
// coordinates — the face detector's box and the heatmap's hot region —, names the face part
// under the heatmap's peak (Part, PartAt) and renders an evidence image (Render): the aligned
// crop enlarged beside the same crop under the heatmap with a colour legend, a thumbnail of
// the frame with the face box, and a caption with score, time, track, frame and part.
//
// # Hot region
//
// The detector's interpretation map (heatmap) is 8-bit over the whole aligned crop (0..255 for
// 0..1, not normalised per crop). A pixel is hot when its value is at least
// max(lo + ceil((peak-lo)/2), otsu+1), where lo and peak are the map's minimum and maximum and
// otsu is Otsu's threshold of the map's histogram: Otsu separates a bimodal map well, but on a
// map that is nearly flat it splits noise and marks half the face; requiring the upper half of
// the map's range as well keeps the region to what is clearly hotter than the rest.
//
// A map whose values span fewer than MinContrast levels (of 255) has no hot region: the model
// did not single out any part of the face (a flat map, common on real faces and from weakly
// trained models), and the bounding box of 8-bit rounding noise would point a reviewer at
// nothing. The hot region is otherwise the bounding box of the largest 8-connected set of hot
// pixels (ties: the larger sum of values, then the first in raster order): one compact region
// is what a person can check, and isolated hot specks elsewhere are usually texture noise.
// No hot region is reported as the zero rectangle (w = h = 0).
//
// # Mapping to the frame
//
// Heatmap pixels are scaled to crop pixels (crop_width/heatmap_width horizontally,
// crop_height/heatmap_height vertically), then the four corners of the crop-pixel rectangle go
// through the crop→frame affine (FrameScore.crop_to_frame, which may rotate: the crop is aligned
// on the eyes) and the frame rectangle is the bounding box of the four mapped corners, clipped
// to the frame. The face box is FrameScore.box clipped to the frame. When the frame size is
// unknown (0) no clipping is done.
package evidence

import (
	"errors"
	"fmt"
	"image"
	"math"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Location is where one scored face and its hot region lie in the frame.
type Location struct {
	// Face is the face detector's box, clipped to the frame.
	Face laev1.Rect
	// Hot is the hot region's bounding box in frame pixels, clipped to the frame; zero when
	// the heatmap has no hot pixel or is absent.
	Hot laev1.Rect
	// HotHeat is the hot region in heatmap pixels (empty when none).
	HotHeat image.Rectangle
}

// ErrNoHeatmap says a score carries no heatmap.
var ErrNoHeatmap = errors.New("score has no heatmap")

// Affine is a 2x3 row-major affine [a b c; d e f]: (x,y) = (a*u + b*v + c, d*u + e*v + f).
type Affine [6]float64

// ParseAffine checks a crop_to_frame field.
func ParseAffine(m []float64) (Affine, error) {
	var a Affine
	if len(m) != 6 {
		return a, fmt.Errorf("crop_to_frame has %d values, want 6", len(m))
	}
	for i, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return a, fmt.Errorf("crop_to_frame[%d] is %v", i, v)
		}
		a[i] = v
	}
	return a, nil
}

// Apply maps one crop point to the frame.
func (a Affine) Apply(u, v float64) (float64, float64) {
	return a[0]*u + a[1]*v + a[2], a[3]*u + a[4]*v + a[5]
}

// MapRect maps a crop-pixel rectangle to the bounding box of its four transformed corners.
func (a Affine) MapRect(r laev1.Rect) laev1.Rect {
	xs, ys := [4]float64{}, [4]float64{}
	for i, c := range [4][2]float64{{r.X, r.Y}, {r.X + r.W, r.Y}, {r.X, r.Y + r.H}, {r.X + r.W, r.Y + r.H}} {
		xs[i], ys[i] = a.Apply(c[0], c[1])
	}
	x0, x1 := minmax(xs)
	y0, y1 := minmax(ys)
	return laev1.Rect{X: x0, Y: y0, W: x1 - x0, H: y1 - y0}
}

func minmax(v [4]float64) (float64, float64) {
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

// Clip intersects r with the frame [0,w]x[0,h]; w or h of 0 means unknown and leaves r as is.
// A rectangle wholly outside the frame becomes empty at the nearest edge.
//
// A rectangle with a non-finite coordinate (a malformed box or an affine that overflows)
// becomes the zero rectangle: it could not be located, and NaN cannot even be written as JSON.
func Clip(r laev1.Rect, w, h uint32) laev1.Rect {
	for _, v := range [4]float64{r.X, r.Y, r.W, r.H} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return laev1.Rect{}
		}
	}
	if w == 0 || h == 0 {
		return r
	}
	x0 := clamp(r.X, 0, float64(w))
	y0 := clamp(r.Y, 0, float64(h))
	x1 := clamp(r.X+r.W, 0, float64(w))
	y1 := clamp(r.Y+r.H, 0, float64(h))
	return laev1.Rect{X: x0, Y: y0, W: math.Max(0, x1-x0), H: math.Max(0, y1-y0)}
}

func clamp(v, lo, hi float64) float64 { return math.Min(hi, math.Max(lo, v)) }

// Otsu returns Otsu's threshold of an 8-bit histogram: the t that maximises the between-class
// variance of {v <= t} and {v > t}. A histogram with a single value returns 0.
func Otsu(hist *[256]int) int {
	total, sum := 0, 0.0
	for v, n := range hist {
		total += n
		sum += float64(v * n)
	}
	if total == 0 {
		return 0
	}
	best, bestT := -1.0, 0
	wB, sumB := 0, 0.0
	for t := range 256 {
		wB += hist[t]
		if wB == 0 {
			continue
		}
		wF := total - wB
		if wF == 0 {
			break
		}
		sumB += float64(t * hist[t])
		mB := sumB / float64(wB)
		mF := (sum - sumB) / float64(wF)
		between := float64(wB) * float64(wF) * (mB - mF) * (mB - mF)
		if between > best {
			best, bestT = between, t
		}
	}
	return bestT
}

// MinContrast is the smallest range of heatmap values (peak - minimum, of 255) that can have a
// hot region: 1/8 of the scale, well above the map's 8-bit rounding and texture noise.
const MinContrast = 32

// HotThreshold is the value at or above which a heatmap pixel is hot (see the package comment);
// 0 means the map has no hot pixel.
func HotThreshold(heat []byte) int {
	var hist [256]int
	lo, peak := 255, 0
	for _, v := range heat {
		hist[v]++
		lo, peak = min(lo, int(v)), max(peak, int(v))
	}
	if peak-lo < MinContrast {
		return 0
	}
	return max(lo+(peak-lo+1)/2, Otsu(&hist)+1)
}

// HotRegion returns the bounding box, in heatmap pixels, of the largest 8-connected component
// of hot pixels of a w×h row-major 8-bit heatmap; ok is false when no pixel is hot.
func HotRegion(heat []byte, w, h int) (r image.Rectangle, ok bool, err error) {
	if w <= 0 || h <= 0 || len(heat) != w*h {
		return r, false, fmt.Errorf("heatmap is %d bytes, want %dx%d", len(heat), w, h)
	}
	t := HotThreshold(heat)
	if t == 0 {
		return r, false, nil
	}
	// Label components with an explicit stack (no recursion: a 512x512 all-hot map would be a
	// deep recursion) over a visited bitmap.
	seen := make([]bool, len(heat))
	stack := make([]int, 0, 64)
	bestN, bestSum := 0, 0
	for start := range heat {
		if seen[start] || int(heat[start]) < t {
			continue
		}
		seen[start] = true
		stack = append(stack[:0], start)
		n, sum := 0, 0
		box := image.Rect(start%w, start/w, start%w+1, start/w+1)
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			x, y := p%w, p/w
			n++
			sum += int(heat[p])
			box = box.Union(image.Rect(x, y, x+1, y+1))
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					nx, ny := x+dx, y+dy
					if nx < 0 || ny < 0 || nx >= w || ny >= h {
						continue
					}
					q := ny*w + nx
					if !seen[q] && int(heat[q]) >= t {
						seen[q] = true
						stack = append(stack, q)
					}
				}
			}
		}
		if n > bestN || (n == bestN && sum > bestSum) {
			bestN, bestSum, r = n, sum, box
		}
	}
	return r, true, nil
}

// cropScale is crop pixels per heatmap pixel along each axis.
func cropScale(s *laev1.FrameScore) (kx, ky float64, err error) {
	hw, hh := s.GetHeatmapWidth(), s.GetHeatmapHeight()
	cw, ch := s.GetCropWidth(), s.GetCropHeight()
	if hw == 0 || hh == 0 {
		return 0, 0, ErrNoHeatmap
	}
	if cw == 0 || ch == 0 {
		return 0, 0, fmt.Errorf("crop size %dx%d unknown", cw, ch)
	}
	return float64(cw) / float64(hw), float64(ch) / float64(hh), nil
}

// Locate computes the face box and the hot region of one score in frame pixels. A score
// without a heatmap gets the face box and a zero hot region and no error; a malformed heatmap
// or affine is an error (the face box is still returned).
func Locate(s *laev1.FrameScore) (Location, error) {
	var loc Location
	if b := s.GetBox(); b != nil {
		loc.Face = Clip(laev1.Rect{X: float64(b.GetX()), Y: float64(b.GetY()), W: float64(b.GetW()), H: float64(b.GetH())},
			s.GetFrameWidth(), s.GetFrameHeight())
	}
	kx, ky, err := cropScale(s)
	if errors.Is(err, ErrNoHeatmap) {
		return loc, nil
	}
	if err != nil {
		return loc, fmt.Errorf("locate hot region of frame %d face %d: %w", s.GetFrameIndex(), s.GetFaceIndex(), err)
	}
	aff, err := ParseAffine(s.GetCropToFrame())
	if err != nil {
		return loc, fmt.Errorf("locate hot region of frame %d face %d: %w", s.GetFrameIndex(), s.GetFaceIndex(), err)
	}
	hot, ok, err := HotRegion(s.GetHeatmap(), int(s.GetHeatmapWidth()), int(s.GetHeatmapHeight()))
	if err != nil {
		return loc, fmt.Errorf("locate hot region of frame %d face %d: %w", s.GetFrameIndex(), s.GetFaceIndex(), err)
	}
	if !ok {
		return loc, nil
	}
	loc.HotHeat = hot
	inCrop := laev1.Rect{X: float64(hot.Min.X) * kx, Y: float64(hot.Min.Y) * ky, W: float64(hot.Dx()) * kx, H: float64(hot.Dy()) * ky}
	loc.Hot = Clip(aff.MapRect(inCrop), s.GetFrameWidth(), s.GetFrameHeight())
	return loc, nil
}
