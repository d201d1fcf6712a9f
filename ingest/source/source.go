// Package source opens a video file or stream with FFmpeg (through
// go-astiav), decodes its first video stream with frame threading, keeps the
// frames that fall on a presentation-time sampling grid and hands them out as
// BGR gocv.Mats the way a player shows them: upright (the stream's display
// matrix: phone clips store portrait video as turned landscape pictures),
// with square pixels (the sample aspect ratio) and no larger than
// Options.MaxFrameSide.
//
// The package logs nothing: every problem is either returned as an error
// (wrapped with the URL) or, for damage confined to single packets, counted in
// Stats.Errors. FFmpeg's own log output is process-wide and is left to the
// program (astiav.SetLogLevel).
package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asticode/go-astiav"
	"gocv.io/x/gocv"
)

// Errors that Open and Next wrap, so callers can tell failures apart with
// errors.Is. The wrapped message always starts with what was being done and
// the URL, e.g. `open clip.mp4: no such file`.
var (
	// ErrNoSuchFile: a local path that does not exist.
	ErrNoSuchFile = errors.New("no such file")
	// ErrEmptyFile: a local file of zero bytes.
	ErrEmptyFile = errors.New("empty file")
	// ErrNotMedia: FFmpeg could not recognise the container (an HTML page
	// named .avi, an mp4 without its moov atom, random bytes).
	ErrNotMedia = errors.New("not a readable media file")
	// ErrNoVideoStream: the container holds no decodable video stream.
	ErrNoVideoStream = errors.New("no video stream")
	// ErrTimeout: opening took longer than Options.OpenTimeout, or the
	// source stalled for longer than Options.ReadTimeout.
	ErrTimeout = errors.New("timed out")
	// ErrUnreachable: the network source refused or could not be reached.
	ErrUnreachable = errors.New("stream unreachable")
	// ErrClosed: Next was called after Close.
	ErrClosed = errors.New("source closed")
)

const (
	defaultOpenTimeout = 15 * time.Second
	defaultReadTimeout = 15 * time.Second
	// maxConsecutiveErrors bounds how many damaged packets in a row are
	// skipped before the source is declared unreadable; it keeps a stream of
	// pure garbage from spinning forever while tolerating local damage.
	maxConsecutiveErrors = 256
	// fallbackFPS is assumed for timestamp-less frames when the stream does
	// not declare a frame rate either.
	fallbackFPS = 25.0
	// sampleEpsilon absorbs float rounding when a frame lands exactly on a
	// sampling instant (e.g. pts 0.2 s at 5 fps).
	sampleEpsilon = 1e-6
	// maxBackwardJump is how far (seconds) timestamps may step back before
	// it is treated as a reset rather than B-frame reordering noise.
	maxBackwardJump = 1.0
)

// Options tune Open. The zero value decodes every frame with default
// timeouts and size limits.
type Options struct {
	SampleFPS   float64       // frames per second to keep, by presentation time; 0 = every frame. Default 5 is the caller's job.
	MaxDuration time.Duration // stop after this much media time; 0 = no limit
	OpenTimeout time.Duration // bound on opening/probing (network sources); 0 = 15s
	ReadTimeout time.Duration // a stalled source fails after this; 0 = 15s
	Threads     int           // decoder threads (frame threading); 0 = auto
	// Policy, when set, holds network sources to a source policy (policy.go): submitted URLs
	// in lae serve and lae ingest. nil = no restriction (lae scan, tools).
	Policy *Policy

	// MaxFrameSide bounds the longer side of the frames Next returns: larger
	// pictures (after the sample aspect ratio is applied) are shrunk, keeping
	// their shape, in the same swscale pass that converts them to BGR, so no
	// full-size BGR copy is ever made. The face detectors work on a
	// downscaled copy anyway; this keeps the frames every later stage holds
	// at bounded size. 0 = DefaultMaxFrameSide; < 0 = no limit.
	MaxFrameSide int
	// MaxFramePixels refuses, with ErrFrameTooLarge, a stream whose coded
	// pictures have more pixels than this: the decoder keeps several
	// pictures of that size, which downscaling its output cannot shrink.
	// Checked at open (before probing when the container declares the size)
	// and on every frame; the decoder is also told (max_pixels), so it does
	// not allocate pictures far above it mid-stream.
	// 0 = DefaultMaxFramePixels; < 0 = no limit.
	MaxFramePixels int
}

