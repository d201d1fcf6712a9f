package evidence

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"strings"

	"gocv.io/x/gocv"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// ErrNothingToDraw says a score has neither a frame image nor a heatmap to draw.
var ErrNothingToDraw = errors.New("no frame image and no heatmap to draw evidence on")

// Colours (gocv's RGBA: R,G,B; A unused).
var (
	backColor   = color.RGBA{R: 28, G: 28, B: 32}
	emptyColor  = color.RGBA{R: 70, G: 70, B: 76}
	faceColor   = color.RGBA{R: 0, G: 255, B: 0}
	hotColor    = color.RGBA{R: 255, G: 255, B: 255}
	textColor   = color.RGBA{R: 255, G: 255, B: 255}
	labelColor  = color.RGBA{R: 190, G: 190, B: 200}
	shadowColor = color.RGBA{R: 0, G: 0, B: 0}
)

// colormap is OpenCV's COLORMAP_VIRIDIS (16; gocv v0.32 has no name for it): perceptually
// uniform and monotonic in lightness, so brighter always means hotter, also in grey print and
// for colour-blind readers (JET is neither).
const colormap gocv.ColormapTypes = 16

// heatAlpha is the heatmap's weight in the blend: enough to read the colours, little enough
// to still see the skin under them.
const heatAlpha = 0.5

// jpegQuality balances size (evidence is kept for days, several per video) against legibility.
const jpegQuality = 90

// Layout of the evidence image, in pixels: a header with the caption and the panel titles,
// then the aligned crop enlarged, the same crop with the heatmap, the legend bar (0 at the
// bottom, 1 at the top) and a thumbnail of the frame with the face box.
const (
	margin   = 8
	headerH  = 56
	panel    = 320 // side of the crop and heatmap panels
	legendW  = 14
	legendLW = 34 // room for the legend's labels
	thumbW   = 240
	panelY   = headerH
	cropX    = margin
	heatX    = cropX + panel + margin
	legendX  = heatX + panel + margin
	thumbX   = legendX + legendW + legendLW + margin
	canvasW  = thumbX + thumbW + margin
	canvasH  = panelY + panel + margin
)

// Width and Height are the size of every evidence image, whatever the frame's size.
const (
	Width  = canvasW
	Height = canvasH
)

// CropPanel is where the aligned crop is drawn in every evidence image.
var CropPanel = image.Rect(cropX, panelY, cropX+panel, panelY+panel)

// Render draws the evidence image of one scored face and returns it as JPEG.
//
// The image (canvasW×canvasH) has, left to right below a caption with score, time, frame,
// track and the named hot face part (see Part):
//   - the aligned face crop, enlarged to panel×panel: the scored crop itself when given (see
//     RenderWithCrop), else re-cut from the frame image (FrameImage of the same video and
//     frame, whose JPEG may be smaller than the frame) through the crop→frame affine: the
//     same geometry at the frame image's resolution;
//   - the same crop with the heatmap (viridis) alpha-blended over it and the hot region
//     outlined in white;
//   - the colour legend, 0 at the bottom to 1 at the top;
//   - a thumbnail of the whole frame with the face box in green.
//
// Without a usable frame image (expired from LAE_FRAMES, never published, not decodable) the
// crop panel and thumbnail say so and the heatmap panel shows the map alone; without a heatmap
// the heatmap panel says so. With neither, Render returns ErrNothingToDraw and the caller
// leaves Evidence.Image empty.
func Render(s *laev1.FrameScore, frame *laev1.FrameImage, loc Location) ([]byte, error) {
	return RenderWithCrop(s, frame, nil, loc)
}

