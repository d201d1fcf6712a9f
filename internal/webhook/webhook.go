// Package webhook delivers verdicts to the URLs integrators register (a global one in the
// configuration, or one per submission): an HMAC-signed POST, retried with exponential backoff
// and jitter a bounded number of times, with a per-video delivery log.
//
// # Signature
//
// Each delivery carries
//
//	X-Lae-Timestamp: <unix seconds>
//	X-Lae-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//	X-Lae-Delivery:  <delivery id, the same on every retry>
//	X-Lae-Event:     verdict
//
// A receiver recomputes the HMAC over the timestamp it got, a dot and the raw body (Verify),
// compares in constant time and rejects old timestamps (replays).
//
// # Address policy
//
// A webhook URL is a URL the server connects to on a caller's behalf, exactly like a submitted
// source, so it is held to the same source policy (ingest/source.Policy): http or https only;
// Check resolves the host and refuses loopback, private, link-local and the other internal
// ranges (allow_cidrs excepted) when the URL is registered. At delivery the dialer resolves
// again, checks every address, and its Control hook checks the very address connect(2) gets,
// so a DNS answer that changed since (rebinding) cannot reach an internal address. Redirects
// are not followed, proxies from the environment are not used.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Header names of a delivery.
const (
	HeaderSignature = "X-Lae-Signature"
	HeaderTimestamp = "X-Lae-Timestamp"
	HeaderDelivery  = "X-Lae-Delivery"
	HeaderEvent     = "X-Lae-Event"
)

// Policy is the address policy webhooks are held to; *source.Policy is one.
type Policy interface {
	// Check decides a URL without connecting (scheme, resolved host).
	Check(ctx context.Context, rawURL string) error
	// CheckAddr decides one address.
	CheckAddr(a netip.Addr) error
}

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configures New.
type Options struct {
	// Secret keys the signatures; required.
	Secret []byte
	// Policy decides the addresses (nil = any address: the source policy is off).
	Policy Policy
	// Resolver resolves hosts at delivery (nil = net.DefaultResolver). It should be the
	// policy's, so that tests never ask DNS.
	Resolver Resolver
	// Attempts bounds the tries of one delivery (default 5).
	Attempts int
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration
	// Backoff is the first retry's delay ceiling; it doubles per attempt up to MaxBackoff
	// (defaults 1 s and 1 min). The delay is drawn uniformly below the ceiling (full jitter),
	// so that receivers coming back up are not hit by every sender at once.
	Backoff, MaxBackoff time.Duration
	// MaxQueue bounds the deliveries waiting or in flight; more are dropped with a log line
	// (default 1000). KeepLogs bounds the videos whose delivery log is kept (default 10000).
	MaxQueue, KeepLogs int
	Logger             *zap.Logger
	// Ended, when set, is told how each delivery ended: StateDelivered, or StateFailed after
	// attempts tries (0: dropped unsent, the queue full or the dispatcher closing). It is
	// called from the delivery's goroutine and must not block.
	Ended func(state string, attempts int)
}

// Attempt is one try of a delivery.
type Attempt struct {
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code,omitempty"`
	Error      string    `json:"error,omitempty"`
	DurationMS int64     `json:"duration_ms"`
}

// Delivery states.
const (
	StatePending   = "pending"
	StateDelivered = "delivered"
	StateFailed    = "failed"
)

// Delivery is one verdict sent to one URL, with its attempts.
type Delivery struct {
	ID       string    `json:"id"`
	VideoID  string    `json:"video_id"`
	URL      string    `json:"url"`
	Event    string    `json:"event"`
	Revision int       `json:"revision"`
	State    string    `json:"state"`
	Attempts []Attempt `json:"attempts"`
	Created  time.Time `json:"created_at"`
}

// ErrRefused is returned (wrapped) for a webhook URL the policy does not accept.
var ErrRefused = errors.New("webhook URL refused")

// Dispatcher sends deliveries in the background; Enqueue never blocks.
type Dispatcher struct {
	o      Options
	log    *zap.Logger
	client *http.Client

	mu     sync.Mutex
	logs   map[string][]*Delivery
	order  []string // videos in log creation order, for pruning
	queued int
	closed bool

	// ctx ends running attempts (Close's deadline passed); waiting ends backoff waits (Close
	// started).
	ctx         context.Context
	cancel      context.CancelFunc
	waiting     context.Context
	stopWaiting context.CancelFunc
	wg          sync.WaitGroup
}

