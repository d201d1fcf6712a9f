package source_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/testenv"
)

// These tests run FFmpeg against servers on loopback only: names resolve through a map, and
// every "internal" target is a loopback address the policy is told not to accept.

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// newPolicy is a policy for these tests: its refusal reasons are collected.
func newPolicy(t *testing.T, o source.PolicyOptions) (*source.Policy, func() []string) {
	t.Helper()
	t.Setenv("no_proxy", "") // FFmpeg would bypass the proxy for these hosts; the policy would refuse them
	var mu sync.Mutex
	var reasons []string
	o.Refused = func(u string, detail error) {
		mu.Lock()
		defer mu.Unlock()
		reasons = append(reasons, u+": "+detail.Error())
	}
	p, err := source.NewPolicy(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), reasons...)
	}
}

// countingServer serves dir on 127.0.0.1 with extra routes and counts the requests by path.
type countingServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newCountingServer(t *testing.T, dir string, tlsServer bool, routes map[string]http.HandlerFunc) *countingServer {
	t.Helper()
	cs := &countingServer{hits: map[string]int{}}
	files := http.FileServer(http.Dir(dir))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		cs.hits[r.URL.Path]++
		cs.mu.Unlock()
		if f := routes[r.URL.Path]; f != nil {
			f(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
	cs.Server = httptest.NewUnstartedServer(h)
	cs.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below are expected
	if tlsServer {
		cs.StartTLS()
	} else {
		cs.Start()
	}
	t.Cleanup(cs.Close)
	return cs
}

func (cs *countingServer) count(path string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if path == "" {
		n := 0
		for _, v := range cs.hits {
			n += v
		}
		return n
	}
	return cs.hits[path]
}

// untouchable listens on 127.0.0.2 (the "internal" address of these tests) and fails the test
// if anything connects to it.
func untouchable(t *testing.T) (port string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Errorf("something connected to the refused address 127.0.0.2 from %s", c.RemoteAddr())
			_ = c.Close()
		}
	}()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port
}

func requireUnavailable(t *testing.T, rawURL string, err error) {
	t.Helper()
	require.ErrorIs(t, err, source.ErrUnavailable)
	require.Equal(t, "open "+rawURL+": source refused or unavailable", err.Error())
}

// TestPolicyRedirectOnLoopback: a server on 127.0.0.1 that redirects is refused without a
// request while loopback is not allow-listed, and followed (through the policy's proxy) once
// 127.0.0.0/8 is.
func TestPolicyRedirectOnLoopback(t *testing.T) {
	dir := t.TempDir()
	makeClip(t, dir, 160, 120, 10, 10)
	srv := newCountingServer(t, dir, false, map[string]http.HandlerFunc{
		"/redirect": func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/clip.mp4", http.StatusFound) },
	})
	u := srv.URL + "/redirect"

	strict, reasons := newPolicy(t, source.PolicyOptions{})
	require.ErrorIs(t, strict.Check(context.Background(), u), source.ErrUnavailable)
	_, err := source.Open(context.Background(), u, source.Options{Policy: strict})
	requireUnavailable(t, u, err)
	require.Zero(t, srv.count(""), "refused before any request")
	require.Contains(t, strings.Join(reasons(), "\n"), "loopback")

	allowed, _ := newPolicy(t, source.PolicyOptions{Allow: loopback})
	require.NoError(t, allowed.Check(context.Background(), u))
	_, got, _ := decodeAll(t, u, source.Options{Policy: allowed})
	defer closeFrames(got)
	require.Len(t, got, 10)
	require.Equal(t, 1, srv.count("/redirect"))
	require.Positive(t, srv.count("/clip.mp4"), "FFmpeg followed the redirect")
}

