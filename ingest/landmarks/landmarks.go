// Package landmarks runs MediaPipe Face Mesh (468 3-D face landmarks and a face-presence score)
// through ONNX Runtime on aligned face crops (ingest/align), and returns the points in the
// crop's pixel coordinates. The model is embedded in the binary (models/LICENSE: origin and
// Apache-2.0 license). Training uses the points for exact face-hull and part masks.
//
// The mesh model expects a square crop of "the face box x 1.5, centred on the box", rotated
// upright, at 192x192. An aligned crop is already upright and at a fixed scale, so that region
// is a constant of the canonical crop (Region*), measured by TestMeshRegion.
package landmarks

import (
	_ "embed"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/internal/ortenv"
)

// embeddedMesh is MediaPipe's face_landmark.tflite converted to ONNX (models/LICENSE).
//
//go:embed models/face_mesh_468.onnx
var embeddedMesh []byte

// Model geometry and tensor names.
const (
	// NumPoints is the number of mesh landmarks.
	NumPoints = 468
	// InputSize is the side of the model's square RGB input.
	InputSize = 192

	inputName  = "input"
	pointsName = "out0"
	scoreName  = "out1"
)

// The square region of the canonical crop (ingest/align) given to the mesh, as fractions of the
// crop side: the whole crop. MediaPipe feeds the mesh a face box x 1.5, centred on the box, and
// TestMeshRegion measures both candidates for that box in the 256x256 canonical crop (60 LFW
// faces and the photos/deepface portraits): YuNet's boxes are centred at (0.504, 0.496) with a
// long side of 0.719 (x 1.5 = 1.08; they are taller than MediaPipe's, hairline included), and
// MediaPipe's own tracking rule (1.5 x the long side of the mesh's landmark bounding box) has
// its fixed point at 0.99. Against dlib's 68 landmarks (TestMeshAgreesWithDlib68) the whole crop
// is as good as either (normalised mean error 0.087 of the eye distance, against 0.092 for the
// YuNet box x 1.5). Align's geometry is fixed, so these are too.
const (
	RegionCX   = 0.5
	RegionCY   = 0.5
	RegionSide = 1.0
)

// Region returns the square mesh region of a crop of side size, in crop pixels.
func Region(size int) (x0, y0, side float64) {
	return region(size, [3]float64{RegionCX, RegionCY, RegionSide})
}

// region is Region for a region given as centre x, centre y and side fractions.
func region(size int, r [3]float64) (x0, y0, side float64) {
	s := float64(size)
	side = r[2] * s
	return r[0]*s - side/2, r[1]*s - side/2, side
}

// Contours of the mesh, as point indices in drawing order (from MediaPipe's face_mesh
// connections). "Right" and "left" are the subject's: SubjectRightEye is on the image's left
// in a non-mirrored crop (align.CanonicalEyes' first eye).
var (
	FaceOval = []int{10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
		400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109}
	SubjectRightEye = []int{33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246}
	SubjectLeftEye  = []int{263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466}
)

// Options configures Open. Zero values take the defaults.
type Options struct {
	// LibPath of libonnxruntime; empty resolves it with ortenv.FindLibrary ($LAE_ORT_LIB, then
	// .cache/ort/ above the working directory or the executable).
	LibPath string
	// Threads is ONNX Runtime's intra-op thread count (default 1: one crop is small, and the
	// callers run beside decoding and detection).
	Threads int
}

// Result is the mesh of one crop.
type Result struct {
	// Points are the 468 landmarks: x, y in crop pixels, z (depth, negative towards the camera)
	// in the same pixel scale, relative to the face's centre.
	Points [NumPoints][3]float32
	// Score is the face-presence probability in [0,1] (the sigmoid of the model's logit).
	Score float32
}

// XY returns the points' x, y.
func (r *Result) XY() [][2]float32 {
	out := make([][2]float32, NumPoints)
	for i, p := range r.Points {
		out[i] = [2]float32{p[0], p[1]}
	}
	return out
}

// Bounds returns the points' bounding box in crop pixels.
func (r *Result) Bounds() (x1, y1, x2, y2 float64) {
	x1, y1, x2, y2 = math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, p := range r.Points {
		x1, x2 = math.Min(x1, float64(p[0])), math.Max(x2, float64(p[0]))
		y1, y2 = math.Min(y1, float64(p[1])), math.Max(y2, float64(p[1]))
	}
	return x1, y1, x2, y2
}

// Mean returns the mean x, y of the points with the given indices.
func (r *Result) Mean(idx []int) (x, y float64) {
	for _, i := range idx {
		x += float64(r.Points[i][0])
		y += float64(r.Points[i][1])
	}
	n := float64(len(idx))
	return x / n, y / n
}

// Mesh is a loaded face mesh model. It is not safe for concurrent use (its tensors are reused
// between runs); open one per goroutine.
type Mesh struct {
	sess   *ort.AdvancedSession
	in     *ort.Tensor[float32]
	points *ort.Tensor[float32]
	score  *ort.Tensor[float32]
	warp   gocv.Mat // 2x3 CV64F crop -> input affine
	input  gocv.Mat // 192x192 BGR region
	mats   bool     // warp and input are allocated
	// region is the crop region fed to the model (centre x, centre y, side as fractions of the
	// crop side): Region* by default; tests try others.
	region [3]float64
}

