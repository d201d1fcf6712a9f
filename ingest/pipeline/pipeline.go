// Package pipeline is the ingest stage: it reads a video source, samples frames, detects, aligns
// and tracks faces, publishes every aligned crop (and a small JPEG of every frame that had faces)
// to JetStream, and always ends a video with an EndOfStream event whose counts let the aggregator
// know when its verdict is complete.
package pipeline

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/ingest/crops"
	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/ingest/track"
	"github.com/lae-screening/lae/internal/jsretry"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Defaults for Options.
const (
	DefaultFrameJPEGWidth = 640
	DefaultMaxPending     = 64
	DefaultWorkers        = 2
	// DefaultMinEyePx is the product's tiny-face limit that callers pass as Options.MinEyePx
	// (see crops.DefaultMinEyePx for why 16 source pixels).
	DefaultMinEyePx = crops.DefaultMinEyePx
	// frameJPEGQuality keeps evidence frames readable at a fraction of the raw size.
	frameJPEGQuality = 85
	// ackTimeout bounds the wait for one JetStream acknowledgement, counted from the first
	// send of the message.
	ackTimeout = 30 * time.Second
	// answerWait is how long a publish may go unanswered before it is sent again (see
	// jsretry: silence is a lost message, not a slow one).
	answerWait = jsretry.AnswerWait
	// republishBudget bounds how long one message is sent again while its stream does not
	// answer: long enough for a clustered stream to elect a new leader, short of ackTimeout.
	republishBudget = 20 * time.Second
	// republishBackoff is the first wait before sending again; it doubles up to
	// republishMaxBackoff.
	republishBackoff    = 100 * time.Millisecond
	republishMaxBackoff = 2 * time.Second
	// eosTimeout bounds the final EndOfStream publish, which runs even after ctx is cancelled.
	eosTimeout = 10 * time.Second
)

// ErrEOSNotPublished (wrapped) means the end-of-stream event could not be stored: the
// aggregator will not close the video, so the caller should run it again (crop message ids
// make the second run's publishes de-duplicate against the first's).
var ErrEOSNotPublished = errors.New("end-of-stream not published")

// ErrPublish marks a failure to store the video's crops or frames in NATS (an outage, a full
// reconnect buffer): the source is fine, so the video is not failed but handed back to run
// again (its crops keep their message ids, so what was stored is not stored twice).
var ErrPublish = errors.New("publish to NATS failed")

// Progress is what Run has done so far; Options.Progress gets it after every sampled frame.
type Progress struct {
	FramesDecoded   uint64
	FramesSampled   uint64
	FramesWithFaces uint64
	Faces           uint64
	CropsPublished  uint64
	Tracks          uint64
	Errors          uint64
	// PTS is the presentation time of the last sampled frame, in seconds.
	PTS float64
	// Duration is the source's duration, 0 when unknown (live).
	Duration time.Duration
	// FacesTooSmall counts the faces set aside by Options.MinEyePx (not in Faces).
	FacesTooSmall uint64
}

