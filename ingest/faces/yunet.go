package faces

import (
	_ "embed"
	"fmt"
	"image"
	"math"
	"os"
	"sort"

	"gocv.io/x/gocv"
)

// embeddedYuNet is YuNet-s with a fixed 640x640 input, from ShiqiYu/libfacedetection.train
// (origin, commit and license in models/LICENSE). Embedded so that bin/lae finds its default
// detector from any working directory.
//
//go:embed models/yunet_s_640_640.onnx
var embeddedYuNet []byte

// EmbeddedYuNet returns the bytes of the embedded YuNet model (a copy).
func EmbeddedYuNet() []byte { return append([]byte(nil), embeddedYuNet...) }

// YuNetOptions configures the YuNet detector. Zero values take the defaults.
type YuNetOptions struct {
	// Path of the YuNet ONNX file (2023mar layout: cls/obj/bbox/kps outputs at strides
	// 8/16/32) with a fixed input size (e.g. yunet_s_640_640.onnx; OpenCV 4.6 cannot import
	// the dynamic exports). Empty, with no Model, means the embedded model.
	Path string
	// Model is the ONNX file's content, used instead of reading Path (which then only names
	// the model in errors).
	Model []byte
	// ScoreThreshold drops weaker candidates (default 0.8: no unmatched detections on dlib's
	// annotated photos at full recall; OpenCV's FaceDetectorYN default 0.9 loses 2 of 43 faces).
	ScoreThreshold float32
	// NMSThreshold is the IoU above which overlapping candidates are suppressed (default 0.3).
	NMSThreshold float32
	// TopK caps candidates before NMS (default 5000).
	TopK int
}

// YuNet is a Detector running the YuNet face detector through OpenCV's dnn module. gocv 0.32
// has no FaceDetectorYN binding, so the raw outputs are decoded here the way OpenCV's
// FaceDetectorYN (4.8+) decodes them.
type YuNet struct {
	o   YuNetOptions
	net gocv.Net
	in  image.Point // the export's input size (width, height): the largest input used

	// resized and padded are reused across frames (a detector serves one goroutine).
	resized, padded gocv.Mat
}

var yunetStrides = [3]int{8, 16, 32}

// yunetOutputs are the output names in stride order: cls, obj, bbox, kps for each stride.
var yunetOutputs = []string{
	"cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32",
	"bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32",
}

// NewYuNet checks and loads the model. Frames are letterboxed to the model's input size.
func NewYuNet(o YuNetOptions) (*YuNet, error) {
	if o.ScoreThreshold <= 0 {
		o.ScoreThreshold = 0.8
	}
	if o.NMSThreshold <= 0 {
		o.NMSThreshold = 0.3
	}
	if o.TopK <= 0 {
		o.TopK = 5000
	}
	buf := o.Model
	switch {
	case buf != nil:
		if o.Path == "" {
			o.Path = "(in memory)"
		}
	case o.Path == "":
		buf, o.Path = embeddedYuNet, "(embedded yunet_s_640_640.onnx)"
	default:
		var err error
		if buf, err = os.ReadFile(o.Path); err != nil {
			return nil, fmt.Errorf("yunet model: %w", err)
		}
	}
	// Validate the file before OpenCV sees it: OpenCV's ONNX importer throws C++ exceptions on
	// malformed input, which gocv does not catch (the process would abort).
	shape, err := onnxInputShape(buf)
	if err != nil || len(shape) != 4 {
		return nil, fmt.Errorf("yunet model %s: want an ONNX model with one NCHW input, got shape %v (%v)", o.Path, shape, err)
	}
	outs, err := onnxOutputNames(buf)
	if err != nil {
		return nil, fmt.Errorf("yunet model %s: %w", o.Path, err)
	}
	have := map[string]bool{}
	for _, n := range outs {
		have[n] = true
	}
	for _, n := range yunetOutputs {
		if !have[n] {
			return nil, fmt.Errorf("yunet model %s: output %s missing (want the 2023mar YuNet layout)", o.Path, n)
		}
	}
	for _, d := range shape {
		if d <= 0 {
			// OpenCV 4.6's importer aborts the process on the dynamic exports' Shape nodes.
			return nil, fmt.Errorf("yunet model %s: input shape %v is dynamic; OpenCV 4.6 needs a fixed-size export such as yunet_s_640_640.onnx", o.Path, shape)
		}
	}
	net, err := gocv.ReadNetFromONNXBytes(buf)
	if err != nil || net.Empty() {
		if err == nil {
			net.Close()
		}
		return nil, fmt.Errorf("yunet model %s: OpenCV cannot load it as ONNX: %v", o.Path, err)
	}
	in := image.Pt(int(shape[3]), int(shape[2]))
	if stride := yunetStrides[2]; in.X%stride != 0 || in.Y%stride != 0 {
		net.Close()
		return nil, fmt.Errorf("yunet model %s: input %dx%d is not a multiple of %d", o.Path, in.X, in.Y, stride)
	}
	y := &YuNet{o: o, net: net, in: in, resized: gocv.NewMat(), padded: gocv.NewMat()}
	if err := y.probe(); err != nil {
		_ = y.Close()
		return nil, fmt.Errorf("yunet model %s: %w", o.Path, err)
	}
	return y, nil
}

