package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/asticode/go-astiav"
	"gocv.io/x/gocv"
)

// This file turns a decoded picture into the one a player shows: square pixels (the sample
// aspect ratio), at most Options.MaxFrameSide on its longer side, and upright (the display
// matrix). Face detection, alignment, crops and evidence frames all work on Next's frames, so
// this is the one place where geometry has to be right.

const (
	// DefaultMaxFrameSide is the longer side above which frames are downscaled when
	// Options.MaxFrameSide is 0: 4096 lets every 4K format (UHD 3840x2160, DCI 4096x2160)
	// through untouched and halves 8K, whose faces stay far larger than any crop needs.
	DefaultMaxFrameSide = 4096
	// DefaultMaxFramePixels is the coded picture size (pixels) above which a stream is
	// refused when Options.MaxFramePixels is 0: 36 MP admits every 8K format (7680x4320,
	// 8192x4320). The decoder holds several pictures of the coded size (references,
	// reordering, one per frame thread) that no later downscaling can shrink; at 8000x8000
	// that alone was about 700 MB.
	DefaultMaxFramePixels = 36_000_000
	// maxSARStretch bounds the sample aspect ratio honoured: real anamorphic formats are
	// within 1:2..4:1, anything beyond 16 is a broken or hostile header and is ignored.
	maxSARStretch = 16
)

// ErrFrameTooLarge is returned (wrapped) when the coded pictures are larger than
// Options.MaxFramePixels.
var ErrFrameTooLarge = errors.New("frame too large")

// checkPixels refuses a coded picture of w×h above limit pixels (limit <= 0: no limit).
func checkPixels(w, h, limit int) error {
	if limit > 0 && int64(w)*int64(h) > int64(limit) {
		mp := func(n float64) string { return strconv.FormatFloat(n/1e6, 'g', -1, 64) + " MP" }
		return fmt.Errorf("%w: %dx%d is %s, the limit is %s", ErrFrameTooLarge,
			w, h, mp(float64(w)*float64(h)), mp(float64(limit)))
	}
	return nil
}

// scaledSize is the size, still in coded orientation, that a w×h coded picture with sample
// aspect ratio sar is converted to. Non-square pixels are made square by stretching the
// picture's short pixel dimension (a 2:1 SAR doubles the width, 1:2 doubles the height)
// rather than squeezing the long one, so no coded detail is thrown away; then the picture is
// shrunk, keeping its shape, until its longer side is at most maxSide (maxSide <= 0: no
// limit).
func scaledSize(w, h int, sar astiav.Rational, maxSide int) (int, int) {
	fw, fh := float64(w), float64(h)
	if sar.Num() > 0 && sar.Den() > 0 {
		r := float64(sar.Num()) / float64(sar.Den())
		switch {
		case r > maxSARStretch || r < 1.0/maxSARStretch:
		case r > 1:
			fw *= r
		case r < 1:
			fh /= r
		}
	}
	if long := math.Max(fw, fh); maxSide > 0 && long > float64(maxSide) {
		s := float64(maxSide) / long
		fw, fh = fw*s, fh*s
	}
	return max(1, int(math.Round(fw))), max(1, int(math.Round(fh)))
}

// orientation is one of the eight ways of showing a picture that a display matrix can ask
// for once it is snapped to quarter turns: turned clockwise by quarter quarter-turns, then,
// when mirror, flipped left-right.
type orientation struct {
	quarter int // clockwise quarter turns, 0..3
	mirror  bool
}

// degrees is the clockwise turn in degrees.
func (o orientation) degrees() int { return o.quarter * 90 }

// swapsSides reports whether the turn exchanges width and height.
func (o orientation) swapsSides() bool { return o.quarter%2 == 1 }

