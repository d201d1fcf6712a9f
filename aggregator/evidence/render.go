package evidence

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	"gocv.io/x/gocv"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// ErrNothingToDraw says a score has neither a frame image nor a heatmap to draw.
var ErrNothingToDraw = errors.New("no frame image and no heatmap to draw evidence on")

// Overlay colours (BGR order is handled by gocv's RGBA: R,G,B,A).
var (
	faceColor    = color.RGBA{R: 0, G: 255, B: 0, A: 0}
	hotColor     = color.RGBA{R: 255, G: 0, B: 0, A: 0}
	captionColor = color.RGBA{R: 255, G: 255, B: 255, A: 0}
	captionBack  = color.RGBA{R: 0, G: 0, B: 0, A: 0}
)

// heatAlpha is the heatmap's weight in the blend: enough to read the colours, little enough
// to still see the face under them.
const heatAlpha = 0.45

// jpegQuality balances size (evidence is kept for days, several per video) against legibility.
const jpegQuality = 88

// Render draws the evidence image of one scored face and returns it as JPEG.
//
// With a frame image (FrameImage of the same video and frame; its JPEG may be smaller than the
// frame, every coordinate is scaled by jpeg_width/frame_width and jpeg_height/frame_height):
// the heatmap, coloured with the JET colormap, is warped into the frame by the crop→frame
// affine and alpha-blended only inside the warped crop area, so the rest of the frame is
// untouched; the face box is drawn in green, the hot region in red, and a caption gives the
// score, time, frame index and track.
//
// Without a frame image (expired from LAE_FRAMES, never published, or not decodable), the image
// is the coloured heatmap alone at crop size (at least 256 pixels wide for legibility) with the
// hot region box and the caption: it shows where in the face, not which face in the frame.
// With neither a frame image nor a heatmap, Render returns ErrNothingToDraw and the caller
// leaves Evidence.Image empty.
func Render(s *laev1.FrameScore, frame *laev1.FrameImage, loc Location) ([]byte, error) {
	hasHeat := s.GetHeatmapWidth() > 0 && s.GetHeatmapHeight() > 0 &&
		len(s.GetHeatmap()) == int(s.GetHeatmapWidth())*int(s.GetHeatmapHeight())
	if len(frame.GetJpeg()) > 0 {
		out, err := renderOnFrame(s, frame, loc, hasHeat)
		if err == nil || !hasHeat {
			return out, err
		}
		// A corrupt frame JPEG still leaves the heatmap to show.
	}
	if !hasHeat {
		return nil, ErrNothingToDraw
	}
	return renderOnHeatmap(s, loc)
}

// caption is the one-line text drawn on every evidence image.
func caption(s *laev1.FrameScore) string {
	return fmt.Sprintf("fake score %.3f  t=%.2fs  frame %d  track %d", s.GetScore(), s.GetPtsSeconds(), s.GetFrameIndex(), s.GetTrackId())
}

func renderOnFrame(s *laev1.FrameScore, fi *laev1.FrameImage, loc Location, hasHeat bool) ([]byte, error) {
	img, err := gocv.IMDecode(fi.GetJpeg(), gocv.IMReadColor)
	if err != nil {
		return nil, fmt.Errorf("decode frame %d image: %w", fi.GetFrameIndex(), err)
	}
	defer img.Close()
	if img.Empty() {
		return nil, fmt.Errorf("decode frame %d image: not a decodable JPEG", fi.GetFrameIndex())
	}
	fw, fh := fi.GetFrameWidth(), fi.GetFrameHeight()
	if fw == 0 || fh == 0 {
		fw, fh = s.GetFrameWidth(), s.GetFrameHeight()
	}
	sx, sy := 1.0, 1.0
	if fw > 0 && fh > 0 {
		sx, sy = float64(img.Cols())/float64(fw), float64(img.Rows())/float64(fh)
	}
	if hasHeat {
		if err := blendHeatmap(&img, s, sx, sy); err != nil {
			return nil, err
		}
	}
	drawBox(&img, scaleRect(loc.Face, sx, sy), faceColor)
	if loc.Hot.W > 0 && loc.Hot.H > 0 {
		drawBox(&img, scaleRect(loc.Hot, sx, sy), hotColor)
	}
	drawCaption(&img, caption(s))
	return encode(img)
}