// Options configures Run. Zero values take the defaults.
type Options struct {
	// SampleFPS is the sampling rate by presentation time; 0 means every frame (callers choose
	// the product default, 5). It overrides Source.SampleFPS.
	SampleFPS float64
	// MaxDuration stops after this much media time (0 = whole source). Overrides Source's.
	MaxDuration time.Duration
	// FaceModel is a faces.Open spec: "yunet", "haar-alt", "haar", "lbp" or a YuNet .onnx path ("" = yunet).
	FaceModel string
	// MaxFacesPerFrame keeps the first N faces per frame in detector order (0 = all).
	MaxFacesPerFrame int
	// MinFaceSize drops faces narrower than this many frame pixels (0 = keep all).
	MinFaceSize int
	// MinEyePx is the tiny-face limit (crops.TooSmall): a face whose eyes are closer than this
	// many frame pixels would be upsampled more than 64/MinEyePx times to fill the crop, so it
	// is not published (nor scored) but counted in EndOfStream.FacesTooSmall, and does not
	// count against MaxFacesPerFrame. 0 keeps every face; callers choose the product default,
	// DefaultMinEyePx (16).
	MinEyePx float64
	// FrameJPEGWidth is the width of the evidence JPEG of frames with faces (default 640;
	// frames narrower than this are not upscaled; negative = publish no frame images).
	FrameJPEGWidth int
	// MaxPending bounds the publishes awaiting acknowledgement (default 64: each holds a raw
	// crop or a frame JPEG until its ack; more buys no speed on a local server and costs peak memory).
	MaxPending int
	// Workers is how many frames are analysed (detect + align) at once, each worker with its
	// own detector and aligner (default 2, at most the CPU count). Output order and track ids
	// do not depend on it.
	Workers int
	// Progress, when set, is called from Run's goroutine after every sampled frame.
	Progress func(Progress)
	// StageTime, when set, receives how long each sampled frame spent in a stage: StageDecode
	// (reading and decoding up to the sampled frame) and StageFaceDetect (the face detector
	// alone). It is called from the reader and the analysis workers at once, so it must be
	// safe for concurrent use.
	StageTime func(stage string, d time.Duration)
	// Logger gets per-video events (default: none).
	Logger *zap.Logger
	// SourceName is what the end-of-stream and the log call the video (default: the URL Run
	// opens). Ingest opens an upload from a local copy, whose path is named nowhere.
	SourceName string
	// Source tunes the decoder (timeouts, threads).
	Source source.Options
	// Reconnect says how a live source that fails mid-stream (dropped, stalled past
	// Source.ReadTimeout) is re-opened; frame numbers and times continue across re-opens.
	Reconnect source.Reconnect
}

// Stages named to Options.StageTime.
const (
	StageDecode     = "decode"
	StageFaceDetect = "face_detect"
)

// Run ingests one video and publishes its crops, frame images and end-of-stream event. The
// EndOfStream is published in every case, with Failure set when the source could not be read or
// processing stopped; Run returns it together with the fatal error, if any.
func Run(ctx context.Context, js jetstream.JetStream, videoID, url string, o Options) (*laev1.EndOfStream, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.FrameJPEGWidth == 0 {
		o.FrameJPEGWidth = DefaultFrameJPEGWidth
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.Workers <= 0 {
		o.Workers = min(DefaultWorkers, runtime.NumCPU())
	}
	name := url
	if o.SourceName != "" {
		name = o.SourceName
	}
	log := o.Logger.With(zap.String("video_id", videoID), zap.String("url", name))
	eos := &laev1.EndOfStream{VideoId: videoID, SourceUrl: name}
	r := &run{js: js, videoID: videoID, o: o, log: log, eos: eos, republishBudget: republishBudget,
		ackTimeout: ackTimeout, answerWait: answerWait}
	var err error
	if verr := laev1.ValidateVideoID(videoID); verr != nil {
		// No EOS either: a subject cannot be built from an invalid id.
		return eos, fmt.Errorf("ingest: %w", verr)
	}
	err = r.ingest(ctx, url)
	// Whatever happened, wait for the crops already sent so the EOS counts only stored ones.
	if werr := r.drain(ctx); werr != nil && err == nil {
		err = werr
	}
	if errors.Is(err, ErrPublish) && ctx.Err() == nil {
		// No failure EOS: it would turn a passing NATS outage into a final "error" verdict.
		log.Warn("ingest interrupted by NATS; the video will run again", zap.Error(err))
		return eos, fmt.Errorf("%w: %w", ErrEOSNotPublished, err)
	}
	if err != nil {
		eos.Failure = err.Error()
		log.Warn("ingest failed", zap.Error(err))
	}
	// The EOS goes out even when ctx is cancelled: without it the aggregator would wait forever.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eosTimeout)
	defer cancel()
	if perr := publishEOS(pctx, js, eos); perr != nil {
		err = errors.Join(err, fmt.Errorf("%w: %w", ErrEOSNotPublished, perr))
	}
	log.Info("ingest done", zap.Uint64("frames_sampled", eos.FramesSampled), zap.Uint64("faces", eos.Faces),
		zap.Uint64("faces_too_small", eos.FacesTooSmall),
		zap.Uint64("crops_published", eos.CropsPublished), zap.Uint64("errors", eos.Errors), zap.String("failure", eos.Failure))
	return eos, err
}

func publishEOS(ctx context.Context, js jetstream.JetStream, eos *laev1.EndOfStream) error {
	data, err := proto.Marshal(eos)
	if err != nil {
		return fmt.Errorf("marshal end-of-stream %s: %w", eos.VideoId, err)
	}
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: laev1.EOSSubject(eos.VideoId), Data: data},
		jetstream.WithMsgID(laev1.EOSMsgID(eos.VideoId, eos.Revision)))
	if err != nil {
		return fmt.Errorf("publish end-of-stream %s: %w", eos.VideoId, err)
	}
	return nil
}

