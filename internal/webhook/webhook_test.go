package webhook

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/testenv"
)

var secret = []byte("whsec-0123456789abcdef")

// noDial fails the test if the policy ever connects (Check must decide without connecting).
func noDial(t *testing.T) func(context.Context, string, string) (net.Conn, error) {
	return func(_ context.Context, _, addr string) (net.Conn, error) {
		t.Errorf("policy connected to %s", addr)
		return nil, errors.New("no connections in this test")
	}
}

// policy is the source policy as lae serve builds it, with an injected resolver.
func policy(t *testing.T, r source.Resolver, allow ...string) *source.Policy {
	t.Helper()
	var pre []netip.Prefix
	for _, a := range allow {
		pre = append(pre, netip.MustParsePrefix(a))
	}
	p, err := source.NewPolicy(source.PolicyOptions{Allow: pre, Resolver: r, Dial: noDial(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newDispatcher(t *testing.T, o Options) *Dispatcher {
	t.Helper()
	o.Secret = secret
	if o.Backoff == 0 {
		o.Backoff, o.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	d, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Close(ctx)
	})
	return d
}

// settled waits until videoID's only delivery is no longer pending and returns it.
func settled(t *testing.T, d *Dispatcher, videoID string) Delivery {
	t.Helper()
	var dv Delivery
	require.Eventually(t, func() bool {
		l := d.Log(videoID)
		if len(l) != 1 || l[0].State == StatePending {
			return false
		}
		dv = l[0]
		return true
	}, 10*time.Second, 5*time.Millisecond)
	return dv
}

// TestSignedVerdictArrives: a verdict sent to a loopback receiver (loopback allowed by
// allow_cidrs, the host name resolved by the injected resolver) arrives once, signed, after
// two failed attempts that are retried.
func TestSignedVerdictArrives(t *testing.T) {
	type got struct {
		body              []byte
		ts, sig, id, host string
	}
	var (
		mu    sync.Mutex
		recv  []got
		calls atomic.Int32
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		recv = append(recv, got{b, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), r.Header.Get(HeaderDelivery), r.Host})
		mu.Unlock()
	}))
	defer rcv.Close()
	port := rcv.Listener.Addr().(*net.TCPAddr).Port
	res := testenv.MapResolver{"hooks.test": "127.0.0.1"}
	p := policy(t, res, "127.0.0.0/8")
	var ended endings
	d := newDispatcher(t, Options{Policy: p, Resolver: res, Ended: ended.add})
	hook := "http://hooks.test:" + itoa(port) + "/lae"
	require.NoError(t, d.Check(context.Background(), hook))

	body := []byte(`{"video_id":"vid-1","verdict":"fake","final":true}`)
	d.Enqueue("vid-1", hook, "verdict", 0, body)
	dv := settled(t, d, "vid-1")
	require.Equal(t, StateDelivered, dv.State, "%+v", dv)
	require.Len(t, dv.Attempts, 3)
	require.Equal(t, http.StatusServiceUnavailable, dv.Attempts[0].StatusCode)
	require.Equal(t, http.StatusOK, dv.Attempts[2].StatusCode)
	require.Equal(t, []string{"delivered/3"}, ended.get())

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, recv, 1)
	g := recv[0]
	require.Equal(t, body, g.body)
	require.Equal(t, dv.ID, g.id)
	require.Equal(t, "hooks.test:"+itoa(port), g.host)
	require.NoError(t, Verify(secret, g.ts, g.sig, g.body, time.Now(), time.Minute))
	require.Error(t, Verify([]byte("another-secret-0123"), g.ts, g.sig, g.body, time.Now(), time.Minute))
	require.Error(t, Verify(secret, g.ts, g.sig, append(g.body, ' '), time.Now(), time.Minute))
}

// countingListener counts the connections a loopback port accepts.
func countingListener(t *testing.T) (net.Listener, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_ = c.Close()
		}
	}()
	return ln, &n
}

// flipResolver answers first with a public address, then with loopback: DNS rebinding.
type flipResolver struct{ calls atomic.Int32 }

