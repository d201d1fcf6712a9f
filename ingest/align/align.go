// Package align turns a detected face into the canonical crop every later stage sees: eyes level
// at fixed positions, fixed scale, 256x256 BGR. Training makes its crops with this same code
// (lae crops), so the geometry constants below are a contract between ingest and the model.
package align

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"

	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/faces"
)

// Canonical crop geometry. The eyes sit a quarter of the width apart on a line 41% down, which
// leaves about 1.5 eye distances of forehead and hair above the eyes, the chin around 86% of the
// height and both cheeks with margin, so a face-swap blending mask (jaw to brows) fits inside
// with room for its feathering.
const (
	// CropSize is the side of the square crop in pixels.
	CropSize = 256
	// EyeY is the height of both eye centres as a fraction of CropSize.
	EyeY = 0.41
	// LeftEyeX and RightEyeX are the horizontal eye centres as fractions of CropSize; "left"
	// means the eye on the image's left (the subject's right eye).
	LeftEyeX  = 0.375
	RightEyeX = 0.625
)

// Where the eyes sit inside a detector box when no eye position is known. Measured on LFW
// against YuNet's eye landmarks (TestBoxEyeRatios): haar-alt boxes 0.305/0.687/0.387, default
// Haar boxes 0.300/0.677/0.382 (left x, right x, y as fractions of the box).
const (
	boxEyeY      = 0.385
	boxLeftEyeX  = 0.30
	boxRightEyeX = 0.685
)

// CanonicalEyes returns the eye centres in crop pixels for a crop of side size.
func CanonicalEyes(size int) (left, right [2]float64) {
	s := float64(size)
	return [2]float64{LeftEyeX * s, EyeY * s}, [2]float64{RightEyeX * s, EyeY * s}
}

// Crop is one aligned face.
type Crop struct {
	// Image is the CropSize x CropSize BGR crop; the caller closes it.
	Image gocv.Mat
	// CropToFrame is the row-major 2x3 affine [a b c; d e f] mapping crop pixel (u,v) to frame
	// pixel (a*u+b*v+c, d*u+e*v+f).
	CropToFrame [6]float64
	// EyesAligned is true when the alignment used eye positions (landmarks or the eye cascade),
	// false when it fell back to the face box (no rotation).
	EyesAligned bool
}

// Options configures an Aligner. Zero values take the defaults.
type Options struct {
	// Size of the square crop (default CropSize). Other sizes scale the same geometry.
	Size int
	// EyeCascade is the path of OpenCV's haarcascade_eye.xml (default: found in OpenCV's data
	// directory). Used only for faces without landmarks.
	EyeCascade string
	// NoEyeDetection skips the eye cascade: faces without landmarks are box-aligned.
	NoEyeDetection bool
}

// Aligner aligns faces. It is not safe for concurrent use (the eye cascade keeps state).
type Aligner struct {
	size   int
	eyes   gocv.CascadeClassifier
	hasEye bool
}

// New loads the eye cascade (unless disabled).
func New(o Options) (*Aligner, error) {
	a := &Aligner{size: o.Size}
	if a.size <= 0 {
		a.size = CropSize
	}
	if o.NoEyeDetection {
		return a, nil
	}
	path := o.EyeCascade
	if path == "" {
		p, err := faces.DataFile(faces.EyeCascadeFile)
		if err != nil {
			return nil, fmt.Errorf("aligner: %w", err)
		}
		path = p
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("aligner: eye cascade: %w", err)
	}
	a.eyes = gocv.NewCascadeClassifier()
	if !a.eyes.Load(path) {
		a.eyes.Close()
		return nil, fmt.Errorf("aligner: eye cascade %s: not a cascade file OpenCV can load", path)
	}
	a.hasEye = true
	return a, nil
}

// Close frees the eye cascade.
func (a *Aligner) Close() error {
	if a.hasEye {
		a.hasEye = false
		return a.eyes.Close()
	}
	return nil
}

// ErrBadFace is returned for faces that cannot be aligned (empty box, box outside the frame).
var ErrBadFace = errors.New("face box empty or outside the frame")