// run is the state of one Run call.
type run struct {
	js      jetstream.JetStream
	videoID string
	o       Options
	log     *zap.Logger
	eos     *laev1.EndOfStream

	tracker *track.Tracker
	pending []pending
	// republishBudget, ackTimeout and answerWait are the package's constants (tests shorten
	// them; zero takes the constant); republished, when set, runs before each message is sent
	// again.
	republishBudget time.Duration
	ackTimeout      time.Duration
	answerWait      time.Duration
	republished     func()
	// failed is set once a publish has failed: the video will run again, so the publishes
	// still pending are only waited for, not sent again, and the drain stays short.
	failed bool
	// backedOff is when the last wait before sending again ended. A pending message sent
	// before it failed in the same outage and is sent again at once: the outage has been
	// waited out already (otherwise each of MaxPending messages would wait its backoff in
	// turn after a leader election).
	backedOff time.Time
	prog      Progress
	hash      fileHash // written by the hashing goroutine, read after it ends
}

// pending is an unacknowledged publish; crop tells whether it counts in CropsPublished.
type pending struct {
	fut  jetstream.PubAckFuture
	crop bool
	what string
	// first and sent are when the message was first and last sent; resent tells that it was
	// sent more than once.
	first, sent time.Time
	resent      bool
}

func (r *run) ingest(ctx context.Context, url string) error {
	so := r.o.Source
	so.SampleFPS, so.MaxDuration = r.o.SampleFPS, r.o.MaxDuration
	src, err := source.OpenReconnecting(ctx, url, so, r.o.Reconnect)
	if err != nil {
		return err // source's errors already read "open <url>: <reason>"
	}
	defer src.Close()
	info := src.Info()
	r.eos.Live = info.Live
	r.eos.Source = sourceInfo(info)
	if path, ok := source.LocalPath(url); ok {
		// Hashed beside the decoding (the file is in the page cache by then), so the
		// forensic record costs no extra wall time on a file of any length.
		hashed := make(chan struct{})
		go func() {
			defer close(hashed)
			size, sum, err := hashFile(ctx, path)
			if err != nil {
				r.log.Warn("hash source", zap.Error(err))
				return
			}
			r.hash = fileHash{size: size, sha256: sum}
		}()
		defer func() {
			<-hashed
			r.eos.Source.FileSize, r.eos.Source.Sha256 = r.hash.size, r.hash.sha256
		}()
	}
	r.prog.Duration = info.Duration
	r.tracker = track.New(track.Options{})
	// src is only touched by the reader goroutine until work has returned.
	defer func() {
		st := src.Stats()
		r.eos.FramesDecoded, r.eos.FramesSampled = st.FramesDecoded, st.FramesSampled
		r.eos.Errors += st.Errors
		r.eos.Tracks = r.tracker.Count()
		if info.Duration > 0 && r.o.MaxDuration == 0 {
			r.eos.DurationSeconds = info.Duration.Seconds()
		} else {
			r.eos.DurationSeconds = r.prog.PTS
		}
		r.eos.ExpectedSeconds, r.eos.ReadSeconds = mediaRead(info, r.o.MaxDuration, r.prog.PTS, st.FramesDecoded)
	}()
	workers := make([]*worker, r.o.Workers)
	for i := range workers {
		w, err := newWorker(r.o)
		if err != nil {
			for _, w := range workers[:i] {
				w.close()
			}
			return err
		}
		workers[i] = w
	}
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()
	r.log.Info("ingest started", zap.Int("width", info.Width), zap.Int("height", info.Height),
		zap.Float64("fps", info.FPS), zap.Duration("duration", info.Duration), zap.String("codec", info.Codec),
		zap.Int("workers", len(workers)))
	return r.work(ctx, url, src, workers)
}

