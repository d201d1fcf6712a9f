package testvideo

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math/rand"
	"os"
	"path/filepath"
	"strings"

	"gocv.io/x/gocv"
)

// SyntheticFace draws a size×size BGR cartoon face: hair, a skin-toned oval,
// brows, two eyes with dark pupils, a shaded nose and a mouth, softened with
// a blur so that the light/dark structure resembles a photographed face
// closely enough for OpenCV's frontal-face cascades. seed varies skin tone,
// background and small geometric details. size below 32 is raised to 32.
// OpenCV's LBP frontal-face cascade finds these reliably from about 80 px up
// (its 45 px window must fit the eyes-to-mouth region); Haar from 60 px.
// The caller owns (and must Close) the result.
func SyntheticFace(size int, seed int64) gocv.Mat {
	if size < 32 {
		size = 32
	}
	r := rand.New(rand.NewSource(seed))
	s := float64(size)
	pt := func(x, y float64) image.Point { return image.Pt(int(x*s), int(y*s)) }
	jit := func(v, amt float64) float64 { return v + (r.Float64()*2-1)*amt }

	bgGray := uint8(170 + r.Intn(60))
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(float64(bgGray), float64(bgGray), float64(bgGray), 0), size, size, gocv.MatTypeCV8UC3)

	// Skin tones from dark to light, in RGBA (gocv draws with color.RGBA
	// and maps it to BGR itself).
	tones := []color.RGBA{{224, 172, 140, 0}, {198, 134, 96, 0}, {241, 194, 160, 0}, {141, 85, 56, 0}, {232, 190, 172, 0}}
	skin := tones[r.Intn(len(tones))]
	shade := func(c color.RGBA, f float64) color.RGBA {
		return color.RGBA{uint8(float64(c.R) * f), uint8(float64(c.G) * f), uint8(float64(c.B) * f), 0}
	}
	hair := color.RGBA{uint8(20 + r.Intn(60)), uint8(15 + r.Intn(40)), uint8(10 + r.Intn(30)), 0}

	cx := jit(0.5, 0.01)
	// Hair: a dark cap behind the top of the head.
	gocv.Ellipse(&img, pt(cx, 0.42), pt(0.40, 0.40), 0, 180, 360, hair, -1)
	// Neck, then face oval.
	gocv.Rectangle(&img, image.Rectangle{Min: pt(cx-0.13, 0.78), Max: pt(cx+0.13, 1.0)}, shade(skin, 0.85), -1)
	// Face oval, darker at the rim as a rounded, lit-from-the-front face is.
	ax, ay := jit(0.33, 0.01), jit(0.42, 0.01)
	gocv.Ellipse(&img, pt(cx, 0.52), pt(ax, ay), 0, 0, 360, shade(skin, 0.8), -1)
	gocv.Ellipse(&img, pt(cx, 0.50), pt(ax*0.8, ay*0.85), 0, 0, 360, skin, -1)
	// Eye sockets are darker than cheeks and forehead: the strongest cue
	// Haar/LBP frontal-face features respond to.
	eyeY := jit(0.45, 0.01)
	for _, ex := range []float64{cx - 0.14, cx + 0.14} {
		gocv.Ellipse(&img, pt(ex, eyeY), pt(0.10, 0.06), 0, 0, 360, shade(skin, 0.6), -1)
		gocv.Ellipse(&img, pt(ex, eyeY), pt(0.065, 0.032), 0, 0, 360, color.RGBA{235, 235, 230, 0}, -1)
		gocv.Circle(&img, pt(ex, eyeY), int(0.03*s)+1, color.RGBA{60, 40, 25, 0}, -1)
		gocv.Circle(&img, pt(ex, eyeY), int(0.015*s)+1, color.RGBA{10, 10, 10, 0}, -1)
		// Brow.
		gocv.Ellipse(&img, pt(ex, eyeY-0.05), pt(0.08, 0.03), 0, 200, 340, hair, int(0.025*s)+1)
	}
	// Nose: a shaded bridge and darker nostrils.
	noseY := jit(0.60, 0.01)
	gocv.Line(&img, pt(cx-0.02, eyeY+0.04), pt(cx-0.035, noseY), shade(skin, 0.8), int(0.015*s)+1)
	gocv.Ellipse(&img, pt(cx, noseY), pt(0.06, 0.03), 0, 0, 360, shade(skin, 0.82), -1)
	for _, nx := range []float64{cx - 0.025, cx + 0.025} {
		gocv.Circle(&img, pt(nx, noseY+0.005), int(0.012*s)+1, shade(skin, 0.45), -1)
	}
	// Mouth: dark lip line with a redder lower lip.
	mouthY := jit(0.72, 0.01)
	gocv.Ellipse(&img, pt(cx, mouthY), pt(0.11, 0.035), 0, 0, 360, color.RGBA{170, 80, 80, 0}, -1)
	gocv.Line(&img, pt(cx-0.11, mouthY), pt(cx+0.11, mouthY), color.RGBA{90, 30, 30, 0}, int(0.012*s)+1)

	k := size/40*2 + 1 // odd kernel, ~2.5% of the face
	gocv.GaussianBlur(img, &img, image.Pt(k, k), 0, 0, gocv.BorderDefault)
	return img
}

// Background selects how FaceVideo fills the frame behind the faces.
type Background int

const (
	// Plain fills every frame with VideoSpec.BackgroundColor.
	Plain Background = iota
	// Noise adds Gaussian noise (stddev 20) around BackgroundColor, fresh in
	// every frame, as a camera sensor would.
	Noise
)

