// Package crops writes aligned face crops of photos and videos to a directory, with the same
// detector and aligner as ingest, so a model trained on them sees exactly the geometry it will
// be scored on. Each crop is DIR/<name>.png and one JSON line in DIR/index.jsonl, with the 468
// Face Mesh landmarks of the crop (ingest/landmarks) unless disabled.
package crops

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"image"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/align"
	"github.com/lae-screening/lae/ingest/faces"
	"github.com/lae-screening/lae/ingest/landmarks"
	"github.com/lae-screening/lae/ingest/source"
)

// IndexFile is the name of the JSON-lines index inside the output directory.
const IndexFile = "index.jsonl"

// Record is one line of index.jsonl.
type Record struct {
	// Path of the crop PNG, relative to the output directory.
	Path string `json:"path"`
	// Source is the input file the crop comes from, as given.
	Source string `json:"source"`
	// FrameIndex is the decoded frame index (0 for photos).
	FrameIndex uint64 `json:"frame_index"`
	// FaceIndex is the face's index within its frame, in detector order.
	FaceIndex int `json:"face_index"`
	// PTS is the frame's presentation time in seconds (0 for photos).
	PTS float64 `json:"pts"`
	// EyesAligned tells whether eyes (landmarks or eye cascade) or only the box aligned the face.
	EyesAligned bool `json:"eyes_aligned"`
	// Box is the detector box in source pixels: x, y, w, h.
	Box [4]int `json:"box"`
	// CropToFrame is the crop-to-source affine (row-major 2x3), as in laev1.FaceCrop.
	CropToFrame [6]float64 `json:"crop_to_frame"`
	// SourceScale is crop pixels per source pixel (the similarity's scale, 4 decimals): above 1
	// the face was upsampled to fill the crop, so the crop is less sharp than it looks.
	SourceScale float64 `json:"source_scale"`
	// Landmarks are the 468 MediaPipe Face Mesh points [x, y] in crop pixels, rounded to 0.1 px
	// (landmarks.FaceOval etc. name the contours); absent when landmarks are off.
	Landmarks [][2]float32 `json:"landmarks,omitempty"`
	// MeshScore is the mesh's face-presence probability (4 decimals); absent with Landmarks.
	MeshScore *float32 `json:"mesh_score,omitempty"`
}

// Options configures a Writer.
type Options struct {
	// Out is the output directory, created when missing (required).
	Out string
	// SampleFPS is the video sampling rate; 0 keeps every frame, as in ingest (the command's
	// flag supplies the ingest default of 5).
	SampleFPS float64
	// FaceModel is a faces.Open spec ("" = faces.SpecDefault).
	FaceModel string
	// MaxPerInput caps the crops written per input file (0 = no cap).
	MaxPerInput int
	// MaxFacesPerFrame keeps the first N faces of each frame in detector order (0 = all).
	MaxFacesPerFrame int
	// MinFaceSize drops faces whose box is narrower than this many source pixels (default 0).
	MinFaceSize int
	// MinEyePx skips faces whose eyes are closer than this many source pixels, ingest's
	// tiny-face rule (TooSmall); 0 (the default) writes every face, as training wants them
	// all (each record's source_scale tells how far it was upsampled).
	MinEyePx float64
	// NoLandmarks skips the Face Mesh: records carry no landmarks and no mesh_score.
	NoLandmarks bool
	// ORTLib is the ONNX Runtime library for the mesh ("" = $LAE_ORT_LIB, then .cache/ort/).
	ORTLib string
}

// Writer detects, aligns and writes crops. It is not safe for concurrent use.
type Writer struct {
	o     Options
	det   faces.Detector
	al    *align.Aligner
	mesh  *landmarks.Mesh // nil with NoLandmarks
	index *os.File
	buf   *bufio.Writer
}