// sourceInfo is the end-of-stream's description of an opened source.
func sourceInfo(info source.Info) *laev1.SourceInfo {
	u32 := func(n int) uint32 { return uint32(max(n, 0)) } //nolint:gosec // clamped; sizes fit
	return &laev1.SourceInfo{
		Container: info.Format, Codec: info.Codec,
		Width: u32(info.Width), Height: u32(info.Height),
		CodedWidth: u32(info.CodedWidth), CodedHeight: u32(info.CodedHeight),
		Fps: info.FPS, DurationSeconds: info.Duration.Seconds(),
		Rotation: u32(info.Rotation), Mirrored: info.Mirrored,
	}
}

// fileHash is a local source's size and SHA-256.
type fileHash struct {
	size   uint64
	sha256 string
}

// hashFile streams a file through SHA-256; it stops when ctx is done.
func hashFile(ctx context.Context, path string) (uint64, string, error) {
	f, err := os.Open(path) //nolint:gosec // the path is the input the caller asked to scan
	if err != nil {
		return 0, "", err
	}
	defer f.Close() //nolint:errcheck // read-only
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n uint64
	for {
		if err := ctx.Err(); err != nil {
			return 0, "", err
		}
		k, err := f.Read(buf)
		h.Write(buf[:k])
		n += uint64(k) //nolint:gosec // k >= 0
		if errors.Is(err, io.EOF) {
			return n, hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return 0, "", err
		}
	}
}

// mediaRead is the media time ingest meant to read (the declared duration, capped by
// maxDuration; 0 when unknown) and the time it read: the end of the last frame, from the last
// sampled frame's time and from the count of decoded frames (whichever is later: the last
// frames may not have been sampled).
func mediaRead(info source.Info, maxDuration time.Duration, lastPTS float64, decoded uint64) (expected, read float64) {
	if info.Duration > 0 && !info.Live {
		expected = info.Duration.Seconds()
		if maxDuration > 0 {
			expected = min(expected, maxDuration.Seconds())
		}
	}
	read = lastPTS
	if info.FPS > 0 {
		read = max(lastPTS+1/info.FPS, float64(decoded)/info.FPS)
	}
	return expected, read
}

// sampled is a decoded frame on its way to a worker, numbered in decode order.
type sampled struct {
	seq   uint64
	fr    source.Frame
	stats source.Stats
}