// probe runs the net once on a blank image so a model that is not a YuNet fails at Open, not on
// the first frame.
func (y *YuNet) probe() error {
	blank := gocv.NewMatWithSize(64, 64, gocv.MatTypeCV8UC3)
	defer blank.Close()
	_, err := y.Detect(blank)
	return err
}

// Detect runs the network on img resized to fit the input (aspect kept, zero padding at the
// right and bottom), decodes and suppresses candidates, and maps them back to img.
func (y *YuNet) Detect(img gocv.Mat) ([]Face, error) {
	if err := checkBGR(img); err != nil {
		return nil, fmt.Errorf("yunet detect: %w", err)
	}
	w, h := img.Cols(), img.Rows()
	scale := math.Min(float64(y.in.X)/float64(w), float64(y.in.Y)/float64(h)) // network px per frame px
	rw, rh := max(1, int(math.Round(float64(w)*scale))), max(1, int(math.Round(float64(h)*scale)))
	rw, rh = min(rw, y.in.X), min(rh, y.in.Y)
	// The network is fully convolutional: it runs on any multiple of its largest stride, so the
	// frame is padded to that, not to the export's full square (a 16:9 frame costs about half
	// the square's work; bench: BenchmarkDetectYuNet720p). At least one stride of black stays
	// below and right of the picture: the detections near its edges then match the square
	// export's exactly (without it, landmarks moved by a pixel and some clips' scores by 0.03).
	margin := yunetStrides[2]
	in := image.Pt(padTo(rw+margin, yunetStrides[2], y.in.X), padTo(rh+margin, yunetStrides[2], y.in.Y))
	gocv.Resize(img, &y.resized, image.Pt(rw, rh), 0, 0, gocv.InterpolationLinear)
	gocv.CopyMakeBorder(y.resized, &y.padded, 0, in.Y-rh, 0, in.X-rw, gocv.BorderConstant, colorBlack)
	// YuNet takes raw BGR 0..255, no mean or scaling.
	blob := gocv.BlobFromImage(y.padded, 1, in, gocv.NewScalar(0, 0, 0, 0), false, false)
	defer blob.Close()
	y.net.SetInput(blob, "")
	outs := y.net.ForwardLayers(yunetOutputs)
	defer func() {
		for i := range outs {
			outs[i].Close()
		}
	}()
	if len(outs) != len(yunetOutputs) {
		return nil, fmt.Errorf("yunet detect: got %d outputs, want %d", len(outs), len(yunetOutputs))
	}
	var data [12][]float32
	for i := range outs {
		d, err := outs[i].DataPtrFloat32()
		if err != nil {
			return nil, fmt.Errorf("yunet detect: output %s: %w", yunetOutputs[i], err)
		}
		data[i] = d
	}
	cands, err := decodeYuNet(data, in, y.o.ScoreThreshold)
	if err != nil {
		return nil, fmt.Errorf("yunet detect: %w", err)
	}
	return y.suppress(cands, 1/scale, image.Rect(0, 0, w, h)), nil
}