// New opens the detector and aligner and the index for appending.
func New(o Options) (*Writer, error) {
	if o.Out == "" {
		return nil, errors.New("crops: no output directory")
	}
	if o.SampleFPS < 0 {
		return nil, fmt.Errorf("crops: negative sampling rate %v", o.SampleFPS)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("crops: create %s: %w", o.Out, err)
	}
	det, err := faces.Open(o.FaceModel)
	if err != nil {
		return nil, fmt.Errorf("crops: %w", err)
	}
	al, err := align.New(align.Options{})
	if err != nil {
		det.Close()
		return nil, fmt.Errorf("crops: %w", err)
	}
	var mesh *landmarks.Mesh
	if !o.NoLandmarks {
		if mesh, err = landmarks.Open(landmarks.Options{LibPath: o.ORTLib}); err != nil {
			det.Close()
			al.Close()
			return nil, fmt.Errorf("crops: %w (--landmarks=false skips the landmarks)", err)
		}
	}
	idx, err := os.OpenFile(filepath.Join(o.Out, IndexFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		det.Close()
		al.Close()
		if mesh != nil {
			mesh.Close()
		}
		return nil, fmt.Errorf("crops: open index: %w", err)
	}
	return &Writer{o: o, det: det, al: al, mesh: mesh, index: idx, buf: bufio.NewWriter(idx)}, nil
}

// Close flushes the index and frees the detector, aligner and mesh.
func (w *Writer) Close() error {
	errs := []error{w.buf.Flush(), w.index.Close(), w.det.Close(), w.al.Close()}
	if w.mesh != nil {
		errs = append(errs, w.mesh.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("crops: close: %w", err)
	}
	return nil
}

// Kind of input file, by extension.
type Kind int

// Input kinds.
const (
	KindUnknown Kind = iota
	KindImage
	KindVideo
)

var imageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".bmp": true, ".webp": true}
var videoExts = map[string]bool{".mp4": true, ".mkv": true, ".avi": true, ".mov": true, ".webm": true,
	".m4v": true, ".mpg": true, ".mpeg": true, ".ts": true, ".flv": true}

// KindOf classifies a path by its extension.
func KindOf(path string) Kind {
	ext := strings.ToLower(filepath.Ext(path))
	switch {
	case imageExts[ext]:
		return KindImage
	case videoExts[ext]:
		return KindVideo
	}
	return KindUnknown
}

// Expand turns the arguments into input files: files as given (any extension: a video URL or
// an odd name is the user's call), directories walked recursively for image and video files,
// in lexical order so runs are reproducible.
func Expand(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			if strings.Contains(a, "://") {
				out = append(out, a)
				continue
			}
			return nil, fmt.Errorf("input %s: %w", a, err)
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && KindOf(p) != KindUnknown {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walk %s: %w", a, err)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// Add writes the crops of one input file (photo or video) and returns how many it wrote.
func (w *Writer) Add(ctx context.Context, input string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if KindOf(input) == KindImage {
		return w.addImage(ctx, input)
	}
	return w.addVideo(ctx, input)
}

func (w *Writer) addImage(_ context.Context, input string) (int, error) {
	img := gocv.IMRead(input, gocv.IMReadColor)
	defer img.Close()
	if img.Empty() {
		return 0, fmt.Errorf("read image %s: not a readable image", input)
	}
	n, err := w.frame(input, img, 0, 0, w.o.MaxPerInput)
	if err != nil {
		return n, fmt.Errorf("crops of %s: %w", input, err)
	}
	return n, w.buf.Flush()
}

func (w *Writer) addVideo(ctx context.Context, input string) (int, error) {
	src, err := source.Open(ctx, input, source.Options{SampleFPS: w.o.SampleFPS})
	if err != nil {
		return 0, fmt.Errorf("open video %s: %w", input, err)
	}
	defer src.Close()
	total := 0
	for w.o.MaxPerInput <= 0 || total < w.o.MaxPerInput {
		fr, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return total, fmt.Errorf("decode %s: %w", input, err)
		}
		left := 0
		if w.o.MaxPerInput > 0 {
			left = w.o.MaxPerInput - total
		}
		n, err := w.frame(input, fr.Image, fr.Index, fr.PTS, left)
		fr.Image.Close()
		total += n
		if err != nil {
			return total, fmt.Errorf("crops of %s frame %d: %w", input, fr.Index, err)
		}
	}
	return total, w.buf.Flush()
}

// frame detects, aligns and writes the faces of one frame, at most limit (0 = no limit).
func (w *Writer) frame(input string, img gocv.Mat, frameIndex uint64, pts float64, limit int) (int, error) {
	found, err := w.det.Detect(img)
	if err != nil {
		return 0, err
	}
	found, _ = SelectJudgeable(found, w.o.MaxFacesPerFrame, w.o.MinFaceSize, w.o.MinEyePx)
	n := 0
	for i, f := range found {
		if limit > 0 && n >= limit {
			break
		}
		c, err := w.al.Align(img, f)
		if errors.Is(err, align.ErrBadFace) {
			continue
		}
		if err != nil {
			return n, err
		}
		name := cropName(input, frameIndex, i)
		rec := Record{Path: name, Source: input, FrameIndex: frameIndex, FaceIndex: i, PTS: pts,
			EyesAligned: c.EyesAligned, Box: [4]int{f.Box.Min.X, f.Box.Min.Y, f.Box.Dx(), f.Box.Dy()},
			CropToFrame: c.CropToFrame, SourceScale: round(SourceScale(c.CropToFrame), 1e4)}
		if w.mesh != nil {
			r, err := w.mesh.Run(c.Image)
			if err != nil {
				c.Image.Close()
				return n, err
			}
			rec.Landmarks = make([][2]float32, len(r.Points))
			for k, p := range r.Points {
				rec.Landmarks[k] = [2]float32{float32(round(float64(p[0]), 10)), float32(round(float64(p[1]), 10))}
			}
			score := float32(round(float64(r.Score), 1e4))
			rec.MeshScore = &score
		}
		ok := gocv.IMWrite(filepath.Join(w.o.Out, name), c.Image)
		c.Image.Close()
		if !ok {
			return n, fmt.Errorf("write %s: OpenCV could not write the PNG", filepath.Join(w.o.Out, name))
		}
		line, err := json.Marshal(rec)
		if err != nil {
			return n, fmt.Errorf("index record: %w", err)
		}
		if _, err := w.buf.Write(append(line, '\n')); err != nil {
			return n, fmt.Errorf("write index: %w", err)
		}
		n++
	}
	return n, nil
}

// SourceScale is crop pixels per source pixel of a crop-to-source similarity (row-major 2x3):
// the inverse of its scale.
func SourceScale(cropToFrame [6]float64) float64 {
	s := math.Hypot(cropToFrame[0], cropToFrame[3])
	if s == 0 {
		return 0
	}
	return 1 / s
}

// round rounds v to a multiple of 1/per.
func round(v, per float64) float64 { return math.Round(v*per) / per }

// Select keeps faces at least minSize wide and at most maxN of them (0 = all), in the detector's
// order (most confident, or largest for cascades, first). Ingest applies the same rule.
func Select(found []faces.Face, maxN, minSize int) []faces.Face {
	out, _ := SelectJudgeable(found, maxN, minSize, 0)
	return out
}

// DefaultMinEyePx is the product's tiny-face limit (ingest, lae scan/serve and the roles; lae
// crops defaults to 0): faces whose eyes are closer than 16 source pixels are not scored. The
// crop puts the eyes 64 px apart (align.RightEyeX-align.LeftEyeX of align.CropSize), so such a
// face would be upsampled more than 4x: most of its crop pixels are interpolated, its fine
// texture (where blending and generator traces live) is the interpolation kernel's, which is
// what the "upsample" forgery family teaches the detector to call fake; and it lies outside
// what the model was trained on (degrade.py simulates at most 2.5x of resolution loss, and
// about 1 % of the v2 run's real training crops have eyes closer than 16 px). Measured with
// YuNet at 5 fps: 27 of 88 faces of hamilton_short.mp4 (a 360p stage scene, background
// faces), 1 of 92 of crowd_1080p.mp4, none of the ASL signers.
const DefaultMinEyePx = 16

// TooSmall is the tiny-face policy: a face is too small to judge when its eyes are closer than
// minEyePx source pixels (align.SourceEyeDistance: the detector's eye landmarks when it gives
// them, else the box width scaled by the box eye spacing). minEyePx <= 0 judges every face.
func TooSmall(f faces.Face, minEyePx float64) bool {
	return minEyePx > 0 && align.SourceEyeDistance(f) < minEyePx
}

// SelectJudgeable is Select for faces that are not TooSmall: faces narrower than minSize are
// dropped silently, too-small faces are set aside and counted (whatever maxN, so they never take
// the place of a face that can be judged), and at most maxN of the others are kept.
func SelectJudgeable(found []faces.Face, maxN, minSize int, minEyePx float64) (keep []faces.Face, tooSmall int) {
	keep = found[:0:0]
	for _, f := range found {
		if f.Box.Dx() < minSize || f.Box.Dy() < minSize {
			continue
		}
		if TooSmall(f, minEyePx) {
			tooSmall++
			continue
		}
		if maxN > 0 && len(keep) == maxN {
			continue
		}
		keep = append(keep, f)
	}
	return keep, tooSmall
}

// cropName is <input base>-<hash of the input path>_<frame>_<face>.png: readable, and unique
// across inputs that share a base name in different directories.
func cropName(input string, frameIndex uint64, face int) string {
	h := fnv.New32a()
	abs, err := filepath.Abs(input)
	if err != nil {
		abs = input
	}
	h.Write([]byte(abs))
	base := strings.TrimSuffix(filepath.Base(input), filepath.Ext(input))
	base = strings.Map(func(r rune) rune {
		if r < 128 && (r == '-' || r == '_' || r == '.' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, base)
	return fmt.Sprintf("%s-%08x_%06d_%d.png", base, h.Sum32(), frameIndex, face)
}

// BoxOf is the Record box as a rectangle.
func (r Record) BoxOf() image.Rectangle {
	return image.Rect(r.Box[0], r.Box[1], r.Box[0]+r.Box[2], r.Box[1]+r.Box[3])
}
