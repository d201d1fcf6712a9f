package testenv

import (
	"context"
	"image"
	"image/color"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/testvideo"
)

// FaceSource chooses the picture a generated clip moves across the frame.
type FaceSource int

const (
	// Drawn is testvideo.SyntheticFace(Clip.DrawnRes, Clip.Seed): no data set needed.
	Drawn FaceSource = iota
	// LFW is the first photo of ../shared/data/faces/lfw (see LFWFace); the test is skipped
	// when the data set is absent.
	LFW
	// LFWOrDrawn is the LFW photo when the data set has one, else the drawn face (logged).
	LFWOrDrawn
)

// Clip describes a generated test clip (ingest/testvideo): Frames frames of Width x Height
// at FPS, fresh Gaussian noise around Tint in every frame as a camera sensor would give, and,
// when Size > 0, one face Size pixels wide moving in a straight line From -> To.
type Clip struct {
	Width, Height int
	Frames, FPS   int
	// Tint is the background's mean colour (RGBA, as in gocv drawing); zero = mid gray.
	Tint color.RGBA
	// Size is the face's width in the frame (the height keeps the picture's aspect); 0 makes
	// a clip without a face.
	Size int
	// From and To are the face's top-left corner in the first and the last frame.
	From, To image.Point
	// Face picks the picture; a Drawn face is DrawnRes pixels square (160 when 0), its
	// pattern chosen by Seed.
	Face     FaceSource
	DrawnRes int
	Seed     int64
}

// WriteClip encodes c into an MP4 file at path (testvideo.Write: H.264 when FFmpeg has
// libx264, MPEG-4 part 2 otherwise) and returns the ground truth: for each frame, the face's
// box clipped to the frame (boxes[i][0]; boxes[i] is empty when c has no face). The test
// fails when the clip cannot be made.
func WriteClip(tb testing.TB, path string, c Clip) (boxes [][]image.Rectangle) {
	tb.Helper()
	spec := testvideo.VideoSpec{Width: c.Width, Height: c.Height, Frames: c.Frames,
		Background: testvideo.Noise, BackgroundColor: c.Tint}
	if c.Size > 0 {
		face := clipFace(tb, c)
		defer face.Close()
		spec.Faces = []testvideo.Placement{{Face: face, Size: c.Size, From: c.From, To: c.To}}
	}
	mats, boxes, err := testvideo.FaceVideo(spec)
	if err != nil {
		tb.Fatalf("generate test clip: %v", err)
	}
	defer testvideo.CloseFrames(mats)
	if err := testvideo.Write(context.Background(), path, mats, c.FPS); err != nil {
		tb.Fatal(err)
	}
	return boxes
}

// clipFace is c's face picture; the caller closes it.
func clipFace(tb testing.TB, c Clip) gocv.Mat {
	tb.Helper()
	res := c.DrawnRes
	if res <= 0 {
		res = 160
	}
	switch c.Face {
	case LFW:
		return loadLFW(tb)
	case LFWOrDrawn:
		lfw := ""
		if d, ok := SharedDataDir(); ok {
			lfw = filepath.Join(d, "faces", "lfw")
		} else {
			tb.Log("../shared/data absent: using a synthetic drawn face")
		}
		faces, _ := testvideo.FacesOrSynthetic(lfw, 1, res, c.Seed)
		return faces[0]
	default:
		return testvideo.SyntheticFace(res, c.Seed)
	}
}

// LFWFace is the first photo of ../shared/data/faces/lfw (250x250 BGR, the face centred and
// about 60 % of its width), closed when the test ends. The test is skipped when the data set
// is absent and fails when it has no readable photo there.
func LFWFace(tb testing.TB) gocv.Mat {
	tb.Helper()
	m := loadLFW(tb)
	tb.Cleanup(func() { m.Close() })
	return m
}

func loadLFW(tb testing.TB) gocv.Mat {
	tb.Helper()
	faces, err := testvideo.LoadFaces(filepath.Join(SharedData(tb), "faces", "lfw"), 1)
	if err != nil {
		tb.Fatal(err)
	}
	return faces[0]
}