// RenderWithCrop is Render with the aligned crop the detector scored (the FaceCrop of the same
// video, frame and face from LAE_FACES): its pixels fill the crop panel at full crop
// resolution instead of a re-cut from the (downscaled) frame image. A nil or malformed crop
// falls back to the re-cut.
func RenderWithCrop(s *laev1.FrameScore, frame *laev1.FrameImage, fc *laev1.FaceCrop, loc Location) ([]byte, error) {
	hasHeat := s.GetHeatmapWidth() > 0 && s.GetHeatmapHeight() > 0 &&
		len(s.GetHeatmap()) == int(s.GetHeatmapWidth())*int(s.GetHeatmapHeight())
	var img gocv.Mat
	if len(frame.GetJpeg()) > 0 {
		if m, err := gocv.IMDecode(frame.GetJpeg(), gocv.IMReadColor); err == nil {
			img = m
			defer img.Close()
		}
	}
	hasFrame := img.Ptr() != nil && !img.Empty()
	crop := gocv.NewMat()
	defer crop.Close()
	hasCrop := copyCrop(fc, &crop) == nil || hasFrame && cutCrop(s, frame, img, &crop) == nil
	if !hasFrame && !hasHeat && !hasCrop {
		return nil, ErrNothingToDraw
	}
	canvas := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(float64(backColor.B), float64(backColor.G), float64(backColor.R), 0),
		canvasH, canvasW, gocv.MatTypeCV8UC3)
	defer canvas.Close()

	cropRect := image.Rect(cropX, panelY, cropX+panel, panelY+panel)
	heatRect := image.Rect(heatX, panelY, heatX+panel, panelY+panel)
	if hasCrop {
		paste(&canvas, crop, cropRect)
	} else {
		placeholder(&canvas, cropRect, "no frame image")
	}
	if hasHeat {
		if err := drawHeat(&canvas, s, loc, crop, hasCrop, heatRect); err != nil {
			return nil, err
		}
	} else if hasCrop {
		paste(&canvas, crop, heatRect)
		label(&canvas, "no heatmap", image.Pt(heatX+8, panelY+panel-10), 0.55)
	} else {
		placeholder(&canvas, heatRect, "no heatmap")
	}
	if err := drawLegend(&canvas); err != nil {
		return nil, err
	}
	if hasFrame {
		drawThumb(&canvas, s, frame, img, loc)
	} else {
		placeholder(&canvas, image.Rect(thumbX, panelY, thumbX+thumbW, panelY+thumbW*9/16), "no frame image")
	}
	drawHeader(&canvas, s, Part(s, loc))
	return encode(canvas)
}

// copyCrop enlarges the crop message's pixels into a panel×panel Mat.
func copyCrop(fc *laev1.FaceCrop, dst *gocv.Mat) error {
	w, h := int(fc.GetWidth()), int(fc.GetHeight())
	if fc == nil || fc.GetFormat() != laev1.PixelFormat_PIXEL_FORMAT_BGR8 || w == 0 || h == 0 || len(fc.GetPixels()) != w*h*3 {
		return errors.New("no usable BGR8 crop")
	}
	src, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, fc.GetPixels())
	if err != nil {
		return fmt.Errorf("wrap %dx%d crop: %w", w, h, err)
	}
	defer src.Close()
	gocv.Resize(src, dst, image.Pt(panel, panel), 0, 0, gocv.InterpolationCubic)
	return nil
}

// cutCrop re-cuts the aligned crop from the frame image into a panel×panel Mat.
func cutCrop(s *laev1.FrameScore, fi *laev1.FrameImage, img gocv.Mat, dst *gocv.Mat) error {
	aff, err := ParseAffine(s.GetCropToFrame())
	if err != nil {
		return err
	}
	cw, ch := float64(s.GetCropWidth()), float64(s.GetCropHeight())
	if cw == 0 || ch == 0 {
		return fmt.Errorf("crop size %vx%v unknown", cw, ch)
	}
	sx, sy := imageScale(s, fi, img)
	// Panel pixel (p,q) -> crop pixel (kx*p + ox, ky*q + oy) (pixel centres) -> frame pixel by
	// the affine -> image pixel by (sx, sy): one composed affine, sampled in the inverse
	// direction so every panel pixel gets a value.
	kx, ky := cw/panel, ch/panel
	ox, oy := (kx-1)/2, (ky-1)/2
	m := [6]float64{
		sx * aff[0] * kx, sx * aff[1] * ky, sx * (aff[0]*ox + aff[1]*oy + aff[2]),
		sy * aff[3] * kx, sy * aff[4] * ky, sy * (aff[3]*ox + aff[4]*oy + aff[5]),
	}
	for _, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("crop affine is not finite")
		}
	}
	mat := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer mat.Close()
	for i, v := range m {
		mat.SetDoubleAt(i/3, i%3, v)
	}
	const warpInverseMap = 16 // cv::WARP_INVERSE_MAP
	gocv.WarpAffineWithParams(img, dst, mat, image.Pt(panel, panel),
		gocv.InterpolationLinear|warpInverseMap, gocv.BorderReplicate, color.RGBA{})
	return nil
}