// Info describes the opened video stream.
type Info struct {
	URL string
	// Width and Height are the size of the frames Next returns (upright,
	// square pixels, within MaxFrameSide), as declared when the stream was
	// opened; a stream that changes resolution mid-way changes its frames.
	Width  int
	Height int
	// CodedWidth and CodedHeight are the pictures' size as stored, before
	// the sample aspect ratio, MaxFrameSide and the display matrix apply.
	CodedWidth  int
	CodedHeight int
	// Rotation is the clockwise turn in degrees (0, 90, 180 or 270) applied
	// to show the stored pictures upright, from the display matrix; Mirrored
	// says they are also flipped left-right after turning.
	Rotation int
	Mirrored bool
	FPS      float64       // declared average frame rate; 0 when unknown
	Duration time.Duration // 0 when unknown (live sources)
	Codec    string        // decoder name, e.g. "h264"
	Live     bool          // network stream or unknown duration
	// Format is the container format as FFmpeg names it (e.g. "mov,mp4,m4a,3gp,3g2,mj2").
	Format string
}

// Frame is one sampled, decoded video frame.
type Frame struct {
	Index       uint64   // index among decoded frames
	SampleIndex uint64   // index among sampled frames
	PTS         float64  // seconds from stream start
	Image       gocv.Mat // BGR 8UC3, owned by the caller, who must Close it
}

// Stats counts what a Source has done so far.
type Stats struct {
	FramesDecoded uint64
	FramesSampled uint64
	Errors        uint64 // damaged packets/frames that were skipped
}

// Source is an opened video source. It is not safe for concurrent use: one
// goroutine calls Next and finally Close.
type Source struct {
	url  string
	opts Options
	info Info

	fc        *astiav.FormatContext
	inputOpen bool // OpenInput succeeded: CloseInput owns fc
	codecName string
	intr      astiav.IOInterrupter
	intrOnce  sync.Once // interruption is final; Once keeps concurrent raisers from racing on the flag
	dec       *astiav.CodecContext
	stream    *astiav.Stream // the decoded video stream, owned by fc
	orient    orientation    // display matrix of the stream, applied to every frame
	pkt       *astiav.Packet
	frame     *astiav.Frame
	bgr       *astiav.Frame
	sws       *astiav.SoftwareScaleContext
	swsKey    swsKey
	streamIdx int
	timeBase  float64 // seconds per pts tick
	startPTS  int64   // pts of stream start, NoPtsValue until known
	ptsOffset float64 // seconds added after timestamp resets

	stallTimer *time.Timer
	stalled    atomic.Bool

	haveLast   bool
	lastPTS    float64
	nextSample float64
	consecErrs int
	draining   bool // flush packet sent, only buffered frames remain
	pending    bool // s.pkt still has to be sent to the decoder
	done       bool
	err        error // sticky terminal error
	closed     bool

	stats Stats
}

// swsKey is what the scaler was made for: source geometry and format, and
// the output size (which changes with the sample aspect ratio).
type swsKey struct {
	w, h   int
	pf     astiav.PixelFormat
	dw, dh int
}

// Open opens url (see ValidateURL for what is accepted), probes it and
// prepares the decoder of its first video stream. It fails within
// o.OpenTimeout for unreachable network sources, and as soon as ctx is done.
func Open(ctx context.Context, url string, o Options) (*Source, error) {
	s, err := open(ctx, url, o)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", url, err)
	}
	return s, nil
}