// orientationOf reads FFmpeg's display matrix (AV_PKT_DATA_DISPLAYMATRIX, what MP4's tkhd
// matrix and phones' "rotate" tag become): nine native-endian int32 in rows
// (a b u)(c d v)(x y w), a..d in 16.16 fixed point, mapping a coded pixel (p, q) (q pointing
// down) to the displayed (a·p + c·q + x, b·p + d·q + y). A phone held upright stores
// a=0 b=1 c=-1 d=0: the top row of the sensor becomes the right column, a 90° clockwise turn.
// Only the signs of the dominant diagonal or anti-diagonal are used: the matrix's scale is
// already the stream's sample aspect ratio (FFmpeg's mov demuxer derives it from there), and a
// turn that is not a multiple of 90° (never seen from a camera) is snapped to the nearest
// one, which keeps faces within what the detector tolerates. A missing, short or degenerate
// matrix means upright.
func orientationOf(sd []byte) orientation {
	if len(sd) < 9*4 {
		return orientation{}
	}
	at := func(i int) float64 { return float64(int32(binary.NativeEndian.Uint32(sd[4*i:]))) }
	a, b, c, d := at(0), at(1), at(3), at(4)
	// The linear part as rows of the map (p, q) -> (p', q'), signs only.
	var m [2][2]int
	if math.Abs(a)+math.Abs(d) >= math.Abs(b)+math.Abs(c) {
		m = [2][2]int{{sign(a), 0}, {0, sign(d)}}
	} else {
		m = [2][2]int{{0, sign(c)}, {sign(b), 0}}
	}
	det := m[0][0]*m[1][1] - m[0][1]*m[1][0]
	if det == 0 {
		return orientation{}
	}
	var o orientation
	if det < 0 {
		// A mirror image: undo the left-right flip (negate p') to leave a pure turn.
		o.mirror = true
		m[0][0], m[0][1] = -m[0][0], -m[0][1]
	}
	// The four clockwise turns in these coordinates: (p, q) -> (p, q), (-q, p), (-p, -q), (q, -p).
	switch {
	case m[0][0] == 1:
		o.quarter = 0
	case m[0][1] == -1:
		o.quarter = 1
	case m[0][0] == -1:
		o.quarter = 2
	default:
		o.quarter = 3
	}
	return o
}

func sign(v float64) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// apply returns img shown as o asks, closing img when it makes a new Mat. Each case is one
// OpenCV pass except a mirrored 270° turn, which takes two.
func (o orientation) apply(img gocv.Mat) (gocv.Mat, error) {
	var steps []func(src gocv.Mat, dst *gocv.Mat)
	rotate := func(code gocv.RotateFlag) func(gocv.Mat, *gocv.Mat) {
		return func(src gocv.Mat, dst *gocv.Mat) { gocv.Rotate(src, dst, code) }
	}
	flip := func(code int) func(gocv.Mat, *gocv.Mat) {
		return func(src gocv.Mat, dst *gocv.Mat) { gocv.Flip(src, dst, code) }
	}
	switch o {
	case orientation{}:
		return img, nil
	case orientation{quarter: 1}:
		steps = append(steps, rotate(gocv.Rotate90Clockwise))
	case orientation{quarter: 2}:
		steps = append(steps, rotate(gocv.Rotate180Clockwise))
	case orientation{quarter: 3}:
		steps = append(steps, rotate(gocv.Rotate90CounterClockwise))
	case orientation{mirror: true}:
		steps = append(steps, flip(1))
	case orientation{quarter: 1, mirror: true}:
		// Turning (p, q) to (-q, p) and mirroring gives (q, p): a transpose.
		steps = append(steps, gocv.Transpose)
	case orientation{quarter: 2, mirror: true}:
		// (-p, -q) mirrored is (p, -q): upside down only.
		steps = append(steps, flip(0))
	case orientation{quarter: 3, mirror: true}:
		// (q, -p) mirrored is (-q, -p): a transpose turned half way.
		steps = append(steps, gocv.Transpose, flip(-1))
	default:
		img.Close()
		return gocv.Mat{}, fmt.Errorf("invalid orientation %+v", o)
	}
	for _, step := range steps {
		dst := gocv.NewMat()
		step(img, &dst)
		img.Close()
		if dst.Empty() {
			dst.Close()
			return gocv.Mat{}, fmt.Errorf("turn frame %d° (mirror %v): OpenCV returned no image", o.degrees(), o.mirror)
		}
		img = dst
	}
	return img, nil
}