// work runs the reader, the workers and, on this goroutine, the ordered tracking and publishing.
// Detection and alignment are the expensive part and run on several frames at once; tracking
// and publishing need frame order, so results are put back in sequence here.
func (r *run) work(parent context.Context, url string, src *source.Reconnecting, workers []*worker) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	frames := make(chan sampled, len(workers))
	results := make(chan analysed, len(workers))
	var readErr error
	go func() {
		defer close(frames)
		for seq := uint64(0); ; seq++ {
			t0 := time.Now()
			fr, err := src.Next(ctx)
			if err == nil && r.o.StageTime != nil {
				r.o.StageTime(StageDecode, time.Since(t0))
			}
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				readErr = err // the source's errors already name the URL
				return
			}
			select {
			case frames <- sampled{seq: seq, fr: fr, stats: src.Stats()}:
			case <-ctx.Done():
				fr.Image.Close()
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for in := range frames {
				res := w.analyse(in)
				select {
				case results <- res:
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	// Results arrive out of order; hold them until their turn.
	waiting := map[uint64]analysed{}
	next := uint64(0)
	var fatal error
	for res := range results {
		if fatal != nil {
			continue // drain so the workers and the reader can finish
		}
		waiting[res.seq] = res
		for {
			cur, ok := waiting[next]
			if !ok {
				break
			}
			delete(waiting, next)
			next++
			if err := r.publishFrameResult(ctx, cur); err != nil {
				fatal = err
				cancel()
				break
			}
			if r.o.Progress != nil {
				r.o.Progress(r.prog)
			}
		}
	}
	if fatal != nil {
		return fatal
	}
	// The reader and workers stop quietly on cancellation; report it, the video is incomplete.
	if err := parent.Err(); err != nil {
		return fmt.Errorf("ingest %s: %w", url, err)
	}
	// readErr is safe to read: results closes after the reader has returned.
	return readErr
}

// publishFrameResult tracks and publishes the faces of one analysed frame, in frame order.
func (r *run) publishFrameResult(ctx context.Context, a analysed) error {
	r.prog.PTS = a.pts
	r.eos.Errors += a.errors
	boxes := make([]image.Rectangle, len(a.faces))
	for i, f := range a.faces {
		boxes[i] = f.Box
	}
	ids := r.tracker.Update(boxes)
	r.eos.FacesTooSmall += uint64(a.tooSmall)
	var faceIndex uint32
	for i, f := range a.faces {
		c := a.crops[i]
		if c.pixels == nil {
			continue // alignment failed, counted in errors
		}
		msg := &laev1.FaceCrop{
			VideoId: r.videoID, FrameIndex: a.index, SampleIndex: a.sampleIndex, PtsSeconds: a.pts,
			FaceIndex: faceIndex, TrackId: ids[i],
			Box:         &laev1.Box{X: float32(f.Box.Min.X), Y: float32(f.Box.Min.Y), W: float32(f.Box.Dx()), H: float32(f.Box.Dy())},
			CropToFrame: c.toFrame[:], Width: uint32(c.size.X), Height: uint32(c.size.Y),
			Format: laev1.PixelFormat_PIXEL_FORMAT_BGR8, Pixels: c.pixels,
			DetectorConfidence: f.Confidence, FrameWidth: uint32(a.size.X), FrameHeight: uint32(a.size.Y),
			EyesAligned: c.eyes, SourceScale: float32(crops.SourceScale(c.toFrame)),
		}
		data, err := proto.Marshal(msg)
		if err != nil {
			return fmt.Errorf("marshal crop %d/%d: %w", a.index, faceIndex, err)
		}
		m := &nats.Msg{Subject: laev1.FacesSubject(r.videoID), Data: data}
		if err := r.publish(ctx, m, laev1.CropMsgID(r.videoID, a.index, faceIndex), true); err != nil {
			return err
		}
		faceIndex++
		r.eos.Faces++
	}
	r.prog.FramesDecoded, r.prog.FramesSampled = a.stats.FramesDecoded, a.stats.FramesSampled
	r.prog.Errors = a.stats.Errors + r.eos.Errors
	r.prog.Faces, r.prog.Tracks, r.prog.CropsPublished = r.eos.Faces, r.tracker.Count(), r.eos.CropsPublished
	r.prog.FacesTooSmall = r.eos.FacesTooSmall
	if faceIndex == 0 {
		return nil
	}
	r.prog.FramesWithFaces++
	if a.jpeg == nil {
		return nil
	}
	data, err := proto.Marshal(&laev1.FrameImage{VideoId: r.videoID, FrameIndex: a.index, PtsSeconds: a.pts,
		FrameWidth: uint32(a.size.X), FrameHeight: uint32(a.size.Y), Jpeg: a.jpeg})
	if err != nil {
		return fmt.Errorf("marshal frame %d: %w", a.index, err)
	}
	m := &nats.Msg{Subject: laev1.FrameSubject(r.videoID, a.index), Data: data}
	return r.publish(ctx, m, laev1.FrameMsgID(r.videoID, a.index), false)
}

// publish sends m asynchronously, first waiting for the oldest acknowledgement when MaxPending
// publishes are already in flight, so memory stays bounded on long videos.
func (r *run) publish(ctx context.Context, m *nats.Msg, id string, crop bool) error {
	for len(r.pending) >= r.o.MaxPending {
		if err := r.waitOldest(ctx); err != nil {
			return err
		}
	}
	fut, err := r.js.PublishMsgAsync(m, jetstream.WithMsgID(id))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPublish, id, err)
	}
	now := time.Now()
	r.pending = append(r.pending, pending{fut: fut, crop: crop, what: id, first: now, sent: now})
	return nil
}

// waitOldest waits for the oldest pending publish's acknowledgement. A publish the stream did
// not answer is sent again with the same message id, so the stream stores it once: at once when
// it got no answer within answerWait (lost: see answerWait), after a backoff when it failed as
// unanswered (no responders, no leader) until republishBudget has passed since the first such
// failure. Either way it fails as ErrPublish ackTimeout after its first send (and after at
// least one resend), so a stream that never answers again cannot hold the video: every pending
// message is bounded by its own send time, not by when its turn to be waited for came.
func (r *run) waitOldest(ctx context.Context) error {
	p := r.pending[0]
	r.pending = r.pending[1:]
	err := r.settle(ctx, &p)
	if errors.Is(err, ErrPublish) {
		r.failed = true
	}
	return err
}

// errSilent is answer's report that no answer came before the deadline.
var errSilent = errors.New("no answer")

// settle waits for p's answer, sending p again as waitOldest says.
func (r *run) settle(ctx context.Context, p *pending) error {
	ackWait, silence, budget := cmp.Or(r.ackTimeout, ackTimeout), cmp.Or(r.answerWait, answerWait),
		cmp.Or(r.republishBudget, republishBudget)
	var retryUntil time.Time
	backoff := republishBackoff
	for {
		err := answer(ctx, p.fut, p.sent.Add(silence))
		switch {
		case err == nil:
			// A duplicate ack means an earlier attempt stored it: still published exactly once.
			if p.crop {
				r.eos.CropsPublished++
			}
			return nil
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			return fmt.Errorf("publish %s: %w", p.what, err)
		case errors.Is(err, errSilent):
			if r.failed || (p.resent && time.Since(p.first) >= ackWait) {
				return fmt.Errorf("%w: %s: no acknowledgement %s after it was first sent", ErrPublish, p.what,
					time.Since(p.first).Round(time.Millisecond))
			}
			// The wait was the backoff: send it again now.
			r.log.Debug("stream did not answer in time; publishing again", zap.String("msg", p.what),
				zap.Duration("waited", time.Since(p.sent).Round(time.Millisecond)))
		default:
			if retryUntil.IsZero() {
				retryUntil = time.Now().Add(budget)
			}
			if r.failed || !jsretry.Unanswered(err) || time.Now().After(retryUntil) || time.Since(p.first) >= ackWait {
				return fmt.Errorf("%w: %s: %w", ErrPublish, p.what, err)
			}
			r.log.Debug("stream did not answer; publishing again", zap.String("msg", p.what), zap.Error(err))
			if p.sent.After(r.backedOff) {
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return fmt.Errorf("publish %s: %w", p.what, ctx.Err())
				}
				backoff = min(2*backoff, republishMaxBackoff)
				r.backedOff = time.Now()
			}
		}
		if r.republished != nil {
			r.republished()
		}
		fut, perr := r.js.PublishMsgAsync(p.fut.Msg(), jetstream.WithMsgID(p.what))
		if perr != nil {
			return fmt.Errorf("%w: %s: %w", ErrPublish, p.what, perr)
		}
		p.fut, p.sent, p.resent = fut, time.Now(), true
	}
}

// answer waits for fut's answer until deadline: nil when the message was stored, the publish
// error, ctx's error, or errSilent when the deadline came first. An answer already there wins
// over a deadline already past.
func answer(ctx context.Context, fut jetstream.PubAckFuture, deadline time.Time) error {
	select {
	case <-fut.Ok():
		return nil
	case err := <-fut.Err():
		return err
	default:
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-fut.Ok():
		return nil
	case err := <-fut.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return errSilent
	}
}

// drain waits for every pending acknowledgement. It keeps counting after a failure so the EOS
// reports what was really stored. When ctx is already done it still collects acks that arrive
// within a short grace period.
func (r *run) drain(ctx context.Context) error {
	dctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), eosTimeout)
		defer cancel()
	}
	var first error
	for len(r.pending) > 0 {
		if err := r.waitOldest(dctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