func open(ctx context.Context, url string, o Options) (_ *Source, err error) {
	defer o.Policy.conceal(ctx, url, &err)
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = defaultOpenTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = defaultReadTimeout
	}
	if o.SampleFPS < 0 || math.IsNaN(o.SampleFPS) || math.IsInf(o.SampleFPS, 0) {
		return nil, fmt.Errorf("invalid SampleFPS %v", o.SampleFPS)
	}
	if o.MaxFrameSide == 0 {
		o.MaxFrameSide = DefaultMaxFrameSide
	}
	if o.MaxFramePixels == 0 {
		o.MaxFramePixels = DefaultMaxFramePixels
	}
	scheme, ffURL, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	fopts := formatOptions(scheme, o)
	if ffURL, err = o.Policy.admit(ctx, scheme, ffURL, fopts); err != nil {
		return nil, err
	}
	if scheme == "file" {
		// FFmpeg's own message for these ("No such file or directory",
		// "Invalid data found") is less precise than a stat.
		if err := checkLocalFile(ffURL[len("file:"):]); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	s := &Source{url: url, opts: o, streamIdx: -1, startPTS: astiav.NoPtsValue}
	liveSources.Add(1)
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	s.fc = astiav.AllocFormatContext()
	if s.fc == nil {
		return nil, errors.New("allocate format context")
	}
	// The interrupt flag is FFmpeg's only way out of a blocked network
	// call: it is raised when ctx ends, when OpenTimeout passes and when a
	// read stalls past ReadTimeout.
	s.intr = s.fc.SetInterruptCallback()
	openCtx, cancel := context.WithTimeout(ctx, o.OpenTimeout)
	defer cancel()
	stopWatch := context.AfterFunc(openCtx, s.interrupt)

	dict := astiav.NewDictionary()
	defer dict.Free()
	for k, v := range fopts {
		if err := dict.Set(k, v, 0); err != nil {
			return nil, fmt.Errorf("set format option %s: %w", k, err)
		}
	}
	openErr := s.fc.OpenInput(ffURL, nil, dict)
	if openErr == nil {
		s.inputOpen = true
		// Probing decodes a first picture; refuse an oversized one before
		// that when the container (mp4, mkv) already declares its size.
		if vs := firstVideoStream(s.fc); vs != nil {
			openErr = checkPixels(vs.CodecParameters().Width(), vs.CodecParameters().Height(), o.MaxFramePixels)
		}
	}
	if openErr == nil {
		openErr = s.fc.FindStreamInfo(nil)
	}
	interrupted := !stopWatch()
	switch {
	case interrupted && ctx.Err() != nil:
		return nil, ctx.Err()
	case interrupted:
		return nil, fmt.Errorf("%w after %v", ErrTimeout, o.OpenTimeout)
	case openErr != nil:
		return nil, classifyOpenError(openErr)
	}

	if err := s.openDecoder(); err != nil {
		return nil, err
	}
	s.fillInfo(scheme)

	s.pkt = astiav.AllocPacket()
	s.frame = astiav.AllocFrame()
	s.bgr = astiav.AllocFrame()
	if s.pkt == nil || s.frame == nil || s.bgr == nil {
		return nil, errors.New("allocate packet/frames")
	}
	s.stallTimer = time.AfterFunc(time.Hour, func() {
		s.stalled.Store(true)
		s.interrupt()
	})
	s.stallTimer.Stop()
	return s, nil
}

// interrupt raises FFmpeg's interrupt flag: every blocking I/O call of this
// source returns AVERROR_EXIT from then on.
func (s *Source) interrupt() { s.intrOnce.Do(s.intr.Interrupt) }