// Open creates the ONNX Runtime session of the embedded model.
func Open(o Options) (*Mesh, error) {
	return open(o, embeddedMesh)
}

func open(o Options, model []byte) (_ *Mesh, err error) {
	if _, err := ortenv.FindAndInit(o.LibPath); err != nil {
		return nil, fmt.Errorf("face mesh: %w", err)
	}
	threads := o.Threads
	if threads <= 0 {
		threads = 1
	}
	m := &Mesh{region: [3]float64{RegionCX, RegionCY, RegionSide}}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if m.in, err = ort.NewEmptyTensor[float32](ort.NewShape(1, InputSize, InputSize, 3)); err != nil {
		return nil, fmt.Errorf("face mesh: input tensor: %w", err)
	}
	if m.points, err = ort.NewEmptyTensor[float32](ort.NewShape(1, 1, 1, 3*NumPoints)); err != nil {
		return nil, fmt.Errorf("face mesh: output tensor: %w", err)
	}
	if m.score, err = ort.NewEmptyTensor[float32](ort.NewShape(1, 1, 1, 1)); err != nil {
		return nil, fmt.Errorf("face mesh: output tensor: %w", err)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("face mesh: session options: %w", err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("face mesh: %d threads: %w", threads, err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("face mesh: inter-op threads: %w", err)
	}
	if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		return nil, fmt.Errorf("face mesh: disable spinning: %w", err)
	}
	m.sess, err = ort.NewAdvancedSessionWithONNXData(model, []string{inputName}, []string{pointsName, scoreName},
		[]ort.Value{m.in}, []ort.Value{m.points, m.score}, so)
	if err != nil {
		return nil, fmt.Errorf("face mesh: create session: %w", err)
	}
	m.warp = gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	m.input = gocv.NewMat()
	m.mats = true
	return m, nil
}

// errBadCrop is returned for crops the mesh cannot read.
var errBadCrop = errors.New("want a square, non-empty 8-bit BGR crop")

// Run computes the mesh of an aligned crop (square 8-bit BGR, the canonical geometry of
// ingest/align at any size). The points are in the crop's pixels.
func (m *Mesh) Run(crop gocv.Mat) (Result, error) {
	if m.sess == nil {
		return Result{}, errors.New("face mesh: closed")
	}
	if crop.Empty() || crop.Type() != gocv.MatTypeCV8UC3 || crop.Rows() != crop.Cols() {
		return Result{}, fmt.Errorf("face mesh: %w", errBadCrop)
	}
	size := crop.Cols()
	x0, y0, side := region(size, m.region)
	k := InputSize / side // input px per crop px
	if x0 == 0 && y0 == 0 && side == float64(size) {
		// The whole crop: area averaging, no aliasing from the downscale.
		gocv.Resize(crop, &m.input, image.Pt(InputSize, InputSize), 0, 0, gocv.InterpolationArea)
	} else {
		// A region past the crop's edge: the crop itself was warped with replicated borders, so
		// replicate here too rather than add a black frame.
		for i, v := range [6]float64{k, 0, -x0 * k, 0, k, -y0 * k} {
			m.warp.SetDoubleAt(i/3, i%3, v)
		}
		gocv.WarpAffineWithParams(crop, &m.input, m.warp, image.Pt(InputSize, InputSize),
			gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
	}
	bgr, err := m.input.DataPtrUint8()
	if err != nil || len(bgr) != 3*InputSize*InputSize {
		return Result{}, fmt.Errorf("face mesh: region of %d bytes: %v", len(bgr), err)
	}
	in := m.in.GetData()
	const inv = 1.0 / 255
	for i := 0; i < len(bgr); i += 3 {
		in[i], in[i+1], in[i+2] = float32(bgr[i+2])*inv, float32(bgr[i+1])*inv, float32(bgr[i])*inv
	}
	if err := m.sess.Run(); err != nil {
		return Result{}, fmt.Errorf("face mesh: run: %w", err)
	}
	var r Result
	p := m.points.GetData()
	ik := float32(1 / k)
	fx0, fy0 := float32(x0), float32(y0)
	for i := range r.Points {
		r.Points[i] = [3]float32{fx0 + p[3*i]*ik, fy0 + p[3*i+1]*ik, p[3*i+2] * ik}
	}
	r.Score = float32(1 / (1 + math.Exp(-float64(m.score.GetData()[0]))))
	return r, nil
}

// Close frees the session, its tensors and Mats. Closing twice is a no-op.
func (m *Mesh) Close() error {
	var errs []error
	if m.sess != nil {
		errs = append(errs, m.sess.Destroy())
		m.sess = nil
	}
	for _, t := range []**ort.Tensor[float32]{&m.in, &m.points, &m.score} {
		if *t != nil {
			errs = append(errs, (*t).Destroy())
			*t = nil
		}
	}
	if m.mats {
		errs = append(errs, m.warp.Close(), m.input.Close())
		m.mats = false
	}
	return errors.Join(errs...)
}