// Align warps the face to the canonical crop. Eyes come from the face's landmarks when present
// and plausible, else from the eye cascade inside the box, else from the box itself.
func (a *Aligner) Align(frame gocv.Mat, f faces.Face) (Crop, error) {
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return Crop{}, fmt.Errorf("align: want a non-empty 8-bit BGR frame")
	}
	bounds := image.Rect(0, 0, frame.Cols(), frame.Rows())
	box := f.Box.Intersect(bounds)
	if box.Dx() < 2 || box.Dy() < 2 {
		return Crop{}, fmt.Errorf("align %v in %v frame: %w", f.Box, bounds.Size(), ErrBadFace)
	}
	l, r, ok := landmarkEyes(f)
	if !ok && a.hasEye {
		l, r, ok = a.detectEyes(frame, box)
	}
	if !ok {
		bw, bh := float64(box.Dx()), float64(box.Dy())
		x0, y0 := float64(box.Min.X), float64(box.Min.Y)
		l = [2]float64{x0 + boxLeftEyeX*bw, y0 + boxEyeY*bh}
		r = [2]float64{x0 + boxRightEyeX*bw, y0 + boxEyeY*bh}
	}
	cl, cr := CanonicalEyes(a.size)
	toCrop := similarity(l, r, cl, cr)
	m := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer m.Close()
	for i, v := range toCrop {
		m.SetDoubleAt(i/3, i%3, v)
	}
	out := gocv.NewMat()
	gocv.WarpAffineWithParams(frame, &out, m, image.Pt(a.size, a.size), gocv.InterpolationLinear,
		gocv.BorderReplicate, color.RGBA{})
	return Crop{Image: out, CropToFrame: invert(toCrop), EyesAligned: ok}, nil
}

// SourceEyeDistance is the distance between f's eyes in source pixels, as the aligner would
// place them without the eye cascade: the detector's eye landmarks when they are plausible
// (YuNet), else the box's width times the box eye spacing. The crop puts the eyes
// (RightEyeX-LeftEyeX)*CropSize = 64 px apart, so a face is upsampled 64/SourceEyeDistance
// times to fill it. 0 for an empty box.
func SourceEyeDistance(f faces.Face) float64 {
	if l, r, ok := landmarkEyes(f); ok {
		return math.Hypot(r[0]-l[0], r[1]-l[1])
	}
	return (boxRightEyeX - boxLeftEyeX) * float64(max(0, f.Box.Dx()))
}

// landmarkEyes takes the eyes from the detector's landmarks when they are plausible: two
// distinct points inside (a margin around) the box, at least a sixth of the box apart, tilted
// less than 60 degrees.
func landmarkEyes(f faces.Face) (l, r [2]float64, ok bool) {
	if len(f.Landmarks) < 2 {
		return l, r, false
	}
	p, q := f.Landmarks[0], f.Landmarks[1]
	if p.X > q.X {
		p, q = q, p
	}
	grow := f.Box.Inset(-f.Box.Dx() / 4)
	if !p.In(grow) || !q.In(grow) {
		return l, r, false
	}
	dx, dy := float64(q.X-p.X), float64(q.Y-p.Y)
	if math.Hypot(dx, dy) < float64(f.Box.Dx())/6 || math.Abs(math.Atan2(dy, dx)) > math.Pi/3 {
		return l, r, false
	}
	return [2]float64{float64(p.X), float64(p.Y)}, [2]float64{float64(q.X), float64(q.Y)}, true
}