// imageScale is the frame→frame-image scale: every coordinate is scaled by
// jpeg_width/frame_width and jpeg_height/frame_height.
func imageScale(s *laev1.FrameScore, fi *laev1.FrameImage, img gocv.Mat) (float64, float64) {
	fw, fh := fi.GetFrameWidth(), fi.GetFrameHeight()
	if fw == 0 || fh == 0 {
		fw, fh = s.GetFrameWidth(), s.GetFrameHeight()
	}
	if fw == 0 || fh == 0 {
		return 1, 1
	}
	return float64(img.Cols()) / float64(fw), float64(img.Rows()) / float64(fh)
}

// colorize maps an 8-bit map to the evidence colour map.
func colorize(src gocv.Mat, dst *gocv.Mat) { gocv.ApplyColorMap(src, dst, colormap) }

// drawHeat fills the heatmap panel: the coloured map blended over the crop (or alone), and the
// hot region outlined.
func drawHeat(canvas *gocv.Mat, s *laev1.FrameScore, loc Location, crop gocv.Mat, hasCrop bool, r image.Rectangle) error {
	hw, hh := int(s.GetHeatmapWidth()), int(s.GetHeatmapHeight())
	heat, err := gocv.NewMatFromBytes(hh, hw, gocv.MatTypeCV8U, s.GetHeatmap())
	if err != nil {
		return fmt.Errorf("render heatmap: wrap %dx%d heatmap: %w", hw, hh, err)
	}
	defer heat.Close()
	big := gocv.NewMat()
	defer big.Close()
	gocv.Resize(heat, &big, image.Pt(panel, panel), 0, 0, gocv.InterpolationLinear)
	colored := gocv.NewMat()
	defer colored.Close()
	colorize(big, &colored)
	if hasCrop {
		blended := gocv.NewMat()
		defer blended.Close()
		gocv.AddWeighted(crop, 1-heatAlpha, colored, heatAlpha, 0, &blended)
		paste(canvas, blended, r)
	} else {
		paste(canvas, colored, r)
	}
	if h := loc.HotHeat.Intersect(image.Rect(0, 0, hw, hh)); !h.Empty() {
		fx, fy := float64(panel)/float64(hw), float64(panel)/float64(hh)
		box := image.Rect(r.Min.X+int(float64(h.Min.X)*fx), r.Min.Y+int(float64(h.Min.Y)*fy),
			r.Min.X+int(math.Ceil(float64(h.Max.X)*fx))-1, r.Min.Y+int(math.Ceil(float64(h.Max.Y)*fy))-1)
		gocv.Rectangle(canvas, box, hotColor, 2)
	}
	if !hasCrop {
		label(canvas, "no frame image: heatmap alone", image.Pt(r.Min.X+8, r.Max.Y-10), 0.5)
	}
	return nil
}

// drawLegend draws the colour bar (1 at the top, 0 at the bottom) with its labels.
func drawLegend(canvas *gocv.Mat) error {
	ramp := make([]byte, 256)
	for i := range ramp {
		ramp[i] = byte(255 - i)
	}
	grad, err := gocv.NewMatFromBytes(256, 1, gocv.MatTypeCV8U, ramp)
	if err != nil {
		return fmt.Errorf("render legend: %w", err)
	}
	defer grad.Close()
	tall := gocv.NewMat()
	defer tall.Close()
	gocv.Resize(grad, &tall, image.Pt(legendW, panel), 0, 0, gocv.InterpolationLinear)
	colored := gocv.NewMat()
	defer colored.Close()
	colorize(tall, &colored)
	paste(canvas, colored, image.Rect(legendX, panelY, legendX+legendW, panelY+panel))
	for _, l := range []struct {
		text string
		y    int
	}{{"1", panelY + 12}, {"0.5", panelY + panel/2 + 5}, {"0", panelY + panel - 2}} {
		gocv.PutText(canvas, l.text, image.Pt(legendX+legendW+4, l.y), gocv.FontHersheySimplex, 0.45, labelColor, 1)
	}
	return nil
}