// TestPolicyChecksEveryRedirect: the first host is accepted, the redirect goes to a host that
// resolves to a refused address; nothing connects to it.
func TestPolicyChecksEveryRedirect(t *testing.T) {
	port := untouchable(t)
	dir := t.TempDir()
	makeClip(t, dir, 160, 120, 10, 10)
	srv := newCountingServer(t, dir, false, map[string]http.HandlerFunc{
		"/redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://inner.test:"+port+"/clip.mp4", http.StatusFound)
		},
	})
	_, srvPort, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, reasons := newPolicy(t, source.PolicyOptions{
		Allow:    []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Resolver: testenv.MapResolver{"origin.test": "127.0.0.1", "inner.test": "127.0.0.2"},
	})
	u := "http://origin.test:" + srvPort + "/redirect"
	_, err := source.Open(context.Background(), u, source.Options{Policy: p, OpenTimeout: 10 * time.Second})
	requireUnavailable(t, u, err)
	require.Equal(t, 1, srv.count("/redirect"))
	require.Zero(t, srv.count("/clip.mp4"))
	require.Contains(t, strings.Join(reasons(), "\n"), "127.0.0.2 is loopback")
}

// TestPolicyHLS: every URI of a playlist is checked, and an absolute https one reaches FFmpeg
// through the proxy (FFmpeg itself may not speak TLS); a playlist naming a refused host fails
// before anything connects to it.
func TestPolicyHLS(t *testing.T) {
	port := untouchable(t)
	dir := t.TempDir()
	makeClipAs(t, dir, "seg0.ts", 160, 120, 20, 10)
	playlist := func(seg string) string {
		return "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\n" + seg + "\n#EXT-X-ENDLIST\n"
	}
	var self string // the TLS server's own URL, known once it runs
	srv := newCountingServer(t, dir, true, map[string]http.HandlerFunc{
		"/start.m3u8": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, self+"/abs.m3u8", http.StatusMovedPermanently)
		},
		"/abs.m3u8": func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(playlist(self + "/seg0.ts")))
		},
		"/rel.m3u8": func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(playlist("seg0.ts"))) },
		"/inner.m3u8": func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(playlist("http://inner.test:" + port + "/seg0.ts")))
		},
		"/file.m3u8": func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(playlist("file://" + filepath.Join(dir, "seg0.ts"))))
		},
	})
	self = srv.URL
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	p, reasons := newPolicy(t, source.PolicyOptions{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Resolver:  testenv.MapResolver{"inner.test": "127.0.0.2"},
		TLSConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})

	for _, path := range []string{"/rel.m3u8", "/start.m3u8"} {
		_, got, st := decodeAll(t, srv.URL+path, source.Options{Policy: p})
		closeFrames(got)
		require.Len(t, got, 20, path)
		require.Zero(t, st.Errors, path)
	}
	require.Equal(t, 1, srv.count("/start.m3u8"))
	require.Equal(t, 1, srv.count("/abs.m3u8"), "the https redirect was followed")

	for _, path := range []string{"/inner.m3u8", "/file.m3u8"} {
		u := srv.URL + path
		_, err := source.Open(context.Background(), u, source.Options{Policy: p, OpenTimeout: 10 * time.Second})
		requireUnavailable(t, u, err)
	}
	require.Contains(t, strings.Join(reasons(), "\n"), "127.0.0.2 is loopback")

	// The proxy verifies certificates (FFmpeg does not by default): without the test CA the
	// source is refused.
	strictTLS, _ := newPolicy(t, source.PolicyOptions{Allow: loopback})
	u := srv.URL + "/rel.m3u8"
	_, err := source.Open(context.Background(), u, source.Options{Policy: strictTLS, OpenTimeout: 10 * time.Second})
	requireUnavailable(t, u, err)
}

