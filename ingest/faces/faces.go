// Package faces finds faces in BGR frames with OpenCV (through gocv): the YuNet ONNX detector
// through OpenCV's dnn module by default (embedded in the binary, see models/LICENSE), or a
// Haar or LBP cascade from Debian's opencv-data. Every implementation returns boxes in the
// coordinates of the frame it was given.
package faces

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	"gocv.io/x/gocv"
)

// Face is one detected face in frame pixel coordinates.
type Face struct {
	// Box is the face box, clipped to the frame.
	Box image.Rectangle
	// Confidence is the detector's score in [0,1]. Cascades give no score and report 1.
	Confidence float32
	// Landmarks are 5 points in the order right eye, left eye, nose tip, right mouth corner,
	// left mouth corner (the subject's right, i.e. the eye on the image's left first), when the
	// detector gives them (YuNet); nil otherwise (cascades).
	Landmarks []image.Point
}

// Detector finds faces in a BGR frame. Implementations are not safe for concurrent use: each
// goroutine opens its own (OpenCV's cascade and dnn objects keep per-call state).
type Detector interface {
	// Detect returns the faces in img (8-bit BGR), in descending order of confidence then area.
	Detect(img gocv.Mat) ([]Face, error)
	// Close frees the OpenCV objects.
	Close() error
}

// Spec names understood by Open besides a path to a YuNet .onnx file.
const (
	// SpecYuNet is the YuNet-s detector embedded in the binary (models/yunet_s_640_640.onnx):
	// 5 landmarks per face, so alignment uses the detected eyes.
	SpecYuNet = "yunet"
	SpecLBP   = "lbp"
	SpecHaar  = "haar"
	// SpecHaarAlt is OpenCV's alternative Haar frontal-face cascade (haarcascade_frontalface_alt).
	SpecHaarAlt = "haar-alt"
	// SpecDefault is the detector used when none is configured: the embedded YuNet. It finds
	// faces in every sampled frame of every single-speaker clip (the best cascade, haar-alt,
	// misses 7 % of them: 93 % on average, against 76 % for the default Haar cascade and 80 %
	// for LBP), with full recall on dlib's testing.xml, at a fraction of the cascades' cost
	// (BenchmarkDetect*), and gives the eye landmarks the aligner uses.
	SpecDefault = SpecYuNet
)

// Cascade file names in OpenCV's data directory.
const (
	lbpFile     = "lbpcascades/lbpcascade_frontalface_improved.xml"
	haarFile    = "haarcascades/haarcascade_frontalface_default.xml"
	haarAltFile = "haarcascades/haarcascade_frontalface_alt.xml"
	// EyeCascadeFile is the eye cascade the aligner uses when a detector gives no landmarks.
	EyeCascadeFile = "haarcascades/haarcascade_eye.xml"
)

// Open returns the detector named by spec: "yunet" (the embedded model), "lbp", "haar",
// "haar-alt", "" (SpecDefault), or the path of a YuNet .onnx file.
func Open(spec string) (Detector, error) {
	switch strings.ToLower(strings.TrimSpace(spec)) {
	case "":
		return Open(SpecDefault)
	case SpecYuNet:
		return NewYuNet(YuNetOptions{})
	case SpecLBP:
		p, err := DataFile(lbpFile)
		if err != nil {
			return nil, err
		}
		// The improved LBP cascade's 45x45 window misses faces of small images unless they are
		// upscaled; its hits are sparse, so fewer neighbours are required.
		return NewCascade(CascadeOptions{Path: p, MinWidth: 640, MinNeighbors: 3})
	case SpecHaar:
		p, err := DataFile(haarFile)
		if err != nil {
			return nil, err
		}
		// 6 neighbours: fewer false faces on dlib's photos than 5 at the same recall on testing.xml.
		return NewCascade(CascadeOptions{Path: p, MinNeighbors: 6})
	case SpecHaarAlt:
		p, err := DataFile(haarAltFile)
		if err != nil {
			return nil, err
		}
		// 3 neighbours: on the ASL clips the alt cascade's hits are sparse on small faces and
		// it rarely fires twice on one face (measured: 114/122 frames hit, 3 with two faces).
		return NewCascade(CascadeOptions{Path: p, MinNeighbors: 3})
	}
	if strings.HasSuffix(strings.ToLower(spec), ".onnx") {
		return NewYuNet(YuNetOptions{Path: spec})
	}
	return nil, fmt.Errorf("face model %q: want %q, %q, %q, %q or a YuNet .onnx file", spec, SpecYuNet, SpecHaarAlt, SpecHaar, SpecLBP)
}

// dataDirs are where Debian/Ubuntu (opencv-data) and source builds put OpenCV's cascades.
var dataDirs = []string{"/usr/share/opencv4", "/usr/local/share/opencv4", "/usr/share/opencv"}

// DataFile finds a file of OpenCV's data directory (e.g. "haarcascades/haarcascade_eye.xml").
// LAE_OPENCV_DATA, when set, is searched first.
func DataFile(rel string) (string, error) {
	dirs := dataDirs
	if d := os.Getenv("LAE_OPENCV_DATA"); d != "" {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		p := filepath.Join(d, rel)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("opencv data file %s not found in %s (install opencv-data or set LAE_OPENCV_DATA)",
		rel, strings.Join(dirs, ", "))
}

// errNotBGR is returned for frames the detectors cannot read.
var errNotBGR = errors.New("want a non-empty 8-bit BGR image")

func checkBGR(img gocv.Mat) error {
	if img.Empty() || img.Type() != gocv.MatTypeCV8UC3 {
		return errNotBGR
	}
	return nil
}

// scaleRect maps r by factor s and clips it to bounds.
func scaleRect(r image.Rectangle, s float64, bounds image.Rectangle) image.Rectangle {
	out := image.Rect(int(float64(r.Min.X)*s+0.5), int(float64(r.Min.Y)*s+0.5),
		int(float64(r.Max.X)*s+0.5), int(float64(r.Max.Y)*s+0.5))
	return out.Intersect(bounds)
}

var colorBlack = color.RGBA{0, 0, 0, 255}