// detectEyes runs the eye cascade on the upper part of the face box and returns the most
// plausible left/right pair: one eye in each half of the box, at a distance of 0.25-0.65 box
// widths, tilted less than 25 degrees, of similar size, closest to where eyes usually sit.
func (a *Aligner) detectEyes(frame gocv.Mat, box image.Rectangle) (l, r [2]float64, ok bool) {
	roi := image.Rect(box.Min.X, box.Min.Y+box.Dy()/8, box.Max.X, box.Min.Y+box.Dy()*3/5)
	sub := frame.Region(roi)
	defer sub.Close()
	gray := gocv.NewMat()
	defer gray.Close()
	gocv.CvtColor(sub, &gray, gocv.ColorBGRToGray)
	// Normalize the face to a fixed width: the cascade's cost and its minimum size then do not
	// depend on how large the face is in the frame.
	const work = 160
	scale := float64(work) / float64(roi.Dx())
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(gray, &small, image.Pt(work, max(1, int(float64(roi.Dy())*scale+0.5))), 0, 0, gocv.InterpolationLinear)
	gocv.EqualizeHist(small, &small)
	rects := a.eyes.DetectMultiScaleWithParams(small, 1.1, 3, 0, image.Pt(work/12, work/12), image.Pt(work/3, work/3))
	bw := float64(box.Dx())
	midX := float64(box.Min.X) + bw/2
	type eye struct{ x, y, size float64 }
	var left, right []eye
	for _, e := range rects {
		c := eye{
			x:    float64(roi.Min.X) + (float64(e.Min.X)+float64(e.Dx())/2)/scale,
			y:    float64(roi.Min.Y) + (float64(e.Min.Y)+float64(e.Dy())/2)/scale,
			size: float64(e.Dx()) / scale,
		}
		if c.x < midX {
			left = append(left, c)
		} else {
			right = append(right, c)
		}
	}
	best := math.Inf(1)
	expL := [2]float64{float64(box.Min.X) + boxLeftEyeX*bw, float64(box.Min.Y) + boxEyeY*float64(box.Dy())}
	expR := [2]float64{float64(box.Min.X) + boxRightEyeX*bw, expL[1]}
	for _, p := range left {
		for _, q := range right {
			dx, dy := q.x-p.x, q.y-p.y
			d := math.Hypot(dx, dy)
			if d < 0.25*bw || d > 0.65*bw || math.Abs(math.Atan2(dy, dx)) > 25*math.Pi/180 {
				continue
			}
			if ratio := p.size / q.size; ratio < 0.6 || ratio > 1/0.6 {
				continue
			}
			cost := math.Hypot(p.x-expL[0], p.y-expL[1]) + math.Hypot(q.x-expR[0], q.y-expR[1])
			if cost < best {
				best, l, r, ok = cost, [2]float64{p.x, p.y}, [2]float64{q.x, q.y}, true
			}
		}
	}
	return l, r, ok
}

// similarity returns the row-major 2x3 rotation+uniform-scale+translation mapping frame points
// fl, fr onto crop points cl, cr.
func similarity(fl, fr, cl, cr [2]float64) [6]float64 {
	fdx, fdy := fr[0]-fl[0], fr[1]-fl[1]
	cdx, cdy := cr[0]-cl[0], cr[1]-cl[1]
	fn := fdx*fdx + fdy*fdy
	if fn == 0 {
		fn = 1e-9
	}
	// Complex division (cd / fd) gives scale*e^{i*theta} = a + i*b.
	a := (cdx*fdx + cdy*fdy) / fn
	b := (cdy*fdx - cdx*fdy) / fn
	tx := cl[0] - (a*fl[0] - b*fl[1])
	ty := cl[1] - (b*fl[0] + a*fl[1])
	return [6]float64{a, -b, tx, b, a, ty}
}

// invert inverts a 2x3 affine.
func invert(m [6]float64) [6]float64 {
	det := m[0]*m[4] - m[1]*m[3]
	if det == 0 {
		return [6]float64{}
	}
	ia, ib, id, ie := m[4]/det, -m[1]/det, -m[3]/det, m[0]/det
	return [6]float64{ia, ib, -(ia*m[2] + ib*m[5]), id, ie, -(id*m[2] + ie*m[5])}
}

// Apply maps point (x, y) through the 2x3 affine m.
func Apply(m [6]float64, x, y float64) (float64, float64) {
	return m[0]*x + m[1]*y + m[2], m[3]*x + m[4]*y + m[5]
}