func (f *flipResolver) LookupNetIP(_ context.Context, _, _ string) ([]netip.Addr, error) {
	if f.calls.Add(1) == 1 {
		return []netip.Addr{netip.MustParseAddr("192.0.2.10")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// TestInternalWebhookRefusedWithoutConnecting: private, loopback and rebinding webhook URLs
// are refused at registration (the decision function, no connection) and at delivery (the
// dialer's check), and the loopback port never sees a connection.
func TestInternalWebhookRefusedWithoutConnecting(t *testing.T) {
	ln, accepted := countingListener(t)
	port := itoa(ln.Addr().(*net.TCPAddr).Port)
	res := testenv.MapResolver{"hooks.internal": "10.1.2.3", "metadata.test": "169.254.169.254", "local.test": "127.0.0.1", "public.test": "192.0.2.7"}
	p := policy(t, res)
	ctx := context.Background()

	for _, u := range []string{"http://hooks.internal/v", "http://metadata.test/latest", "http://local.test:" + port + "/",
		"http://127.0.0.1:" + port + "/", "http://[::1]:" + port + "/", "ftp://public.test/", "http://user:pw@public.test/", "/relative"} {
		err := CheckURL(ctx, p, u)
		require.ErrorIs(t, err, ErrRefused, u)
	}
	require.NoError(t, CheckURL(ctx, p, "https://public.test/hook"))

	// At delivery (a URL that skipped registration, or whose DNS answer changed since).
	flip := &flipResolver{}
	pf := policy(t, flip)
	require.NoError(t, CheckURL(ctx, pf, "http://rebind.test:"+port+"/"), "first answer is public")
	for i, u := range []string{"http://127.0.0.1:" + port + "/", "http://local.test:" + port + "/", "http://rebind.test:" + port + "/"} {
		var d *Dispatcher
		if strings.Contains(u, "rebind") {
			d = newDispatcher(t, Options{Policy: pf, Resolver: flip})
		} else {
			d = newDispatcher(t, Options{Policy: p, Resolver: res})
		}
		id := "vid-" + itoa(i)
		d.Enqueue(id, u, "verdict", 0, []byte(`{}`))
		dv := settled(t, d, id)
		require.Equal(t, StateFailed, dv.State, u)
		require.Len(t, dv.Attempts, 1, "a refused address is not retried: %s", u)
		require.Contains(t, dv.Attempts[0].Error, ErrRefused.Error(), u)
	}
	require.Zero(t, accepted.Load(), "the loopback port saw a connection")
	// The counter counts: a connection of the test's own is seen.
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	_ = c.Close()
	require.Eventually(t, func() bool { return accepted.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestControlChecksTheConnectedAddress(t *testing.T) {
	d := newDispatcher(t, Options{Policy: policy(t, testenv.MapResolver{})})
	require.ErrorIs(t, d.control("tcp4", "127.0.0.1:80", nil), ErrRefused)
	require.ErrorIs(t, d.control("tcp6", "[fe80::1]:80", nil), ErrRefused)
	require.ErrorIs(t, d.control("tcp4", "10.0.0.1:443", nil), ErrRefused)
	require.NoError(t, d.control("tcp4", "192.0.2.7:443", nil))
}

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"a":1}`)
	sig := Sign(secret, now.Unix(), body)
	require.True(t, strings.HasPrefix(sig, "sha256="))
	require.Len(t, sig, len("sha256=")+64)
	cases := []struct {
		name    string
		ts, sig string
		body    []byte
		ok      bool
	}{
		{"valid", itoa(int(now.Unix())), sig, body, true},
		{"other body", itoa(int(now.Unix())), sig, []byte(`{"a":2}`), false},
		{"other timestamp", itoa(int(now.Unix()) + 1), sig, body, false},
		{"too old", itoa(int(now.Add(-10 * time.Minute).Unix())), Sign(secret, now.Add(-10*time.Minute).Unix(), body), body, false},
		{"not a number", "yesterday", sig, body, false},
		{"empty signature", itoa(int(now.Unix())), "", body, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(secret, c.ts, c.sig, c.body, now, 5*time.Minute)
			if c.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func TestBackoffBounded(t *testing.T) {
	d := newDispatcher(t, Options{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	for n := 1; n <= 40; n++ {
		ceil := min(100*time.Millisecond<<min(n-1, 20), time.Second)
		for range 20 {
			b := d.backoff(n)
			require.Greater(t, b, time.Duration(0))
			require.LessOrEqual(t, b, ceil+time.Millisecond, "attempt %d", n)
		}
	}
}

// TestCloseGivesUpWaitingRetries: shutdown does not wait out backoffs; the log says why.
func TestCloseGivesUpWaitingRetries(t *testing.T) {
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer rcv.Close()
	var ended endings
	d, err := New(Options{Secret: secret, Backoff: time.Hour, MaxBackoff: time.Hour, Policy: policy(t, testenv.MapResolver{}, "127.0.0.0/8"),
		Ended: ended.add})
	require.NoError(t, err)
	d.Enqueue("vid", rcv.URL, "verdict", 0, []byte(`{}`))
	require.Eventually(t, func() bool { l := d.Log("vid"); return len(l) == 1 && len(l[0].Attempts) == 1 }, 10*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	d.Close(ctx)
	require.Less(t, time.Since(start), 5*time.Second)
	l := d.Log("vid")
	require.Equal(t, StateFailed, l[0].State)
	require.Contains(t, l[0].Attempts[len(l[0].Attempts)-1].Error, "shutting down")
	d.Enqueue("vid2", rcv.URL, "verdict", 0, []byte(`{}`))
	require.Equal(t, StateFailed, d.Log("vid2")[0].State, "no deliveries after Close")
	require.Equal(t, []string{"failed/1", "failed/0"}, ended.get(), "given up after its one try; dropped unsent")
}

func TestQueueBound(t *testing.T) {
	block := make(chan struct{})
	rcv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer rcv.Close()
	defer close(block)
	d := newDispatcher(t, Options{MaxQueue: 1, Timeout: 30 * time.Second, Policy: policy(t, testenv.MapResolver{}, "127.0.0.0/8")})
	d.Enqueue("a", rcv.URL, "verdict", 0, []byte(`{}`))
	d.Enqueue("b", rcv.URL, "verdict", 0, []byte(`{}`))
	l := d.Log("b")
	require.Len(t, l, 1)
	require.Equal(t, StateFailed, l[0].State)
	require.Contains(t, l[0].Attempts[0].Error, "queue full")
	u, err := url.Parse(rcv.URL)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", u.Hostname())
}

func itoa(n int) string { return strconv.Itoa(n) }

// endings records Options.Ended calls as "state/attempts".
type endings struct {
	mu  sync.Mutex
	got []string
}

func (e *endings) add(state string, attempts int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, state+"/"+itoa(attempts))
}

func (e *endings) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}
