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
	"unsafe"

	"github.com/asticode/go-astiav"
	"gocv.io/x/gocv"
)

// Write encodes frames (BGR 8UC3, all the same even size) at fps frames per
// second into an MP4 file at path: H.264 with libx264 when FFmpeg has it,
// MPEG-4 part 2 otherwise; the index (moov) is written first (faststart). The Mats are only read; the caller still owns them.
func Write(ctx context.Context, path string, frames []gocv.Mat, fps int) error {
	if err := write(ctx, path, frames, fps); err != nil {
		return fmt.Errorf("write test video %s: %w", path, err)
	}
	return nil
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

func write(ctx context.Context, path string, frames []gocv.Mat, fps int) (err error) {
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