// drawThumb draws the frame, scaled to thumbW wide (at most panel tall), with the face box.
func drawThumb(canvas *gocv.Mat, s *laev1.FrameScore, fi *laev1.FrameImage, img gocv.Mat, loc Location) {
	k := math.Min(float64(thumbW)/float64(img.Cols()), float64(panel)/float64(img.Rows()))
	tw, th := max(1, int(float64(img.Cols())*k)), max(1, int(float64(img.Rows())*k))
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(img, &small, image.Pt(tw, th), 0, 0, gocv.InterpolationArea)
	sx, sy := imageScale(s, fi, img)
	f := loc.Face
	if f.W > 0 && f.H > 0 {
		x0, y0 := int(math.Floor(f.X*sx*k)), int(math.Floor(f.Y*sy*k))
		x1, y1 := int(math.Ceil((f.X+f.W)*sx*k)), int(math.Ceil((f.Y+f.H)*sy*k))
		// At least 6 px so a small face stays visible.
		if x1-x0 < 6 {
			x0, x1 = (x0+x1)/2-3, (x0+x1)/2+3
		}
		if y1-y0 < 6 {
			y0, y1 = (y0+y1)/2-3, (y0+y1)/2+3
		}
		gocv.Rectangle(&small, image.Rect(x0, y0, x1, y1), faceColor, 2)
	}
	paste(canvas, small, image.Rect(thumbX, panelY, thumbX+tw, panelY+th))
	y := panelY + th + 20
	for _, line := range []string{
		fmt.Sprintf("frame %d, face %d", s.GetFrameIndex(), s.GetFaceIndex()),
		fmt.Sprintf("%dx%d, face box in green", s.GetFrameWidth(), s.GetFrameHeight()),
	} {
		if y > canvasH-margin {
			break
		}
		gocv.PutText(canvas, line, image.Pt(thumbX, y), gocv.FontHersheySimplex, 0.45, labelColor, 1)
		y += 18
	}
}

// drawHeader writes the caption and the panel titles.
func drawHeader(canvas *gocv.Mat, s *laev1.FrameScore, part string) {
	text := fmt.Sprintf("face score %.3f   t=%s   track %d   frame %d", clamp(float64(s.GetScore()), 0, 1),
		timestamp(s.GetPtsSeconds()), s.GetTrackId(), s.GetFrameIndex())
	if part != "" {
		text += "   hot: " + part
		if strings.HasPrefix(part, "left") || strings.HasPrefix(part, "right") {
			text += " (subject's)"
		}
	}
	scale := 0.6
	if w := gocv.GetTextSize(text, gocv.FontHersheySimplex, scale, 1).X; w > canvasW-2*margin {
		scale *= float64(canvasW-2*margin) / float64(w)
	}
	gocv.PutText(canvas, text, image.Pt(margin, 22), gocv.FontHersheySimplex, scale, textColor, 1)
	for _, t := range []struct {
		text string
		x    int
	}{{"aligned face crop", cropX}, {"heatmap over the crop (viridis, 0..1)", heatX}, {"frame", thumbX}} {
		gocv.PutText(canvas, t.text, image.Pt(t.x, panelY-8), gocv.FontHersheySimplex, 0.45, labelColor, 1)
	}
}

// timestamp writes seconds as m:ss.ss (or s.ss under a minute).
func timestamp(sec float64) string {
	if math.IsNaN(sec) || math.IsInf(sec, 0) || sec < 0 {
		return "?"
	}
	if sec < 60 {
		return fmt.Sprintf("%.2fs", sec)
	}
	m := math.Floor(sec / 60)
	return fmt.Sprintf("%d:%05.2f", int(m), sec-60*m)
}

// placeholder fills r with grey and writes why it is empty.
func placeholder(canvas *gocv.Mat, r image.Rectangle, why string) {
	gocv.Rectangle(canvas, r, emptyColor, -1)
	label(canvas, why, image.Pt(r.Min.X+8, r.Min.Y+r.Dy()/2), 0.55)
}

// label writes text with a dark shadow so it reads on any background.
func label(canvas *gocv.Mat, text string, at image.Point, scale float64) {
	gocv.PutText(canvas, text, at.Add(image.Pt(1, 1)), gocv.FontHersheySimplex, scale, shadowColor, 2)
	gocv.PutText(canvas, text, at, gocv.FontHersheySimplex, scale, textColor, 1)
}

// paste copies src (of r's size) into canvas at r.
func paste(canvas *gocv.Mat, src gocv.Mat, r image.Rectangle) {
	roi := canvas.Region(r)
	defer roi.Close()
	src.CopyTo(&roi)
}

func encode(img gocv.Mat) ([]byte, error) {
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, img, []int{gocv.IMWriteJpegQuality, jpegQuality})
	if err != nil {
		return nil, fmt.Errorf("encode evidence jpeg: %w", err)
	}
	defer buf.Close()
	return bytes.Clone(buf.GetBytes()), nil
}