// blendHeatmap overlays the coloured heatmap on img inside the warped crop area. (sx, sy)
// scale frame pixels to img pixels.
func blendHeatmap(img *gocv.Mat, s *laev1.FrameScore, sx, sy float64) error {
	kx, ky, err := cropScale(s)
	if err != nil {
		return fmt.Errorf("blend heatmap: %w", err)
	}
	aff, err := ParseAffine(s.GetCropToFrame())
	if err != nil {
		return fmt.Errorf("blend heatmap: %w", err)
	}
	hw, hh := int(s.GetHeatmapWidth()), int(s.GetHeatmapHeight())
	heat, err := gocv.NewMatFromBytes(hh, hw, gocv.MatTypeCV8U, s.GetHeatmap())
	if err != nil {
		return fmt.Errorf("blend heatmap: wrap %dx%d heatmap: %w", hw, hh, err)
	}
	defer heat.Close()
	colored := gocv.NewMat()
	defer colored.Close()
	gocv.ApplyColorMap(heat, &colored, gocv.ColormapJet)

	// Heatmap pixel (i,j) -> crop pixel (kx*i + (kx-1)/2, ky*j + (ky-1)/2) (pixel centres)
	// -> frame pixel through the affine -> image pixel by (sx, sy): one composed affine, so
	// the heatmap is resampled once.
	ox, oy := (kx-1)/2, (ky-1)/2
	m := [6]float64{
		sx * aff[0] * kx, sx * aff[1] * ky, sx * (aff[0]*ox + aff[1]*oy + aff[2]),
		sy * aff[3] * kx, sy * aff[4] * ky, sy * (aff[3]*ox + aff[4]*oy + aff[5]),
	}
	mat := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer mat.Close()
	for i, v := range m {
		mat.SetDoubleAt(i/3, i%3, v)
	}
	size := image.Pt(img.Cols(), img.Rows())
	warped := gocv.NewMat()
	defer warped.Close()
	gocv.WarpAffineWithParams(colored, &warped, mat, size, gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
	ones := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(255, 0, 0, 0), hh, hw, gocv.MatTypeCV8U)
	defer ones.Close()
	mask := gocv.NewMat()
	defer mask.Close()
	gocv.WarpAffineWithParams(ones, &mask, mat, size, gocv.InterpolationNearestNeighbor, gocv.BorderConstant, color.RGBA{})
	blended := gocv.NewMat()
	defer blended.Close()
	gocv.AddWeighted(*img, 1-heatAlpha, warped, heatAlpha, 0, &blended)
	blended.CopyToWithMask(img, mask)
	return nil
}

func renderOnHeatmap(s *laev1.FrameScore, loc Location) ([]byte, error) {
	kx, ky, err := cropScale(s)
	if err != nil {
		// Without a crop size the heatmap is drawn at its own size.
		kx, ky = 1, 1
	}
	hw, hh := int(s.GetHeatmapWidth()), int(s.GetHeatmapHeight())
	heat, err := gocv.NewMatFromBytes(hh, hw, gocv.MatTypeCV8U, s.GetHeatmap())
	if err != nil {
		return nil, fmt.Errorf("render heatmap: wrap %dx%d heatmap: %w", hw, hh, err)
	}
	defer heat.Close()
	colored := gocv.NewMat()
	defer colored.Close()
	gocv.ApplyColorMap(heat, &colored, gocv.ColormapJet)
	w, h := float64(hw)*kx, float64(hh)*ky
	up := math.Max(1, 256/w) // small crops are enlarged so the caption stays legible
	w, h = w*up, h*up
	big := gocv.NewMat()
	defer big.Close()
	gocv.Resize(colored, &big, image.Pt(int(math.Round(w)), int(math.Round(h))), 0, 0, gocv.InterpolationLinear)
	if !loc.HotHeat.Empty() {
		fx, fy := kx*up, ky*up
		drawBox(&big, laev1.Rect{X: float64(loc.HotHeat.Min.X) * fx, Y: float64(loc.HotHeat.Min.Y) * fy,
			W: float64(loc.HotHeat.Dx()) * fx, H: float64(loc.HotHeat.Dy()) * fy}, captionColor)
	}
	drawCaption(&big, fmt.Sprintf("%.3f t=%.2fs f%d (no frame)", s.GetScore(), s.GetPtsSeconds(), s.GetFrameIndex()))
	return encode(big)
}

func scaleRect(r laev1.Rect, sx, sy float64) laev1.Rect {
	return laev1.Rect{X: r.X * sx, Y: r.Y * sy, W: r.W * sx, H: r.H * sy}
}

// drawBox outlines r with a line about 1/300 of the image width (at least 2 pixels).
func drawBox(img *gocv.Mat, r laev1.Rect, c color.RGBA) {
	if r.W <= 0 || r.H <= 0 {
		return
	}
	thick := max(2, img.Cols()/300)
	rect := image.Rect(int(math.Floor(r.X)), int(math.Floor(r.Y)), int(math.Ceil(r.X+r.W))-1, int(math.Ceil(r.Y+r.H))-1)
	gocv.Rectangle(img, rect, c, thick)
}

// drawCaption writes text on a black band at the top left, scaled with the image width.
func drawCaption(img *gocv.Mat, text string) {
	scale := math.Max(0.35, float64(img.Cols())/1400)
	thick := max(1, int(math.Round(scale*1.5)))
	sz, base := gocv.GetTextSizeWithBaseline(text, gocv.FontHersheySimplex, scale, thick)
	pad := max(3, sz.Y/3)
	band := image.Rect(0, 0, min(img.Cols(), sz.X+2*pad), min(img.Rows(), sz.Y+base+2*pad))
	gocv.Rectangle(img, band, captionBack, -1)
	gocv.PutText(img, text, image.Pt(pad, pad+sz.Y), gocv.FontHersheySimplex, scale, captionColor, thick)
}

func encode(img gocv.Mat) ([]byte, error) {
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, img, []int{gocv.IMWriteJpegQuality, jpegQuality})
	if err != nil {
		return nil, fmt.Errorf("encode evidence jpeg: %w", err)
	}
	defer buf.Close()
	return bytes.Clone(buf.GetBytes()), nil
}