// New returns a running dispatcher.
func New(o Options) (*Dispatcher, error) {
	if len(o.Secret) == 0 {
		return nil, errors.New("webhook: no signing secret")
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = max(time.Minute, o.Backoff)
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 1000
	}
	if o.KeepLogs <= 0 {
		o.KeepLogs = 10000
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	d := &Dispatcher{o: o, log: o.Logger, logs: map[string][]*Delivery{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.waiting, d.stopWaiting = context.WithCancel(d.ctx)
	tr := &http.Transport{
		Proxy:                 nil, // an environment proxy would connect where the policy did not look
		DialContext:           d.dial,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
	}
	d.client = &http.Client{Transport: tr, Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return d, nil
}

// Check decides a webhook URL when it is registered, without connecting: an absolute http or
// https URL without credentials whose host the policy accepts.
func (d *Dispatcher) Check(ctx context.Context, rawURL string) error {
	return CheckURL(ctx, d.o.Policy, rawURL)
}

// CheckURL is Check for a policy (nil = addresses not checked).
func CheckURL(ctx context.Context, p Policy, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return fmt.Errorf("%w: scheme %q (want http or https)", ErrRefused, u.Scheme)
	}
	if u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%w: no host", ErrRefused)
	}
	if u.User != nil {
		return fmt.Errorf("%w: credentials in the URL (sign with the shared secret instead)", ErrRefused)
	}
	if p == nil {
		return nil
	}
	if err := p.Check(ctx, rawURL); err != nil {
		// The policy's error says only "refused or unavailable": no map of the network.
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return nil
}

// dial resolves addr's host, checks every address and connects to the first that answers;
// the dialer's Control checks the address actually connected, so nothing the policy refuses
// is ever sent a packet.
func (d *Dispatcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("webhook dial %s: %w", addr, err)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = d.o.Resolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, fmt.Errorf("webhook resolve %s: %w", host, err)
	}
	if d.o.Policy != nil {
		for _, a := range addrs {
			if err := d.o.Policy.CheckAddr(a); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrRefused, host, err)
			}
		}
	}
	dl := &net.Dialer{Timeout: d.o.Timeout, Control: d.control}
	var last error
	for _, a := range addrs {
		c, err := dl.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	if last == nil {
		last = errors.New("no addresses")
	}
	return nil, fmt.Errorf("webhook dial %s: %w", host, last)
}

// control runs after the socket is made and before connect(2): the last word on the address.
func (d *Dispatcher) control(_, address string, _ syscall.RawConn) error {
	if d.o.Policy == nil {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrRefused, address, err)
	}
	if err := d.o.Policy.CheckAddr(ap.Addr()); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return nil
}

// Sign is the X-Lae-Signature value of body sent at timestamp ts (unix seconds).
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery's signature and that its timestamp is within tolerance of now:
// what a receiver does.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook timestamp %q: not unix seconds", timestamp)
	}
	if age := now.Sub(time.Unix(ts, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("webhook timestamp %d outside %s of now", ts, tolerance)
	}
	if !hmac.Equal([]byte(Sign(secret, ts, body)), []byte(signature)) {
		return errors.New("webhook signature mismatch")
	}
	return nil
}

// Enqueue schedules body (an event's JSON) for url. It never blocks: past MaxQueue, or after
// Close, the delivery is dropped with a log line and recorded as failed.
func (d *Dispatcher) Enqueue(videoID, rawURL, event string, revision int, body []byte) {
	dv := &Delivery{ID: newID(), VideoID: videoID, URL: rawURL, Event: event, Revision: revision,
		State: StatePending, Attempts: []Attempt{}, Created: time.Now().UTC()}
	d.mu.Lock()
	d.record(dv)
	if d.closed || d.queued >= d.o.MaxQueue {
		why := "queue full"
		if d.closed {
			why = "shutting down"
		}
		dv.State = StateFailed
		dv.Attempts = append(dv.Attempts, Attempt{At: time.Now().UTC(), Error: "not sent: " + why})
		d.mu.Unlock()
		d.log.Warn("webhook dropped", zap.String("video_id", videoID), zap.String("url", rawURL), zap.String("why", why))
		d.ended(StateFailed, 0)
		return
	}
	d.queued++
	d.wg.Add(1)
	d.mu.Unlock()
	go d.deliver(dv, bytes.Clone(body))
}

// record adds dv to its video's log; d.mu must be held. The oldest videos' logs go first.
func (d *Dispatcher) record(dv *Delivery) {
	if _, ok := d.logs[dv.VideoID]; !ok {
		d.order = append(d.order, dv.VideoID)
		for len(d.order) > d.o.KeepLogs {
			delete(d.logs, d.order[0])
			d.order = d.order[1:]
		}
	}
	d.logs[dv.VideoID] = append(d.logs[dv.VideoID], dv)
}