// formatOptions are the demuxer/protocol options for scheme. Timeouts are in
// microseconds. "timeout" means different things per protocol (for rtmp it
// would switch to listen mode), so it is only set where it is the socket
// I/O timeout.
func formatOptions(scheme string, o Options) map[string]string {
	us := func(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }
	opts := map[string]string{
		"protocol_whitelist": protocolWhitelist[scheme],
		"rw_timeout":         us(o.ReadTimeout),
	}
	switch scheme {
	case "http", "https", "rtsp", "rtsps", "udp", "tcp", "srt":
		opts["timeout"] = us(o.ReadTimeout)
	}
	if scheme == "srt" {
		opts["connect_timeout"] = strconv.FormatInt(o.OpenTimeout.Milliseconds(), 10)
	}
	return opts
}

// checkLocalFile gives the precise error for a missing, unreadable or empty
// local file before FFmpeg sees it.
func checkLocalFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return ErrNoSuchFile
	case err != nil:
		return fmt.Errorf("stat: %w", err)
	case st.IsDir():
		return errors.New("is a directory")
	case st.Size() == 0:
		return ErrEmptyFile
	}
	return nil
}

// classifyOpenError maps FFmpeg's open/probe errors onto the package's
// sentinels while keeping FFmpeg's wording for the details.
func classifyOpenError(err error) error {
	var ae astiav.Error
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case errors.Is(ae, astiav.ErrInvaliddata), errors.Is(ae, astiav.ErrEof),
		errors.Is(ae, astiav.ErrDemuxerNotFound):
		return fmt.Errorf("%w: %w", ErrNotMedia, err)
	case errors.Is(ae, astiav.ErrEtimedout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(ae, astiav.Error(-int(syscall.ENOENT))):
		return ErrNoSuchFile
	case isUnreachable(ae):
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

func isUnreachable(e astiav.Error) bool {
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
		syscall.ECONNRESET, syscall.EIO} {
		if int(e) == -int(errno) {
			return true
		}
	}
	return errors.Is(e, astiav.ErrHttpNotFound) || errors.Is(e, astiav.ErrHttpForbidden) ||
		errors.Is(e, astiav.ErrHttpUnauthorized) || errors.Is(e, astiav.ErrHttpOther4Xx) ||
		errors.Is(e, astiav.ErrHttpServerError) || errors.Is(e, astiav.ErrHttpBadRequest)
}

// firstVideoStream is the stream Source decodes, nil when there is none.
func firstVideoStream(fc *astiav.FormatContext) *astiav.Stream {
	for _, st := range fc.Streams() {
		if st.CodecParameters().MediaType() == astiav.MediaTypeVideo {
			return st
		}
	}
	return nil
}

// openDecoder picks the first video stream and opens its decoder with frame
// threading.
func (s *Source) openDecoder() error {
	vs := firstVideoStream(s.fc)
	if vs == nil {
		if !hasKnownStream(s.fc) {
			// What a cut-off mp4 index looks like to the demuxer.
			return fmt.Errorf("%w: no streams found (truncated or damaged container)", ErrNotMedia)
		}
		return ErrNoVideoStream
	}
	cp := vs.CodecParameters()
	if err := checkPixels(cp.Width(), cp.Height(), s.opts.MaxFramePixels); err != nil {
		return err
	}
	codec := astiav.FindDecoder(cp.CodecID())
	if codec == nil {
		return fmt.Errorf("%w: no decoder for codec %s", ErrNoVideoStream, cp.CodecID())
	}
	s.dec = astiav.AllocCodecContext(codec)
	if s.dec == nil {
		return errors.New("allocate decoder context")
	}
	if err := cp.ToCodecContext(s.dec); err != nil {
		return fmt.Errorf("configure decoder: %w", err)
	}
	// Frame threading decodes several frames in parallel; it is where the
	// decode throughput on multi-core machines comes from.
	s.dec.SetThreadType(astiav.ThreadTypeFrame)
	s.dec.SetThreadCount(s.opts.Threads)
	decOpts := astiav.NewDictionary()
	defer decOpts.Free()
	if s.opts.MaxFramePixels > 0 {
		// FFmpeg checks max_pixels against the width padded to its stride
		// alignment (at most 63 columns more: under 1/8 for pictures at
		// least 512 wide), so it gets that headroom and onFrame applies
		// the exact limit.
		limit := min(int64(s.opts.MaxFramePixels)+int64(s.opts.MaxFramePixels)/8, math.MaxInt32)
		if err := decOpts.Set("max_pixels", strconv.FormatInt(limit, 10), 0); err != nil {
			return fmt.Errorf("set decoder option max_pixels: %w", err)
		}
	}
	if err := s.dec.Open(codec, decOpts); err != nil {
		return fmt.Errorf("open %s decoder: %w", codec.Name(), err)
	}
	s.stream = vs
	// The display matrix is stream side data (FFmpeg 5.1 does not copy it
	// onto frames); a per-frame one (H.264's rare display-orientation SEI)
	// is not looked at.
	s.orient = orientationOf(vs.SideData(astiav.PacketSideDataTypeDisplaymatrix))
	s.streamIdx = vs.Index()
	s.codecName = codec.Name()
	s.timeBase = vs.TimeBase().Float64()
	if st := vs.StartTime(); st != astiav.NoPtsValue {
		s.startPTS = st
	}
	return nil
}

// hasKnownStream reports whether any stream has a real media type; a
// container cut inside its index yields none or only half-parsed ones.
func hasKnownStream(fc *astiav.FormatContext) bool {
	for _, st := range fc.Streams() {
		switch st.CodecParameters().MediaType() {
		case astiav.MediaTypeAudio, astiav.MediaTypeSubtitle, astiav.MediaTypeAttachment:
			return true
		}
	}
	return false
}

func (s *Source) fillInfo(scheme string) {
	vs := s.fc.Streams()[s.streamIdx]
	cp := vs.CodecParameters()
	fps := vs.AvgFrameRate().Float64()
	if fps <= 0 || math.IsNaN(fps) || math.IsInf(fps, 0) {
		fps = vs.RFrameRate().Float64()
	}
	if fps <= 0 || math.IsNaN(fps) || math.IsInf(fps, 0) || fps > 1000 {
		fps = 0
	}
	// The video stream's own duration is what Next will deliver; the
	// container's may include leading audio or trailing data.
	var dur time.Duration
	if d := vs.Duration(); d > 0 && d != astiav.NoPtsValue {
		dur = time.Duration(float64(d) * s.timeBase * float64(time.Second))
	} else if d := s.fc.Duration(); d > 0 && d != astiav.NoPtsValue {
		dur = time.Duration(d) * time.Microsecond // AV_TIME_BASE units
	}
	w, h := scaledSize(cp.Width(), cp.Height(), s.fc.GuessSampleAspectRatio(vs, nil), s.opts.MaxFrameSide)
	if s.orient.swapsSides() {
		w, h = h, w
	}
	s.info = Info{
		URL:         s.url,
		Width:       w,
		Height:      h,
		CodedWidth:  cp.Width(),
		CodedHeight: cp.Height(),
		Rotation:    s.orient.degrees(),
		Mirrored:    s.orient.mirror,
		FPS:         fps,
		Duration:    dur,
		Codec:       s.codecName,
		Live:        liveSchemes[scheme] || dur <= 0,
	}
	if f := s.fc.InputFormat(); f != nil {
		s.info.Format = f.Name()
	}
	if liveSchemes[scheme] {
		// Whatever FFmpeg estimated from the first packets of a live
		// stream is not its length.
		s.info.Duration = 0
	}
}

// Info describes the opened stream.
func (s *Source) Info() Info { return s.info }

// Stats returns the counters so far.
func (s *Source) Stats() Stats { return s.stats }

// Next returns the next sampled frame, io.EOF after the last one (or once
// Options.MaxDuration of media time has been decoded). Damaged packets are
// skipped and counted in Stats.Errors. After any other error the source is
// finished and every later call returns the same error.
func (s *Source) Next(ctx context.Context) (Frame, error) {
	if s.closed {
		return Frame{}, fmt.Errorf("decode %s: %w", s.url, ErrClosed)
	}
	if s.err != nil {
		return Frame{}, s.err
	}
	if s.done {
		return Frame{}, io.EOF
	}
	f, err := s.next(ctx)
	switch {
	case err == io.EOF:
		s.done = true
	case err != nil:
		s.err = fmt.Errorf("decode %s: %w", s.url, err)
		return Frame{}, s.err
	}
	return f, err
}

func (s *Source) next(ctx context.Context) (Frame, error) {
	if err := ctx.Err(); err != nil {
		return Frame{}, err
	}
	stop := context.AfterFunc(ctx, s.interrupt)
	defer stop()
	for {
		if err := ctx.Err(); err != nil {
			return Frame{}, err
		}
		err := s.dec.ReceiveFrame(s.frame)
		switch {
		case err == nil:
			f, keep, err := s.onFrame()
			s.frame.Unref()
			if err != nil || keep {
				return f, err
			}
			continue
		case errors.Is(err, astiav.ErrEof):
			return Frame{}, io.EOF
		case errors.Is(err, astiav.ErrEagain):
			// The decoder wants more input.
		default:
			if err := s.countError(err); err != nil {
				return Frame{}, err
			}
			continue
		}
		if s.draining {
			// Only reachable if a decoder answers EAGAIN after a flush,
			// which would otherwise loop forever.
			return Frame{}, io.EOF
		}
		if err := s.feed(ctx); err != nil {
			return Frame{}, err
		}
	}
}

// feed reads one packet of the video stream and sends it to the decoder; at
// the end of input it sends the flush packet instead.
func (s *Source) feed(ctx context.Context) error {
	if s.pending {
		// The decoder refused this packet earlier until frames were read.
		return s.send()
	}
	for {
		s.stallTimer.Reset(s.opts.ReadTimeout)
		err := s.fc.ReadFrame(s.pkt)
		s.stallTimer.Stop()
		switch {
		case err == nil:
		case errors.Is(err, astiav.ErrEof):
			s.draining = true
			if err := s.dec.SendPacket(nil); err != nil && !errors.Is(err, astiav.ErrEof) {
				return fmt.Errorf("flush decoder: %w", err)
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case s.stalled.Load() || errors.Is(err, astiav.ErrEtimedout):
			// Our stall timer or FFmpeg's rw_timeout, whichever fired first.
			return fmt.Errorf("%w: no data for %v", ErrTimeout, s.opts.ReadTimeout)
		case errors.Is(err, astiav.ErrEagain):
			continue
		case errors.Is(err, astiav.ErrInvaliddata):
			if err := s.countError(err); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("read packet: %w", err)
		}
		if s.pkt.StreamIndex() != s.streamIdx {
			s.pkt.Unref()
			continue
		}
		if err := s.send(); !errors.Is(err, errSkipped) {
			return err
		}
	}
}

// errSkipped marks a packet the decoder rejected and that was counted.
var errSkipped = errors.New("packet skipped")

// send hands s.pkt to the decoder. A packet the decoder rejects outright
// (corrupt header, truncated NAL) is counted and skipped (errSkipped); one it
// cannot take yet (EAGAIN) is kept for the next feed.
func (s *Source) send() error {
	err := s.dec.SendPacket(s.pkt)
	s.pending = errors.Is(err, astiav.ErrEagain)
	if s.pending {
		return nil
	}
	s.pkt.Unref()
	if err != nil {
		if err := s.countError(err); err != nil {
			return err
		}
		return errSkipped
	}
	return nil
}

// countError records a skipped packet or frame and fails once too many have
// come in a row.
func (s *Source) countError(err error) error {
	s.stats.Errors++
	s.consecErrs++
	if s.consecErrs > maxConsecutiveErrors {
		return fmt.Errorf("%d consecutive decoding errors, last: %w", s.consecErrs, err)
	}
	return nil
}

// onFrame handles one decoded frame: timestamps it, applies MaxDuration and
// the sampling grid, and converts kept frames to BGR.
func (s *Source) onFrame() (Frame, bool, error) {
	s.consecErrs = 0
	idx := s.stats.FramesDecoded
	s.stats.FramesDecoded++
	t := s.frameTime()
	if s.opts.MaxDuration > 0 && t >= s.opts.MaxDuration.Seconds() {
		return Frame{}, false, io.EOF
	}
	if fps := s.opts.SampleFPS; fps > 0 {
		if t+sampleEpsilon < s.nextSample {
			return Frame{}, false, nil
		}
		// Next instant on the grid k/fps strictly after t; computed from t
		// rather than incremented so a gap in the stream does not produce a
		// burst of catch-up samples.
		s.nextSample = (math.Floor(t*fps+sampleEpsilon) + 1) / fps
	}
	if err := checkPixels(s.frame.Width(), s.frame.Height(), s.opts.MaxFramePixels); err != nil {
		// A stream that grows mid-way past the limit is refused as a
		// whole, like one that starts that large.
		return Frame{}, false, err
	}
	img, err := s.picture()
	if err != nil {
		// A frame that cannot be converted (zero size, odd format) is
		// damage, not the end of the stream.
		if cerr := s.countError(err); cerr != nil {
			return Frame{}, false, cerr
		}
		return Frame{}, false, nil
	}
	f := Frame{Index: idx, SampleIndex: s.stats.FramesSampled, PTS: t, Image: img}
	s.stats.FramesSampled++
	return f, true, nil
}

// frameTime returns the frame's presentation time in seconds from the stream
// start, falling back to the packet dts and then to the previous frame plus
// one frame interval when the stream carries no timestamps.
func (s *Source) frameTime() float64 {
	pts := s.frame.Pts()
	if pts == astiav.NoPtsValue {
		pts = s.frame.PktDts()
	}
	var t float64
	switch {
	case pts != astiav.NoPtsValue:
		if s.startPTS == astiav.NoPtsValue {
			s.startPTS = pts
		}
		t = float64(pts-s.startPTS)*s.timeBase + s.ptsOffset
		if s.haveLast && t < s.lastPTS-maxBackwardJump {
			// A timestamp reset (restarted encoder, wrapped MPEG-TS
			// clock): continue the timeline one frame after the last
			// instead of stalling sampling until the old time is reached.
			fix := s.lastPTS + 1/s.frameRate() - t
			s.ptsOffset += fix
			t += fix
		}
	case s.haveLast:
		t = s.lastPTS + 1/s.frameRate()
	}
	s.haveLast = true
	s.lastPTS = t
	return t
}

// frameRate is the declared frame rate, or fallbackFPS without one.
func (s *Source) frameRate() float64 {
	if s.info.FPS > 0 {
		return s.info.FPS
	}
	return fallbackFPS
}

// picture converts the current decoded frame into a new BGR Mat as a player
// shows it: square pixels, within MaxFrameSide, upright.
func (s *Source) picture() (gocv.Mat, error) {
	img, err := s.toBGR()
	if err != nil {
		return gocv.Mat{}, err
	}
	return s.orient.apply(img)
}

// toBGR converts the current decoded frame into a new BGR Mat, resized to
// square pixels and to fit MaxFrameSide, still in coded orientation.
func (s *Source) toBGR() (gocv.Mat, error) {
	w, h := s.frame.Width(), s.frame.Height()
	if w <= 0 || h <= 0 {
		return gocv.Mat{}, fmt.Errorf("frame has size %dx%d", w, h)
	}
	// The frame's own SAR (from the bitstream) may change mid-stream; a
	// container's takes precedence, as in FFmpeg's players.
	dw, dh := scaledSize(w, h, s.fc.GuessSampleAspectRatio(s.stream, s.frame), s.opts.MaxFrameSide)
	key := swsKey{w: w, h: h, pf: fullRangeFormat(s.frame.PixelFormat(), s.frame.ColorRange()), dw: dw, dh: dh}
	if s.sws == nil || key != s.swsKey {
		if s.sws != nil {
			s.sws.Free()
			s.sws = nil
		}
		// The BGR buffer was sized for the previous geometry.
		s.bgr.Unref()
		// Resizing here, together with the colour conversion, means the
		// only full-size pictures are the decoder's own.
		sws, err := astiav.CreateSoftwareScaleContext(w, h, key.pf, dw, dh, astiav.PixelFormatBgr24,
			astiav.NewSoftwareScaleContextFlags(astiav.SoftwareScaleContextFlagBilinear))
		if err != nil {
			return gocv.Mat{}, fmt.Errorf("create scaler %dx%d %s->bgr24 %dx%d: %w", w, h, key.pf, dw, dh, err)
		}
		s.sws, s.swsKey = sws, key
	}
	if err := s.sws.ScaleFrame(s.frame, s.bgr); err != nil {
		return gocv.Mat{}, fmt.Errorf("convert to bgr24: %w", err)
	}
	m := gocv.NewMatWithSize(dh, dw, gocv.MatTypeCV8UC3)
	buf, err := m.DataPtrUint8()
	if err == nil && len(buf) < dw*dh*3 {
		err = fmt.Errorf("mat buffer %d bytes, need %d", len(buf), dw*dh*3)
	}
	if err == nil {
		// align 1 packs the rows, dropping FFmpeg's line padding, which is
		// exactly the layout of a continuous Mat.
		_, err = s.bgr.ImageCopyToBuffer(buf, 1)
	}
	if err != nil {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("copy frame to mat: %w", err)
	}
	return m, nil
}

// fullRangeFormat returns the (deprecated) yuvj* variant of a planar YUV
// format when the frame is flagged full range: swscale takes its range from
// the source format, and the J formats are how sws_getContext is told "full
// range" without sws_setColorspaceDetails, which go-astiav does not expose.
func fullRangeFormat(pf astiav.PixelFormat, cr astiav.ColorRange) astiav.PixelFormat {
	if cr != astiav.ColorRangeJpeg {
		return pf
	}
	switch pf {
	case astiav.PixelFormatYuv420P:
		return astiav.PixelFormatYuvj420P
	case astiav.PixelFormatYuv422P:
		return astiav.PixelFormatYuvj422P
	case astiav.PixelFormatYuv444P:
		return astiav.PixelFormatYuvj444P
	case astiav.PixelFormatYuv440P:
		return astiav.PixelFormatYuvj440P
	}
	return pf
}

// liveSources counts Sources opened and not closed: each owns all its FFmpeg objects (format
// and codec contexts, packet, frames, scaler) and frees them in Close, so this is the count
// leak tests bound.
var liveSources atomic.Int64

// LiveSources is the number of Sources opened and not yet closed, with their FFmpeg objects.
func LiveSources() int64 { return liveSources.Load() }

// Close frees every FFmpeg object of the source. It is safe to call more than
// once; frames already returned stay valid (the caller owns their Mats).
func (s *Source) Close() error {
	if s == nil || s.closed {
		return nil
	}
	s.closed = true
	liveSources.Add(-1)
	if s.stallTimer != nil {
		s.stallTimer.Stop()
	}
	if s.sws != nil {
		s.sws.Free()
		s.sws = nil
	}
	for _, f := range []**astiav.Frame{&s.frame, &s.bgr} {
		if *f != nil {
			(*f).Free()
			*f = nil
		}
	}
	if s.pkt != nil {
		s.pkt.Free()
		s.pkt = nil
	}
	if s.dec != nil {
		s.dec.Free()
		s.dec = nil
	}
	if s.fc != nil {
		if s.inputOpen {
			s.fc.CloseInput() // also frees the context
		} else {
			// Never opened, or OpenInput failed (FFmpeg then already
			// freed it and cleared the pointer; freeing nil is a no-op).
			s.fc.Free()
		}
		s.fc = nil
	}
	return nil
}
