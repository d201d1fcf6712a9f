package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Reconnect says how a live source is re-opened after it fails mid-stream (a dropped
// connection, a stalled read). A live source that ends cleanly (io.EOF) is not re-opened:
// that is the end of the stream.
type Reconnect struct {
	// MaxAttempts is how many re-opens are tried in a row before giving up (0 = 5; < 0 = never).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait before each attempt; it doubles per attempt
	// (0 = 1 s and 30 s).
	MinBackoff, MaxBackoff time.Duration
}

// Reconnecting is a Source that re-opens a live stream when it fails. Frame indices,
// sample indices and presentation times continue across re-opens, so frames keep unique
// numbers (downstream message ids depend on them) and times keep increasing.
type Reconnecting struct {
	url        string
	o          Options
	rc         Reconnect
	cur        *Source
	info       Info
	closed     Stats // stats of the sources already closed
	idxOff     uint64
	sampleOff  uint64
	ptsOff     float64
	last       Frame
	have       bool
	reconnects int
	sleep      func(ctx context.Context, d time.Duration) error
}

// OpenReconnecting opens url like Open; if it is live, later failures re-open it per rc.
func OpenReconnecting(ctx context.Context, url string, o Options, rc Reconnect) (*Reconnecting, error) {
	src, err := Open(ctx, url, o)
	if err != nil {
		return nil, err
	}
	if rc.MaxAttempts == 0 {
		rc.MaxAttempts = 5
	}
	if rc.MinBackoff <= 0 {
		rc.MinBackoff = time.Second
	}
	if rc.MaxBackoff <= 0 {
		rc.MaxBackoff = 30 * time.Second
	}
	return &Reconnecting{url: url, o: o, rc: rc, cur: src, info: src.Info(), sleep: sleepCtx}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Info describes the source as first opened.
func (r *Reconnecting) Info() Info { return r.info }

// Reconnects is how many times the source was re-opened.
func (r *Reconnecting) Reconnects() int { return r.reconnects }

// Stats adds up every opening of the source.
func (r *Reconnecting) Stats() Stats {
	s := r.closed
	if r.cur != nil {
		c := r.cur.Stats()
		s.FramesDecoded += c.FramesDecoded
		s.FramesSampled += c.FramesSampled
		s.Errors += c.Errors
	}
	return s
}

// Next returns the next sampled frame, re-opening a live source that failed.
func (r *Reconnecting) Next(ctx context.Context) (Frame, error) {
	for {
		if r.cur == nil {
			return Frame{}, fmt.Errorf("decode %s: %w", r.url, ErrClosed)
		}
		fr, err := r.cur.Next(ctx)
		if err == nil {
			fr.Index += r.idxOff
			fr.SampleIndex += r.sampleOff
			fr.PTS += r.ptsOff
			r.last, r.have = fr, true
			return fr, nil
		}
		if errors.Is(err, io.EOF) || !r.info.Live || r.rc.MaxAttempts < 0 || ctx.Err() != nil {
			return Frame{}, err
		}
		if rerr := r.reopen(ctx, err); rerr != nil {
			return Frame{}, rerr
		}
	}
}

// reopen replaces the failed source, trying with exponential backoff.
func (r *Reconnecting) reopen(ctx context.Context, cause error) error {
	st := r.cur.Stats()
	r.closed.FramesDecoded += st.FramesDecoded
	r.closed.FramesSampled += st.FramesSampled
	r.closed.Errors += st.Errors + 1 // the failure itself
	_ = r.cur.Close()
	r.cur = nil
	if r.have {
		r.idxOff = r.closed.FramesDecoded
		r.sampleOff = r.last.SampleIndex + 1
		// The new connection's clock restarts at zero; continue just after the last frame.
		step := 0.001
		if r.info.FPS > 0 {
			step = 1 / r.info.FPS
		}
		r.ptsOff = r.last.PTS + step
	}
	wait := r.rc.MinBackoff
	var err error
	for attempt := 1; attempt <= r.rc.MaxAttempts; attempt++ {
		if serr := r.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("reconnect %s: %w", r.url, serr)
		}
		var src *Source
		if src, err = Open(ctx, r.url, r.o); err == nil {
			r.cur = src
			r.reconnects++
			return nil
		}
		wait = min(2*wait, r.rc.MaxBackoff)
	}
	return fmt.Errorf("%w; reconnecting failed %d times: %w", cause, r.rc.MaxAttempts, err)
}

// Close frees the current source.
func (r *Reconnecting) Close() error {
	if r.cur == nil {
		return nil
	}
	err := r.cur.Close()
	r.cur = nil
	return err
}