// candidate is one decoded YuNet anchor in network input coordinates.
type candidate struct {
	x1, y1, x2, y2 float64
	score          float32
	kps            [10]float64
}

// decodeYuNet turns the raw outputs (cls, obj, bbox, kps per stride) into candidates: the score
// is sqrt(cls*obj); box centre = (col + dx, row + dy) * stride, size = exp(dw|dh) * stride;
// landmark = (col + kx, row + ky) * stride.
func decodeYuNet(d [12][]float32, in image.Point, thr float32) ([]candidate, error) {
	var out []candidate
	for si, stride := range yunetStrides {
		cols, rows := in.X/stride, in.Y/stride
		n := cols * rows
		cls, obj, bbox, kps := d[si], d[3+si], d[6+si], d[9+si]
		if len(cls) < n || len(obj) < n || len(bbox) < 4*n || len(kps) < 10*n {
			return nil, fmt.Errorf("stride %d: outputs hold %d/%d/%d/%d values, want %d anchors",
				stride, len(cls), len(obj), len(bbox), len(kps), n)
		}
		s := float64(stride)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				i := r*cols + c
				score := float32(math.Sqrt(float64(clamp01(cls[i]) * clamp01(obj[i]))))
				if score < thr {
					continue
				}
				cx := (float64(c) + float64(bbox[4*i])) * s
				cy := (float64(r) + float64(bbox[4*i+1])) * s
				bw := math.Exp(float64(bbox[4*i+2])) * s
				bh := math.Exp(float64(bbox[4*i+3])) * s
				cd := candidate{x1: cx - bw/2, y1: cy - bh/2, x2: cx + bw/2, y2: cy + bh/2, score: score}
				for k := 0; k < 5; k++ {
					cd.kps[2*k] = (float64(c) + float64(kps[10*i+2*k])) * s
					cd.kps[2*k+1] = (float64(r) + float64(kps[10*i+2*k+1])) * s
				}
				out = append(out, cd)
			}
		}
	}
	return out, nil
}

// suppress keeps the top-K candidates, runs NMS and maps survivors to frame coordinates.
func (y *YuNet) suppress(cands []candidate, inv float64, bounds image.Rectangle) []Face {
	if len(cands) == 0 {
		return nil
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].score > cands[j].score })
	if len(cands) > y.o.TopK {
		cands = cands[:y.o.TopK]
	}
	boxes := make([]image.Rectangle, len(cands))
	scores := make([]float32, len(cands))
	for i, c := range cands {
		boxes[i] = image.Rect(int(math.Round(c.x1)), int(math.Round(c.y1)), int(math.Round(c.x2)), int(math.Round(c.y2)))
		scores[i] = c.score
	}
	idx := make([]int, len(cands))
	for i := range idx {
		idx[i] = -1
	}
	gocv.NMSBoxes(boxes, scores, y.o.ScoreThreshold, y.o.NMSThreshold, idx)
	var out []Face
	for _, k := range idx {
		if k < 0 || k >= len(cands) {
			continue
		}
		c := cands[k]
		box := image.Rect(int(math.Round(c.x1*inv)), int(math.Round(c.y1*inv)),
			int(math.Round(c.x2*inv)), int(math.Round(c.y2*inv))).Intersect(bounds)
		if box.Empty() {
			continue
		}
		f := Face{Box: box, Confidence: c.score, Landmarks: make([]image.Point, 5)}
		for p := 0; p < 5; p++ {
			f.Landmarks[p] = image.Pt(int(math.Round(c.kps[2*p]*inv)), int(math.Round(c.kps[2*p+1]*inv)))
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Confidence > out[j].Confidence })
	return out
}

// Close frees the network and the reused buffers.
func (y *YuNet) Close() error {
	y.resized.Close()
	y.padded.Close()
	return y.net.Close()
}

// padTo rounds n up to a multiple of m, at most limit (itself a multiple of m).
func padTo(n, m, limit int) int { return min(limit, (n+m-1)/m*m) }

func clamp01(v float32) float32 { return min(max(v, 0), 1) }