// TestPolicyHidesPortState: with the policy, a closed port, a port that speaks something else,
// a silent port and HTTP errors all fail with the same text; without it they are told apart
// (what made the API a port scanner).
func TestPolicyHidesPortState(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closed.Addr().String()
	require.NoError(t, closed.Close())

	banner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer banner.Close()
	go func() {
		for {
			c, err := banner.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			_ = c.Close()
		}
	}()
	silent := newSilentServer(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/page.mp4" {
			_, _ = w.Write([]byte("<html>not a video</html>"))
			return
		}
		http.NotFound(w, r)
	}))
	defer web.Close()
	webAddr := web.Listener.Addr().String()

	urls := []string{
		"http://" + closedAddr + "/x.mp4",
		"http://" + banner.Addr().String() + "/x.mp4",
		"http://" + silent.addr() + "/x.mp4",
		"http://" + webAddr + "/missing.mp4",
		"http://" + webAddr + "/page.mp4",
		"rtsp://" + closedAddr + "/x",
		"rtsp://" + webAddr + "/x",
		"rtmp://" + closedAddr + "/live/x",
	}
	open := func(u string, p *source.Policy) error {
		_, err := source.Open(context.Background(), u, source.Options{Policy: p, OpenTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
		require.Error(t, err, u)
		return err
	}
	p, reasons := newPolicy(t, source.PolicyOptions{Allow: loopback})
	raw := map[string]bool{}
	for _, u := range urls {
		requireUnavailable(t, u, open(u, p))
		raw[strings.TrimPrefix(open(u, nil).Error(), "open "+u+": ")] = true
	}
	// Each reason reaches the operator's log (for proxied sources, the proxy's and FFmpeg's).
	require.GreaterOrEqual(t, len(reasons()), len(urls))
	require.Greater(t, len(raw), 3, "without the policy the errors tell the ports apart: %v", raw)
}

// TestPolicyPinsTheCheckedAddress: names are resolved once, by the policy; FFmpeg is handed the
// checked address (a .test name would not resolve for FFmpeg), and a refused one is never
// connected.
func TestPolicyPinsTheCheckedAddress(t *testing.T) {
	data, err := os.ReadFile(makeClipAs(t, t.TempDir(), "live.ts", 160, 120, 15, 15))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				_, _ = c.Write(data)
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	res := testenv.MapResolver{"cam.test": "127.0.0.1"}
	ctx := context.Background()

	// Refused: loopback is not allowed, and raw tcp is not an allowed scheme by default.
	strict, _ := newPolicy(t, source.PolicyOptions{Resolver: res, Schemes: []string{"tcp", "rtsp"}})
	for _, u := range []string{"tcp://cam.test:" + port, "rtsp://cam.test:" + port + "/x", "tcp://127.0.0.1:" + port} {
		_, err := source.Open(ctx, u, source.Options{Policy: strict})
		requireUnavailable(t, u, err)
	}
	defaults, _ := newPolicy(t, source.PolicyOptions{Resolver: res, Allow: loopback})
	_, err = source.Open(ctx, "tcp://cam.test:"+port, source.Options{Policy: defaults})
	require.ErrorIs(t, err, source.ErrSchemeNotAllowed)
	require.Zero(t, accepted.Load(), "nothing connected")

	// Accepted: FFmpeg connects to 127.0.0.1, which only the policy's resolver knows.
	p, _ := newPolicy(t, source.PolicyOptions{Resolver: res, Allow: loopback, Schemes: []string{"tcp"}})
	src, err := source.Open(ctx, "tcp://cam.test:"+port, source.Options{Policy: p})
	require.NoError(t, err)
	defer src.Close()
	require.Equal(t, "tcp://cam.test:"+port, src.Info().URL, "the source keeps the submitted URL")
	frames := readAll(t, ctx, src)
	defer closeFrames(frames)
	require.Len(t, frames, 15)
	require.Equal(t, int32(1), accepted.Load())
}

// TestPolicyLeavesLocalFiles: local files are not network sources; their errors stay precise.
func TestPolicyLeavesLocalFiles(t *testing.T) {
	p, _ := newPolicy(t, source.PolicyOptions{})
	dir := t.TempDir()
	_, got, _ := decodeAll(t, makeClip(t, dir, 64, 48, 3, 3), source.Options{Policy: p})
	closeFrames(got)
	require.Len(t, got, 3)
	_, err := source.Open(context.Background(), filepath.Join(dir, "missing.mp4"), source.Options{Policy: p})
	require.ErrorIs(t, err, source.ErrNoSuchFile)
	require.False(t, errors.Is(err, source.ErrUnavailable))
}