// deliver tries dv until it is delivered, refused for good, out of attempts or the
// dispatcher closes.
func (d *Dispatcher) deliver(dv *Delivery, body []byte) {
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		d.queued--
		d.mu.Unlock()
	}()
	for n := 1; ; n++ {
		a, retry := d.attempt(dv, body)
		d.mu.Lock()
		dv.Attempts = append(dv.Attempts, a)
		switch {
		case a.Error == "":
			dv.State = StateDelivered
		case !retry || n >= d.o.Attempts:
			dv.State = StateFailed
		}
		state := dv.State
		d.mu.Unlock()
		if state == StateDelivered {
			d.log.Debug("webhook delivered", zap.String("video_id", dv.VideoID), zap.String("url", dv.URL), zap.Int("attempt", n))
			d.ended(state, n)
			return
		}
		if state == StateFailed {
			d.log.Warn("webhook failed", zap.String("video_id", dv.VideoID), zap.String("url", dv.URL), zap.Int("attempts", n), zap.String("error", a.Error))
			d.ended(state, n)
			return
		}
		t := time.NewTimer(d.backoff(n))
		select {
		case <-t.C:
		case <-d.waiting.Done():
			t.Stop()
			d.mu.Lock()
			dv.State = StateFailed
			dv.Attempts = append(dv.Attempts, Attempt{At: time.Now().UTC(), Error: "given up: shutting down"})
			d.mu.Unlock()
			d.log.Warn("webhook given up at shutdown", zap.String("video_id", dv.VideoID), zap.String("url", dv.URL), zap.Int("attempts", n))
			d.ended(StateFailed, n)
			return
		}
	}
}

// ended reports a delivery's end to Options.Ended.
func (d *Dispatcher) ended(state string, attempts int) {
	if d.o.Ended != nil {
		d.o.Ended(state, attempts)
	}
}

// backoff is the delay before attempt n+1: uniform in [0, min(Backoff*2^(n-1), MaxBackoff)).
func (d *Dispatcher) backoff(n int) time.Duration {
	ceil := d.o.MaxBackoff
	if n-1 < 30 {
		ceil = min(d.o.Backoff<<(n-1), d.o.MaxBackoff)
	}
	j, err := rand.Int(rand.Reader, big.NewInt(int64(ceil)))
	if err != nil {
		return ceil
	}
	return time.Duration(j.Int64()) + time.Millisecond
}

// attempt sends dv once; retry says whether another attempt may succeed (network errors,
// 429 and 5xx do; a refused address and other answers do not).
func (d *Dispatcher) attempt(dv *Delivery, body []byte) (Attempt, bool) {
	start := time.Now()
	a := Attempt{At: start.UTC()}
	ctx, cancel := context.WithTimeout(d.ctx, d.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dv.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = err.Error()
		return a, false
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lae-webhook/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(d.o.Secret, ts, body))
	req.Header.Set(HeaderDelivery, dv.ID)
	req.Header.Set(HeaderEvent, dv.Event)
	resp, err := d.client.Do(req)
	a.DurationMS = time.Since(start).Milliseconds()
	if err != nil {
		a.Error = err.Error()
		return a, !errors.Is(err, ErrRefused)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	a.StatusCode = resp.StatusCode
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return a, false
	}
	a.Error = "HTTP " + resp.Status
	return a, resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
}

// Log returns copies of videoID's deliveries, oldest first.
func (d *Dispatcher) Log(videoID string) []Delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Delivery, 0, len(d.logs[videoID]))
	for _, dv := range d.logs[videoID] {
		c := *dv
		c.Attempts = append([]Attempt{}, dv.Attempts...)
		out = append(out, c)
	}
	return out
}

// Forget drops videoID's delivery log (the scan was deleted).
func (d *Dispatcher) Forget(videoID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.logs, videoID)
}

// Close stops taking deliveries and waits for those in flight until ctx ends; deliveries
// waiting for a retry then, or still running when ctx ends, are given up with a log line.
func (d *Dispatcher) Close(ctx context.Context) {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		// Retries waiting on their backoff are not worth holding shutdown for: their
		// receivers were failing anyway.
		d.stopWaiting()
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		d.log.Warn("webhook deliveries cut off at shutdown")
		d.cancel()
		<-done
	}
	d.cancel()
	d.client.CloseIdleConnections()
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