// Placement puts one face image in the video. The face moves linearly from
// From (top-left corner at frame 0) to To (at the last frame).
type Placement struct {
	Face gocv.Mat    // BGR face image; only read, still owned by the caller
	Size int         // width in pixels in the frame (height keeps the aspect); 0 = the image's own width
	From image.Point // top-left corner in the first frame
	To   image.Point // top-left corner in the last frame
}

// VideoSpec describes the frames FaceVideo builds.
type VideoSpec struct {
	Width, Height   int
	Frames          int
	Background      Background
	BackgroundColor color.RGBA // RGBA as everywhere in gocv drawing; zero = mid gray
	Faces           []Placement
}

// FaceVideo builds spec.Frames BGR frames with the faces drawn at their
// positions. boxes[i] lists, for frame i, each face's rectangle clipped to the
// frame (in spec.Faces order; empty when a face is entirely outside), which
// tests use as ground truth. The caller owns the frames; CloseFrames frees
// them.
func FaceVideo(spec VideoSpec) (frames []gocv.Mat, boxes [][]image.Rectangle, err error) {
	if spec.Width <= 0 || spec.Height <= 0 || spec.Frames <= 0 {
		return nil, nil, fmt.Errorf("face video: invalid size %dx%d x %d frames", spec.Width, spec.Height, spec.Frames)
	}
	bg := spec.BackgroundColor
	if bg == (color.RGBA{}) {
		bg = color.RGBA{128, 128, 128, 0}
	}
	bgScalar := gocv.NewScalar(float64(bg.B), float64(bg.G), float64(bg.R), 0)

	// Scale each face once, not per frame.
	scaled := make([]gocv.Mat, len(spec.Faces))
	defer CloseFrames(scaled)
	for i, p := range spec.Faces {
		if p.Face.Empty() || p.Face.Type() != gocv.MatTypeCV8UC3 {
			return nil, nil, fmt.Errorf("face video: face %d is empty or not BGR 8UC3", i)
		}
		w := p.Size
		if w <= 0 {
			w = p.Face.Cols()
		}
		h := max(1, p.Face.Rows()*w/p.Face.Cols())
		scaled[i] = gocv.NewMat()
		gocv.Resize(p.Face, &scaled[i], image.Pt(w, h), 0, 0, gocv.InterpolationArea)
	}

	frame := image.Rect(0, 0, spec.Width, spec.Height)
	frames = make([]gocv.Mat, 0, spec.Frames)
	boxes = make([][]image.Rectangle, spec.Frames)
	for i := 0; i < spec.Frames; i++ {
		m := gocv.NewMatWithSizeFromScalar(bgScalar, spec.Height, spec.Width, gocv.MatTypeCV8UC3)
		if spec.Background == Noise {
			noise := gocv.NewMatWithSize(spec.Height, spec.Width, gocv.MatTypeCV8UC3)
			gocv.RandN(&noise, bgScalar, gocv.NewScalar(20, 20, 20, 0))
			noise.CopyTo(&m)
			noise.Close()
		}
		boxes[i] = make([]image.Rectangle, len(spec.Faces))
		for j, p := range spec.Faces {
			at := lerp(p.From, p.To, i, spec.Frames)
			dst := image.Rectangle{Min: at, Max: at.Add(image.Pt(scaled[j].Cols(), scaled[j].Rows()))}
			vis := dst.Intersect(frame)
			if vis.Empty() {
				continue
			}
			src := scaled[j].Region(vis.Sub(at))
			roi := m.Region(vis)
			src.CopyTo(&roi)
			roi.Close()
			src.Close()
			boxes[i][j] = vis
		}
		frames = append(frames, m)
	}
	return frames, boxes, nil
}

func lerp(a, b image.Point, i, n int) image.Point {
	if n <= 1 {
		return a
	}
	return image.Pt(a.X+(b.X-a.X)*i/(n-1), a.Y+(b.Y-a.Y)*i/(n-1))
}

// CloseFrames closes every Mat in frames (nil-safe, already-closed-safe).
func CloseFrames(frames []gocv.Mat) {
	for i := range frames {
		if frames[i].Ptr() != nil {
			_ = frames[i].Close()
		}
	}
}

// ErrNoFaces is returned by LoadFaces when the directory holds no readable
// image.
var ErrNoFaces = errors.New("no face images")

// LoadFaces reads up to n face photos (.jpg/.jpeg/.png, in name order so a
// test always gets the same faces) from dir, e.g. ../shared/data/faces/lfw.
// Unreadable files are skipped. The caller owns the Mats.
func LoadFaces(dir string, n int) ([]gocv.Mat, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load faces from %s: %w", dir, err)
	}
	var faces []gocv.Mat
	for _, e := range entries { // ReadDir sorts by name
		if len(faces) >= n {
			break
		}
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".jpg", ".jpeg", ".png":
		default:
			continue
		}
		m := gocv.IMRead(filepath.Join(dir, e.Name()), gocv.IMReadColor)
		if m.Empty() {
			m.Close()
			continue
		}
		faces = append(faces, m)
	}
	if len(faces) == 0 {
		return nil, fmt.Errorf("load faces from %s: %w", dir, ErrNoFaces)
	}
	return faces, nil
}

// FacesOrSynthetic returns n face images: real photos from dir when it has
// any (fromPhotos reports true), SyntheticFace(size, seed+i) drawings otherwise, so
// a test runs with or without the shared data set. The caller owns the Mats.
func FacesOrSynthetic(dir string, n, size int, seed int64) (faces []gocv.Mat, fromPhotos bool) {
	if dir != "" {
		if f, err := LoadFaces(dir, n); err == nil {
			return f, true
		}
	}
	for i := 0; i < n; i++ {
		faces = append(faces, SyntheticFace(size, seed+int64(i)))
	}
	return faces, false
}
