package worker

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"gocv.io/x/gocv"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/detector/model"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// cropKey identifies a crop well enough to publish its score (subject and de-dup id).
type cropKey struct {
	videoID    string
	frameIndex uint64
	faceIndex  uint32
}

// job is one delivered crop message after decoding: either img is set, or reason says why the
// crop cannot be scored. key is nil when not even the crop's identity could be recovered.
type job struct {
	msg    jetstream.Msg
	crop   *laev1.FaceCrop // nil when the payload did not parse
	key    *cropKey
	img    model.Crop
	reason string
}

// decodeCrop turns a message payload into pixels. It never panics on input; a crop that
// cannot be scored comes back with reason set (and key when the identity is recoverable, so
// that an error score can still close the aggregator's count).
func decodeCrop(subject string, header map[string][]string, data []byte) job {
	var j job
	var c laev1.FaceCrop
	if err := proto.Unmarshal(data, &c); err != nil {
		j.reason = "malformed crop: " + oneLine(err.Error())
		j.key = keyFromMsgID(firstHeader(header, jetstream.MsgIDHeader), subject)
		return j
	}
	j.crop = &c
	// The subject is what the server's permissions control; the payload is whatever the
	// publisher wrote. A score goes to the subject's video, and a payload naming another
	// video is answered with an error score instead of being scored for either.
	fromSubject := videoFromSubject(subject)
	lying := fromSubject != "" && c.VideoId != "" && c.VideoId != fromSubject
	if lying {
		j.reason = fmt.Sprintf("crop names video %q but was published for %q", oneLine(c.VideoId), fromSubject)
	}
	if fromSubject != "" {
		c.VideoId = fromSubject
	}
	if laev1.ValidateVideoID(c.VideoId) == nil {
		j.key = &cropKey{videoID: c.VideoId, frameIndex: c.FrameIndex, faceIndex: c.FaceIndex}
	}
	if lying {
		return j
	}
	img, err := cropPixels(&c)
	if err != nil {
		j.reason = oneLine(err.Error())
		return j
	}
	if j.key == nil {
		j.reason = fmt.Sprintf("invalid video id %q", c.VideoId)
		return j
	}
	j.img = img
	return j
}

// cropPixels returns the crop as raw BGR, decoding JPEG or PNG payloads.
func cropPixels(c *laev1.FaceCrop) (model.Crop, error) {
	w, h := int(c.Width), int(c.Height)
	switch c.Format {
	case laev1.PixelFormat_PIXEL_FORMAT_BGR8:
		img := model.Crop{BGR: c.Pixels, Width: w, Height: h}
		if err := img.Validate(); err != nil {
			return model.Crop{}, fmt.Errorf("bad BGR8 crop: %w", err)
		}
		return img, nil
	case laev1.PixelFormat_PIXEL_FORMAT_JPEG, laev1.PixelFormat_PIXEL_FORMAT_PNG:
		return decodeImage(c.Pixels, c.Format)
	default:
		return model.Crop{}, fmt.Errorf("unsupported pixel format %v", c.Format)
	}
}

// decodeImage decodes a compressed crop with OpenCV (the same decoder ingest encodes with).
func decodeImage(b []byte, f laev1.PixelFormat) (model.Crop, error) {
	if len(b) == 0 {
		return model.Crop{}, fmt.Errorf("empty %v crop", f)
	}
	// Read the declared size first: a small payload can declare a huge image, and OpenCV would
	// allocate it before noticing anything.
	var cfg image.Config
	var err error
	if f == laev1.PixelFormat_PIXEL_FORMAT_JPEG {
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(b))
	} else {
		cfg, err = png.DecodeConfig(bytes.NewReader(b))
	}
	if err != nil {
		return model.Crop{}, fmt.Errorf("decode %v crop header: %w", f, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > model.MaxCropSide || cfg.Height > model.MaxCropSide {
		return model.Crop{}, fmt.Errorf("%v crop declares %dx%d: want 1..%d per side", f, cfg.Width, cfg.Height, model.MaxCropSide)
	}
	mat, err := gocv.IMDecode(b, gocv.IMReadColor)
	if err != nil {
		return model.Crop{}, fmt.Errorf("decode %v crop: %w", f, err)
	}
	defer mat.Close()
	if mat.Empty() || mat.Type() != gocv.MatTypeCV8UC3 {
		return model.Crop{}, fmt.Errorf("decode %v crop: not a readable image", f)
	}
	img := model.Crop{BGR: mat.ToBytes(), Width: mat.Cols(), Height: mat.Rows()}
	if err := img.Validate(); err != nil {
		return model.Crop{}, fmt.Errorf("decoded %v crop: %w", f, err)
	}
	return img, nil
}

// keyFromMsgID recovers the crop identity from ingest's de-dup id "crop/<video>/<frame>/<face>"
// (laev1.CropMsgID) when the payload itself is unreadable.
func keyFromMsgID(id, subject string) *cropKey {
	parts := strings.Split(id, "/")
	if len(parts) != 4 || parts[0] != "crop" {
		return nil
	}
	frame, err1 := strconv.ParseUint(parts[2], 10, 64)
	face, err2 := strconv.ParseUint(parts[3], 10, 32)
	if err := errors.Join(err1, err2, laev1.ValidateVideoID(parts[1])); err != nil {
		return nil
	}
	if v := videoFromSubject(subject); v != "" && v != parts[1] {
		return nil // the id contradicts the subject: trust neither
	}
	return &cropKey{videoID: parts[1], frameIndex: frame, faceIndex: uint32(face)}
}

// videoFromSubject extracts the video id from lae.faces.<video>.
func videoFromSubject(subject string) string {
	v, ok := strings.CutPrefix(subject, laev1.SubjectFacesPrefix)
	if !ok || laev1.ValidateVideoID(v) != nil {
		return ""
	}
	return v
}

func firstHeader(h map[string][]string, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// oneLine keeps reasons on one line (they travel in a NATS header and in logs), and short.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
