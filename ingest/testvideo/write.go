// Package testvideo makes the project's own video fixtures: it draws frames
// (synthetic cartoon faces or real face photos moving over a background) and
// encodes them to H.264 MP4 with FFmpeg through go-astiav, so that tests never
// depend on the ffmpeg CLI or on checked-in media.
package testvideo

/*
#cgo pkg-config: libavutil
#include <libavutil/frame.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"image"
	"unsafe"

	"github.com/asticode/go-astiav"
	"gocv.io/x/gocv"
)

// Write encodes frames (BGR 8UC3, all the same even size) at fps frames per
// second into an MP4 file at path: H.264 with libx264 when FFmpeg has it,
// MPEG-4 part 2 otherwise; the index (moov) is written first (faststart). The Mats are only read; the caller still owns them.
func Write(ctx context.Context, path string, frames []gocv.Mat, fps int) error {
	return WriteWith(ctx, path, frames, fps, WriteOptions{})
}

// WriteOptions choose how WriteWith stores the pictures and the metadata a
// player needs to show them as given. The zero value stores them as they are.
type WriteOptions struct {
	// Rotation (degrees clockwise: 0, 90, 180 or 270) and Mirror (flipped
	// left-right after turning) are recorded as the stream's display matrix
	// (the MP4 track matrix), and the pictures are stored turned back, as a
	// phone does: held upright it records its sensor's landscape pictures
	// with Rotation 90 (matrix 0 1 -1 0, FFmpeg's "rotation of -90 degrees").
	Rotation int
	Mirror   bool
	// SampleAspect, when set (Num and Den > 0), is recorded as the pixels'
	// shape (width:height, the MP4 pasp box and H.264 VUI), and the pictures
	// are stored squeezed to match, as anamorphic video is: 2:1 stores half
	// the width, 1:2 half the height. The squeezed size must stay even.
	SampleAspect astiav.Rational
}

// WriteWith is Write storing the frames as o says (turned, mirrored,
// anamorphic) with the metadata that shows them as given: the frames are
// what a viewer should see. The Mats are only read; the caller still owns
// them.
func WriteWith(ctx context.Context, path string, frames []gocv.Mat, fps int, o WriteOptions) error {
	if err := writeWith(ctx, path, frames, fps, o); err != nil {
		return fmt.Errorf("write test video %s: %w", path, err)
	}
	return nil
}

func writeWith(ctx context.Context, path string, frames []gocv.Mat, fps int, o WriteOptions) error {
	if o == (WriteOptions{}) {
		return write(ctx, path, frames, fps, o)
	}
	if o.Rotation%90 != 0 || o.Rotation < 0 || o.Rotation >= 360 {
		return fmt.Errorf("rotation %d: want 0, 90, 180 or 270", o.Rotation)
	}
	stored := make([]gocv.Mat, 0, len(frames))
	defer func() { CloseFrames(stored) }()
	for i, m := range frames {
		s, err := storedPicture(m, o)
		if err != nil {
			return fmt.Errorf("frame %d: %w", i, err)
		}
		stored = append(stored, s)
	}
	return write(ctx, path, stored, fps, o)
}

// storedPicture is what the file stores so that a player shows m: a player
// stretches the stored pixels to square, turns, then mirrors, so this undoes
// those in reverse order: unmirror, turn back, squeeze (the sample aspect
// belongs to the stored, turned pixels). The result is a new Mat.
func storedPicture(m gocv.Mat, o WriteOptions) (gocv.Mat, error) {
	out := m.Clone()
	step := func(f func(src gocv.Mat, dst *gocv.Mat)) {
		dst := gocv.NewMat()
		f(out, &dst)
		out.Close()
		out = dst
	}
	if o.Mirror {
		step(func(src gocv.Mat, dst *gocv.Mat) { gocv.Flip(src, dst, 1) })
	}
	switch o.Rotation {
	case 90:
		step(func(src gocv.Mat, dst *gocv.Mat) { gocv.Rotate(src, dst, gocv.Rotate90CounterClockwise) })
	case 180:
		step(func(src gocv.Mat, dst *gocv.Mat) { gocv.Rotate(src, dst, gocv.Rotate180Clockwise) })
	case 270:
		step(func(src gocv.Mat, dst *gocv.Mat) { gocv.Rotate(src, dst, gocv.Rotate90Clockwise) })
	}
	if r := o.SampleAspect; r.Num() > 0 && r.Den() > 0 && r.Num() != r.Den() {
		w, h := out.Cols(), out.Rows()
		// A player stretches the short pixel side: width by num/den when
		// pixels are wide, height by den/num when they are tall. The
		// squeezed side must be exact, or the stretch would not restore it.
		var exact bool
		if r.Num() > r.Den() {
			exact = w*r.Den()%r.Num() == 0
			w = w * r.Den() / r.Num()
		} else {
			exact = h*r.Num()%r.Den() == 0
			h = h * r.Num() / r.Den()
		}
		if !exact || w <= 0 || h <= 0 || w%2 != 0 || h%2 != 0 {
			sw, sh := out.Cols(), out.Rows()
			out.Close()
			return gocv.Mat{}, fmt.Errorf("sample aspect %d:%d does not squeeze %dx%d to an even size", r.Num(), r.Den(), sw, sh)
		}
		step(func(src gocv.Mat, dst *gocv.Mat) { gocv.Resize(src, dst, image.Pt(w, h), 0, 0, gocv.InterpolationArea) })
	}
	if out.Empty() {
		out.Close()
		return gocv.Mat{}, errors.New("OpenCV returned no image")
	}
	return out, nil
}

// displayMatrix is FFmpeg's display matrix (AV_PKT_DATA_DISPLAYMATRIX) for
// a clockwise turn by rotation degrees, then mirrored left-right when
// mirror: av_display_rotation_set, then av_display_matrix_flip's hflip,
// which negates the first column (a, c, x).
func displayMatrix(rotation int, mirror bool) []byte {
	m := astiav.NewDisplayMatrixFromRotation(float64(rotation))
	if mirror {
		for _, i := range []int{0, 3, 6} {
			m[i] = uint32(-int32(m[i]))
		}
	}
	return m.Bytes()
}

// Encoder reports the encoder Write uses: "libx264" or the fallback "mpeg4".
func Encoder() string {
	c, _ := pickEncoder()
	if c == nil {
		return ""
	}
	return c.Name()
}

func pickEncoder() (*astiav.Codec, bool) {
	if c := astiav.FindEncoderByName("libx264"); c != nil {
		return c, true
	}
	return astiav.FindEncoder(astiav.CodecIDMpeg4), false
}

func write(ctx context.Context, path string, frames []gocv.Mat, fps int, o WriteOptions) (err error) {
	if len(frames) == 0 {
		return errors.New("no frames")
	}
	if fps <= 0 {
		return fmt.Errorf("invalid fps %d", fps)
	}
	w, h := frames[0].Cols(), frames[0].Rows()
	if w <= 0 || h <= 0 || w%2 != 0 || h%2 != 0 {
		// yuv420p subsamples chroma by two in both directions.
		return fmt.Errorf("frame size %dx%d: width and height must be even and positive", w, h)
	}
	for i, m := range frames {
		if m.Cols() != w || m.Rows() != h || m.Type() != gocv.MatTypeCV8UC3 {
			return fmt.Errorf("frame %d is %dx%d type %v, want %dx%d 8UC3", i, m.Cols(), m.Rows(), m.Type(), w, h)
		}
	}
	codec, isX264 := pickEncoder()
	if codec == nil {
		return errors.New("no H.264 or MPEG-4 encoder in this FFmpeg")
	}

	// Every FFmpeg object is released on every path, in reverse order.
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	fc, err := astiav.AllocOutputFormatContext(nil, "mp4", path)
	if err != nil {
		return fmt.Errorf("allocate mp4 muxer: %w", err)
	}
	cleanups = append(cleanups, fc.Free)

	enc := astiav.AllocCodecContext(codec)
	if enc == nil {
		return errors.New("allocate encoder context")
	}
	cleanups = append(cleanups, enc.Free)
	enc.SetWidth(w)
	enc.SetHeight(h)
	enc.SetPixelFormat(astiav.PixelFormatYuv420P)
	enc.SetTimeBase(astiav.NewRational(1, fps))
	enc.SetFramerate(astiav.NewRational(fps, 1))
	enc.SetGopSize(2 * fps)
	if r := o.SampleAspect; r.Num() > 0 && r.Den() > 0 {
		enc.SetSampleAspectRatio(r)
	}
	if fc.OutputFormat().Flags().Has(astiav.IOFormatFlagGlobalheader) {
		enc.SetFlags(enc.Flags().Add(astiav.CodecContextFlagGlobalHeader))
	}
	opts := astiav.NewDictionary()
	defer opts.Free()
	if isX264 {
		// High quality keeps faces detectable after decoding; veryfast keeps
		// fixture generation cheap on small CI machines.
		_ = opts.Set("preset", "veryfast", 0)
		_ = opts.Set("crf", "18", 0)
	} else {
		enc.SetBitRate(int64(w) * int64(h) * int64(fps) / 4)
	}
	if err := enc.Open(codec, opts); err != nil {
		return fmt.Errorf("open %s encoder: %w", codec.Name(), err)
	}

	st := fc.NewStream(nil)
	if st == nil {
		return errors.New("add video stream")
	}
	if err := st.CodecParameters().FromCodecContext(enc); err != nil {
		return fmt.Errorf("set stream parameters: %w", err)
	}
	st.SetTimeBase(enc.TimeBase())
	if r := o.SampleAspect; r.Num() > 0 && r.Den() > 0 {
		// The muxer refuses a stream SAR that differs from the codec's.
		st.SetSampleAspectRatio(r)
	}
	if o.Rotation != 0 || o.Mirror {
		// The mp4 muxer writes this side data as the track (tkhd) matrix.
		if err := st.AddSideData(astiav.PacketSideDataTypeDisplaymatrix, displayMatrix(o.Rotation, o.Mirror)); err != nil {
			return fmt.Errorf("set display matrix: %w", err)
		}
	}

	if !fc.OutputFormat().Flags().Has(astiav.IOFormatFlagNofile) {
		ioc, err := astiav.OpenIOContext(path, astiav.NewIOContextFlags(astiav.IOContextFlagWrite))
		if err != nil {
			return fmt.Errorf("create file: %w", err)
		}
		cleanups = append(cleanups, func() { _ = ioc.Close() })
		fc.SetPb(ioc)
	}
	// faststart moves the index (moov) before the media data, as streaming
	// services do: the file plays over plain HTTP, and a truncated copy
	// keeps its index and loses only frames.
	muxOpts := astiav.NewDictionary()
	defer muxOpts.Free()
	_ = muxOpts.Set("movflags", "+faststart", 0)
	if err := fc.WriteHeader(muxOpts); err != nil {
		return fmt.Errorf("write header: %w", err)
	}

	bgr := astiav.AllocFrame()
	cleanups = append(cleanups, bgr.Free)
	bgr.SetWidth(w)
	bgr.SetHeight(h)
	bgr.SetPixelFormat(astiav.PixelFormatBgr24)
	if err := bgr.AllocBuffer(0); err != nil {
		return fmt.Errorf("allocate bgr frame: %w", err)
	}
	sws, err := astiav.CreateSoftwareScaleContext(w, h, astiav.PixelFormatBgr24, w, h, astiav.PixelFormatYuv420P,
		astiav.NewSoftwareScaleContextFlags(astiav.SoftwareScaleContextFlagBilinear))
	if err != nil {
		return fmt.Errorf("create scaler: %w", err)
	}
	cleanups = append(cleanups, sws.Free)
	pkt := astiav.AllocPacket()
	cleanups = append(cleanups, pkt.Free)

	for i, m := range frames {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyMatToFrame(m, bgr); err != nil {
			return fmt.Errorf("frame %d: %w", i, err)
		}
		if err := encodeOne(enc, fc, st, pkt, sws, bgr, int64(i)); err != nil {
			return fmt.Errorf("frame %d: %w", i, err)
		}
	}
	if err := enc.SendFrame(nil); err != nil {
		return fmt.Errorf("flush encoder: %w", err)
	}
	if err := drain(enc, fc, st, pkt); err != nil {
		return err
	}
	if err := fc.WriteTrailer(); err != nil {
		return fmt.Errorf("write trailer: %w", err)
	}
	return nil
}

// encodeOne converts bgr to a fresh yuv420p frame and sends it. A fresh frame
// per picture matters: the encoder may keep a reference to it while it looks
// ahead, so reusing one buffer would overwrite pictures not yet encoded.
func encodeOne(enc *astiav.CodecContext, fc *astiav.FormatContext, st *astiav.Stream, pkt *astiav.Packet,
	sws *astiav.SoftwareScaleContext, bgr *astiav.Frame, pts int64) error {
	yuv := astiav.AllocFrame()
	defer yuv.Free()
	if err := sws.ScaleFrame(bgr, yuv); err != nil {
		return fmt.Errorf("convert to yuv420p: %w", err)
	}
	yuv.SetPts(pts)
	if err := enc.SendFrame(yuv); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return drain(enc, fc, st, pkt)
}

// drain moves every packet the encoder has ready into the muxer.
func drain(enc *astiav.CodecContext, fc *astiav.FormatContext, st *astiav.Stream, pkt *astiav.Packet) error {
	for {
		err := enc.ReceivePacket(pkt)
		if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receive packet: %w", err)
		}
		if pkt.Duration() <= 0 {
			// Without a duration the muxer gives the last sample length
			// zero and the edit list hides it from decoders.
			pkt.SetDuration(1)
		}
		pkt.RescaleTs(enc.TimeBase(), st.TimeBase())
		pkt.SetStreamIndex(st.Index())
		err = fc.WriteInterleavedFrame(pkt)
		pkt.Unref()
		if err != nil {
			return fmt.Errorf("mux packet: %w", err)
		}
	}
}

// copyMatToFrame copies a BGR Mat into a bgr24 frame row by row, because the
// frame's rows are padded (linesize) while a continuous Mat's are not.
// go-astiav has no writer for frame data, hence the small cgo seam.
func copyMatToFrame(m gocv.Mat, f *astiav.Frame) error {
	src := m
	if !m.IsContinuous() {
		src = m.Clone()
		defer src.Close()
	}
	b, err := src.DataPtrUint8()
	if err != nil {
		return fmt.Errorf("read mat: %w", err)
	}
	w, h := f.Width(), f.Height()
	row := w * 3
	if len(b) < row*h {
		return fmt.Errorf("mat holds %d bytes, need %d", len(b), row*h)
	}
	cf := (*C.AVFrame)(f.UnsafePointer())
	ls := int(cf.linesize[0])
	if ls < row {
		return fmt.Errorf("frame linesize %d < row %d", ls, row)
	}
	dst := unsafe.Slice((*byte)(unsafe.Pointer(cf.data[0])), ls*h)
	for y := 0; y < h; y++ {
		copy(dst[y*ls:y*ls+row], b[y*row:(y+1)*row])
	}
	return nil
}
