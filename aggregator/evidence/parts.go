package evidence

import (
	"image"
	"math"

	"github.com/lae-screening/lae/ingest/align"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Face parts named by PartAt. Left and right are the subject's (anatomical convention, as a
// clinician or a photo caption would say): the subject's left eye is on the image's right.
const (
	PartLeftEye    = "left eye"
	PartRightEye   = "right eye"
	PartNose       = "nose"
	PartMouth      = "mouth"
	PartForehead   = "forehead"
	PartJawLine    = "jaw line"
	PartLeftCheek  = "left cheek"
	PartRightCheek = "right cheek"
	PartBackground = "background"
)

// Canonical face geometry in crop fractions (x right, y down), derived from ingest/align's eye
// positions: d is the eye distance, the eyes sit at y = EyeY. The nose tip lies about 0.57 d
// and the mouth centre about 1.15 d below the eye line (the ratios of the standard five-point
// face template), the chin about 1.8 d below it, and the face is about 2.1 d wide.
var (
	eyeD    = align.RightEyeX - align.LeftEyeX
	eyeMidX = (align.LeftEyeX + align.RightEyeX) / 2
)

// PartAt names the face part at crop fraction (u, v) of an aligned crop (0..1 across its width
// and height). The bands, in eye distances d below (+) or above (-) the eye line and from the
// face's vertical midline:
//
//	background: more than 1.3 d from the midline, or more than 2.1 d below / 1.6 d above the eyes
//	forehead:   above -0.35 d
//	eyes:       -0.35 d .. +0.35 d, within 0.5 d of an eye centre (between them, within
//	            0.15 d of the midline: the nose bridge, "nose")
//	cheek:      the rest of the eye band and of the middle face, beside nose and mouth
//	nose:       +0.35 d .. +0.85 d, within 0.35 d of the midline
//	mouth:      +0.85 d .. +1.45 d, within 0.6 d of the midline
//	jaw line:   below +1.45 d, or below +0.35 d and more than 0.95 d from the midline
func PartAt(u, v float64) string {
	dx := (u - eyeMidX) / eyeD // + is the image's right, the subject's left
	dy := (v - align.EyeY) / eyeD
	switch {
	case math.IsNaN(dx) || math.IsNaN(dy):
		return ""
	case math.Abs(dx) > 1.3 || dy > 2.1 || dy < -1.6:
		return PartBackground
	case dy < -0.35:
		return PartForehead
	case dy <= 0.35:
		switch {
		case math.Abs(dx) < 0.15:
			return PartNose
		case math.Abs(dx) <= 1.0:
			return side(dx, PartLeftEye, PartRightEye)
		default:
			return side(dx, PartLeftCheek, PartRightCheek)
		}
	case dy > 1.45 || math.Abs(dx) > 0.95:
		return PartJawLine
	case dy <= 0.85 && math.Abs(dx) <= 0.35:
		return PartNose
	case dy > 0.85 && math.Abs(dx) <= 0.6:
		return PartMouth
	default:
		return side(dx, PartLeftCheek, PartRightCheek)
	}
}

// side picks the subject's left name for the image's right half.
func side(dx float64, left, right string) string {
	if dx > 0 {
		return left
	}
	return right
}

// Part names the face part under the heatmap's peak inside the hot region of s (see PartAt);
// "" when there is no hot region (a flat or absent map singles out nothing).
func Part(s *laev1.FrameScore, loc Location) string {
	hw, hh := int(s.GetHeatmapWidth()), int(s.GetHeatmapHeight())
	heat := s.GetHeatmap()
	r := loc.HotHeat.Intersect(image.Rect(0, 0, hw, hh))
	if r.Empty() || len(heat) != hw*hh {
		return ""
	}
	bx, by, best := r.Min.X, r.Min.Y, -1
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if v := int(heat[y*hw+x]); v > best {
				bx, by, best = x, y, v
			}
		}
	}
	// Heatmap pixel centre as a fraction of the crop (the map spans the whole crop).
	return PartAt((float64(bx)+0.5)/float64(hw), (float64(by)+0.5)/float64(hh))
}
