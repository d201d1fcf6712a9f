package pipeline

import (
	"fmt"
	"image"
	"math"
	"time"

	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/align"
	"github.com/lae-screening/lae/ingest/crops"
	"github.com/lae-screening/lae/ingest/faces"
	"github.com/lae-screening/lae/ingest/source"
)

// worker analyses frames with its own detector and aligner (neither is safe for concurrent use).
type worker struct {
	o   Options
	det faces.Detector
	al  *align.Aligner
}

func newWorker(o Options) (*worker, error) {
	det, err := faces.Open(o.FaceModel)
	if err != nil {
		return nil, fmt.Errorf("face detector: %w", err)
	}
	al, err := align.New(align.Options{})
	if err != nil {
		det.Close()
		return nil, fmt.Errorf("face aligner: %w", err)
	}
	return &worker{o: o, det: det, al: al}, nil
}

func (w *worker) close() {
	w.det.Close()
	w.al.Close()
}

// analysed is one frame's detection and alignment result. It holds no Mats: pixels are copied
// out in the worker so that nothing OpenCV-owned crosses goroutines or can leak on cancel.
type analysed struct {
	seq                uint64
	index, sampleIndex uint64
	pts                float64
	size               image.Point
	stats              source.Stats
	faces              []faces.Face
	tooSmall           int       // faces set aside by Options.MinEyePx
	crops              []cropOut // parallel to faces; pixels nil when alignment failed
	jpeg               []byte    // downscaled frame, when it had an aligned face
	errors             uint64
}

type cropOut struct {
	pixels  []byte
	size    image.Point
	toFrame [6]float64
	eyes    bool
}

// analyse detects, selects and aligns the faces of one frame, encodes the evidence JPEG when
// there is a face, and closes the frame.
func (w *worker) analyse(in sampled) analysed {
	defer in.fr.Image.Close()
	img := in.fr.Image
	a := analysed{seq: in.seq, index: in.fr.Index, sampleIndex: in.fr.SampleIndex, pts: in.fr.PTS,
		size: image.Pt(img.Cols(), img.Rows()), stats: in.stats}
	t0 := time.Now()
	found, err := w.det.Detect(img)
	if w.o.StageTime != nil {
		w.o.StageTime(StageFaceDetect, time.Since(t0))
	}
	if err != nil {
		a.errors++
		return a
	}
	a.faces, a.tooSmall = crops.SelectJudgeable(found, w.o.MaxFacesPerFrame, w.o.MinFaceSize, w.o.MinEyePx)
	a.crops = make([]cropOut, len(a.faces))
	aligned := 0
	for i, f := range a.faces {
		c, err := w.al.Align(img, f)
		if err != nil {
			a.errors++
			continue
		}
		a.crops[i] = cropOut{pixels: c.Image.ToBytes(), size: image.Pt(c.Image.Cols(), c.Image.Rows()),
			toFrame: c.CropToFrame, eyes: c.EyesAligned}
		c.Image.Close()
		aligned++
	}
	if aligned > 0 && w.o.FrameJPEGWidth >= 0 {
		jpeg, err := encodeJPEG(img, w.o.FrameJPEGWidth)
		if err != nil {
			a.errors++
		}
		a.jpeg = jpeg
	}
	return a
}

// encodeJPEG downscales img to at most width pixels wide and encodes it.
func encodeJPEG(img gocv.Mat, width int) ([]byte, error) {
	if img.Cols() > width {
		h := int(math.Round(float64(img.Rows()) * float64(width) / float64(img.Cols())))
		small := gocv.NewMat()
		defer small.Close()
		gocv.Resize(img, &small, image.Pt(width, max(1, h)), 0, 0, gocv.InterpolationArea)
		img = small
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, img, []int{gocv.IMWriteJpegQuality, frameJPEGQuality})
	if err != nil {
		return nil, fmt.Errorf("encode frame jpeg: %w", err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...), nil
}
