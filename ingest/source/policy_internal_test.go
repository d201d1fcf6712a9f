package source

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeResolver maps test names to addresses: the policy is tested without a DNS query, and
// "public" names resolve to documentation addresses (203.0.113.0/24, 2001:db8::/32) that the
// policy accepts but that nothing here ever connects to.
type fakeResolver struct {
	mu      sync.Mutex
	names   map[string][]string
	lookups []string
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups = append(r.lookups, host)
	addrs, ok := r.names[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

var testNames = map[string][]string{
	"public.test":     {"203.0.113.10"},
	"public6.test":    {"2001:db8::10"},
	"cdn.test":        {"203.0.113.20"},
	"metadata.test":   {"169.254.169.254"},
	"alibaba.test":    {"100.100.100.200"},
	"private.test":    {"10.0.0.5"},
	"rfc1918.test":    {"192.168.1.1"},
	"mixed.test":      {"203.0.113.10", "10.0.0.5"},
	"loop.test":       {"127.0.0.1"},
	"loop6.test":      {"::1"},
	"mapped.test":     {"::ffff:169.254.169.254"},
	"nat64.test":      {"64:ff9b::a9fe:a9fe"},
	"ula.test":        {"fd00::1"},
	"linklocal6.test": {"fe80::1"},
	"multicast.test":  {"239.1.2.3"},
	"zero.test":       {"0.0.0.0"},
	"camera.test":     {"10.20.0.7"},
}

// noDial fails the test if the policy ever connects: every case here must be decided first.
func noDial(t *testing.T) func(context.Context, string, string) (net.Conn, error) {
	return func(_ context.Context, _, addr string) (net.Conn, error) {
		t.Errorf("the policy connected to %s", addr)
		return nil, errors.New("test: no connections")
	}
}

func testPolicy(t *testing.T, o PolicyOptions) (*Policy, *fakeResolver, *[]string) {
	t.Helper()
	// FFmpeg bypasses its proxy for no_proxy hosts, which the policy then refuses: a developer's
	// no_proxy must not change these tests.
	t.Setenv("no_proxy", "")
	res := &fakeResolver{names: testNames}
	var mu sync.Mutex
	var refused []string
	o.Resolver = res
	if o.Dial == nil {
		o.Dial = noDial(t)
	}
	o.Refused = func(u string, detail error) {
		mu.Lock()
		defer mu.Unlock()
		refused = append(refused, u+": "+detail.Error())
	}
	p, err := NewPolicy(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p, res, &refused
}

func TestCheckAddr(t *testing.T) {
	p, _, _ := testPolicy(t, PolicyOptions{Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}})
	lo, _, _ := testPolicy(t, PolicyOptions{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	tests := []struct {
		addr    string
		refused string // "" = accepted
	}{
		{"203.0.113.10", ""},
		{"8.8.8.8", ""},
		{"2001:db8::10", ""},
		{"2606:4700::1111", ""},
		{"127.0.0.1", "loopback"},
		{"127.8.9.10", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"169.254.169.254", "link-local"},
		{"::ffff:169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"10.0.0.5", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"fd00::1", "private"},
		{"224.0.0.1", "multicast"},
		{"239.1.2.3", "multicast"},
		{"ff02::1", "multicast"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", "this host"},
		{"100.100.100.200", "shared address space"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"64:ff9b::a9fe:a9fe", "NAT64"},
		{"2002:7f00:1::", "6to4"},
		{"2001::1", "Teredo"},
		{"::127.0.0.1", "IPv4-compatible"},
		{"fec0::1", "site-local"},
		{"10.20.3.4", ""},        // allow-listed
		{"10.21.0.1", "private"}, // next to the allow-listed range
		{"172.15.255.255", ""},   // just below 172.16.0.0/12
		{"100.63.255.255", ""},   // just below 100.64.0.0/10
		{"198.17.255.255", ""},   // just below 198.18.0.0/15
		{"192.0.1.1", ""},        // just past 192.0.0.0/24
		{"169.253.255.255", ""},  // just below link-local
		{"223.255.255.255", ""},  // just below multicast
		{"11.0.0.0", ""},         // just past 10.0.0.0/8
		{"192.169.0.1", ""},      // just past 192.168.0.0/16
		{"9.255.255.255", ""},    // just below 10.0.0.0/8
		{"1.0.0.0", ""},          // just past 0.0.0.0/8
		{"128.0.0.1", ""},        // just past loopback
		{"203.0.113.255", ""},    // documentation ranges are public
		{"fe00::1", ""},          // just below fe80::/10 (unallocated but global unicast)
		{"2003::1", ""},          // just past 6to4
		{"2001:1::1", ""},        // just past Teredo
		{"2001:db8:ffff::1", ""}, // documentation
		{"64:ff9b:2::1", ""},     // past local NAT64
		{"::ffff:203.0.113.10", ""},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			err := p.CheckAddr(netip.MustParseAddr(tc.addr))
			if tc.refused == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.refused)
		})
	}
	// Allow-listing loopback accepts it in every spelling.
	for _, a := range []string{"127.0.0.1", "127.0.0.2", "::ffff:127.0.0.1"} {
		require.NoError(t, lo.CheckAddr(netip.MustParseAddr(a)), a)
	}
	require.Error(t, lo.CheckAddr(netip.MustParseAddr("::1")), "::1 is not in 127.0.0.0/8")
}

func TestPolicyCheck(t *testing.T) {
	p, res, refused := testPolicy(t, PolicyOptions{Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}})
	tests := []struct {
		url    string
		want   error // nil = accepted
		lookup bool  // whether a DNS lookup may happen
	}{
		// Accepted.
		{"http://public.test/clip.mp4", nil, true},
		{"https://public6.test:8443/live/index.m3u8?token=x", nil, true},
		{"rtsp://user:pass@public.test:554/stream", nil, true},
		{"rtmp://public.test/live/key", nil, true},
		{"srt://public.test:9000?streamid=x", nil, true},
		{"srt://public.test:9000?mode=caller", nil, true},
		{"http://203.0.113.10/x.mp4", nil, false},
		{"http://[2001:db8::1]:8080/x.mp4", nil, false},
		{"rtsp://camera.test/1", nil, true}, // allow-listed camera network
		{"/videos/a.mp4", nil, false},       // local files are not network sources
		{"file:///videos/a.mp4", nil, false},
		// Refused by address, before any connection: the same error for all.
		{"http://metadata.test/latest/meta-data/", ErrUnavailable, true},
		{"http://169.254.169.254/latest/meta-data/", ErrUnavailable, false},
		{"http://[fd00:ec2::254]/latest/meta-data/", ErrUnavailable, false},
		{"http://alibaba.test/latest/meta-data/", ErrUnavailable, true},
		{"http://private.test:8080/admin", ErrUnavailable, true},
		{"https://rfc1918.test/x.m3u8", ErrUnavailable, true},
		{"http://mixed.test/x.mp4", ErrUnavailable, true},
		{"http://loop.test:6379/", ErrUnavailable, true},
		{"http://loop6.test/", ErrUnavailable, true},
		{"http://127.0.0.1:22/", ErrUnavailable, false},
		{"http://[::1]:22/", ErrUnavailable, false},
		{"http://[::ffff:127.0.0.1]/", ErrUnavailable, false},
		{"http://mapped.test/", ErrUnavailable, true},
		{"http://nat64.test/", ErrUnavailable, true},
		{"http://ula.test/", ErrUnavailable, true},
		{"http://linklocal6.test/", ErrUnavailable, true},
		{"udp://multicast.test:1234", ErrSchemeNotAllowed, false},
		{"rtsp://zero.test/", ErrUnavailable, true},
		{"rtsp://0.0.0.0:554/", ErrUnavailable, false},
		{"rtmp://10.0.0.1/live/x", ErrUnavailable, false},
		{"srt://192.168.0.1:9000", ErrUnavailable, false},
		{"rtsp://camera.test.evil/1", ErrUnavailable, true}, // does not resolve: same answer
		{"http://nxdomain.test/", ErrUnavailable, true},
		// inet_aton spellings of 127.0.0.1 that Go would take for names.
		{"http://2130706433/", ErrUnavailable, false},
		{"http://0x7f.1/", ErrUnavailable, false},
		{"http://127.1/", ErrUnavailable, false},
		{"http://0177.0.0.1/", ErrUnavailable, false},
		// Parser tricks: the host FFmpeg sees must be the host checked.
		{"http://public.test@127.0.0.1/", ErrUnavailable, false},
		{"http://public.test#@127.0.0.1/", nil, true},
		{"http://127.0.0.1\\@public.test/", ErrUnavailable, false},
		{"http:/public.test/x", ErrUnavailable, false},
		{"http:///x", ErrUnavailable, false},
		// Listening is not a source.
		{"srt://public.test:9000?mode=listener", ErrUnavailable, false},
		// Schemes.
		{"tcp://public.test:80", ErrSchemeNotAllowed, false},
		{"udp://public.test:1234", ErrSchemeNotAllowed, false},
		{"gopher://public.test/", ErrUnsupportedScheme, false},
		{"concat:a.mp4|b.mp4", ErrUnsupportedScheme, false},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			res.mu.Lock()
			res.lookups = nil
			res.mu.Unlock()
			*refused = nil
			err := p.Check(context.Background(), tc.url)
			res.mu.Lock()
			looked := len(res.lookups) > 0
			res.mu.Unlock()
			if !tc.lookup {
				require.False(t, looked, "no DNS lookup expected")
			}
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
			if tc.want == ErrUnavailable {
				// One generic text; the reason only reaches the operator's hook.
				require.Equal(t, "source refused or unavailable", err.Error())
				require.NotNil(t, Detail(err))
				require.Len(t, *refused, 1)
			}
		})
	}
}

func TestPolicySchemes(t *testing.T) {
	p, _, _ := testPolicy(t, PolicyOptions{})
	require.Equal(t, DefaultSchemes, p.Schemes())
	raw, _, _ := testPolicy(t, PolicyOptions{Schemes: []string{"TCP", "http"}})
	require.Equal(t, []string{"http", "tcp"}, raw.Schemes())
	require.NoError(t, raw.Check(context.Background(), "tcp://public.test:9000"))
	require.ErrorIs(t, raw.Check(context.Background(), "tcp://public.test:9000?listen=1"), ErrUnavailable)
	err := raw.Check(context.Background(), "https://public.test/")
	require.ErrorIs(t, err, ErrSchemeNotAllowed)
	require.Contains(t, err.Error(), `"https" (allowed: http, tcp)`)
	_, err = NewPolicy(PolicyOptions{Schemes: []string{"file"}})
	require.ErrorContains(t, err, `"file" is not a network scheme`)
}

func TestAdmit(t *testing.T) {
	p, _, _ := testPolicy(t, PolicyOptions{Schemes: NetworkSchemes})
	ctx := context.Background()
	tests := []struct {
		url, ff   string
		pinned    bool
		proxied   bool
		refused   bool
		whitelist string
	}{
		{url: "rtsp://user:pw@public.test:554/s?x=1", ff: "rtsp://user:pw@203.0.113.10:554/s?x=1", pinned: true},
		{url: "rtsp://public6.test/s", ff: "rtsp://[2001:db8::10]/s", pinned: true},
		{url: "srt://public.test:9000?streamid=a", ff: "srt://203.0.113.10:9000?streamid=a", pinned: true},
		{url: "tcp://public.test:9000", ff: "tcp://203.0.113.10:9000", pinned: true},
		{url: "udp://public.test:1234", ff: "udp://203.0.113.10:1234", pinned: true},
		// TLS needs the name (SNI), RTMP servers their virtual host: not pinned.
		{url: "rtmp://public.test/live/k", ff: "rtmp://public.test/live/k"},
		{url: "rtsps://public.test/s", ff: "rtsps://public.test/s"},
		{url: "http://public.test/a.mp4", ff: "http://public.test/a.mp4", proxied: true},
		{url: "https://public.test/a.m3u8?t=1", ff: "http://" + encodeHTTPSHost("public.test:443") + "/a.m3u8?t=1", proxied: true},
		{url: "https://u:p@public6.test:8443/a", ff: "http://u:p@" + encodeHTTPSHost("public6.test:8443") + "/a", proxied: true},
		{url: "http://metadata.test/", refused: true},
		{url: "rtsp://private.test/", refused: true},
		{url: "rtmp://loop.test/live/x", refused: true},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			scheme, ffURL, err := parseURL(tc.url)
			require.NoError(t, err)
			opts := formatOptions(scheme, Options{})
			got, err := p.admit(ctx, scheme, ffURL, opts)
			if tc.refused {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.ff, got)
			require.Equal(t, formatWhitelist, opts["format_whitelist"])
			if tc.proxied {
				require.Equal(t, proxiedWhitelist, opts["protocol_whitelist"])
				require.True(t, strings.HasPrefix(opts["http_proxy"], "http://127.0.0.1:"), opts["http_proxy"])
			} else {
				require.Equal(t, protocolWhitelist[scheme], opts["protocol_whitelist"])
				require.Empty(t, opts["http_proxy"])
			}
		})
	}
	// A nil policy and local files are left alone.
	var none *Policy
	opts := map[string]string{}
	got, err := none.admit(ctx, "http", "http://127.0.0.1/x", opts)
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1/x", got)
	got, err = p.admit(ctx, "file", "file:/x.mp4", opts)
	require.NoError(t, err)
	require.Equal(t, "file:/x.mp4", got)
	require.Empty(t, opts)
}

func TestAdmitRefusesNoProxyHosts(t *testing.T) {
	p, _, _ := testPolicy(t, PolicyOptions{})
	t.Setenv("no_proxy", "localhost,.test")
	_, err := p.admit(context.Background(), "http", "http://public.test/a.mp4", map[string]string{})
	require.ErrorContains(t, err, "no_proxy")
	// https reaches FFmpeg under an encoded .invalid name that no_proxy does not match.
	_, err = p.admit(context.Background(), "https", "https://public.test/a.mp4", map[string]string{})
	require.NoError(t, err)
}

func TestMatchNoProxy(t *testing.T) {
	tests := []struct {
		noProxy, host string
		want          bool
	}{
		{"", "a.com", false},
		{"*", "a.com", true},
		{"a.com", "a.com", true},
		{"a.com", "www.a.com", true},
		{"a.com", "xa.com", false},
		{".a.com", "www.a.com", true},
		{"*.a.com", "a.com", true},
		{"b.com, a.com", "a.com", true},
		{"b.com a.com", "a.com", true},
		{"A.com", "a.com", false}, // FFmpeg compares case-sensitively
		{"127.0.0.1", "127.0.0.1", true},
		{"longer.a.com", "a.com", false},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, matchNoProxy(tc.noProxy, tc.host), "%q %q", tc.noProxy, tc.host)
	}
}

func TestConceal(t *testing.T) {
	p, _, refused := testPolicy(t, PolicyOptions{})
	ctx := context.Background()
	cause := errors.New("Connection refused")
	for _, tc := range []struct {
		url  string
		err  error
		kept bool
	}{
		{"http://public.test/x.mp4", cause, false},
		{"rtsp://public.test/x", ErrTimeout, false},
		{"rtsp://public.test/x", ErrNotMedia, false},
		{"/local/x.mp4", ErrNoSuchFile, true},
		{"foo://x", ErrUnsupportedScheme, true},
		{"tcp://public.test:1", schemeError("tcp", DefaultSchemes), true},
	} {
		err := tc.err
		p.conceal(ctx, tc.url, &err)
		if tc.kept {
			require.Equal(t, tc.err, err, tc.url)
			continue
		}
		require.Equal(t, ErrUnavailable.Error(), err.Error(), tc.url)
		require.ErrorIs(t, err, ErrUnavailable)
		require.NotErrorIs(t, err, tc.err, "the reason must not be reachable")
		require.Equal(t, tc.err, Detail(err))
	}
	require.Len(t, *refused, 3)
	// Cancellation by the caller is the caller's own business.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err := error(context.Canceled)
	p.conceal(cctx, "http://public.test/x", &err)
	require.Equal(t, context.Canceled, err)
	// No policy, no change.
	var none *Policy
	err = cause
	none.conceal(ctx, "http://public.test/x", &err)
	require.Equal(t, cause, err)
}

func TestHTTPSHostEncoding(t *testing.T) {
	for _, hp := range []string{"public.test:443", "public.test:8443", "[2001:db8::1]:443", "[2001:db8::1]:8443", "203.0.113.1:443"} {
		enc := encodeHTTPSHost(hp)
		u, err := url.Parse("http://" + enc + ":80/x")
		require.NoError(t, err, "FFmpeg's form must parse as a URL")
		got, ok := decodeHTTPSHost(u.Hostname())
		require.True(t, ok, hp)
		want := strings.TrimSuffix(hp, ":443")
		require.Equal(t, want, got)
	}
	for _, bad := range []string{"", "public.test", httpsSuffix, "!!" + httpsSuffix,
		encodeHTTPSHost("noport"), encodeHTTPSHost("a/b:443"), encodeHTTPSHost("a@b:443"), encodeHTTPSHost(":443"),
		encodeHTTPSHost("a:0"), encodeHTTPSHost("a:99999"), encodeHTTPSHost("a:x")} {
		_, ok := decodeHTTPSHost(bad)
		require.False(t, ok, bad)
	}
}

// FuzzDecodeHTTPSHost: the proxy decodes hosts FFmpeg got from anywhere (playlists, redirects):
// it must never panic, only ever yield a clean host:port, and invert encodeHTTPSHost.
func FuzzDecodeHTTPSHost(f *testing.F) {
	f.Add("public.test:443")
	f.Add("[::1]:8443")
	f.Add("a/b@c:443")
	f.Fuzz(func(t *testing.T, s string) {
		for _, in := range []string{s, encodeHTTPSHost(s), s + httpsSuffix} {
			hp, ok := decodeHTTPSHost(in)
			if !ok {
				continue
			}
			u, err := url.Parse("https://" + hp + "/")
			require.NoError(t, err, hp)
			require.Empty(t, u.User, hp)
			require.Equal(t, "/", u.Path, hp)
			require.NotEmpty(t, u.Hostname(), hp)
		}
		if h, port, err := net.SplitHostPort(s); err == nil && validHost(h) && port == "8443" {
			got, ok := decodeHTTPSHost(encodeHTTPSHost(s))
			require.True(t, ok, s)
			require.Equal(t, net.JoinHostPort(h, port), got)
		}
	})
}

// FuzzParseTarget: whatever URL is submitted, an accepted one has one host for Go and for
// FFmpeg's parser, so the host checked is the host connected.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"http://a.test/x", "http://a@b@c/", "rtsp://[::1]:554/x", "http://a#@b/", "srt://h:1?mode=listener"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := parseTarget(s)
		if err != nil {
			return
		}
		require.True(t, strings.EqualFold(tg.u.Hostname(), ffmpegHost(s)), "%q: go %q ffmpeg %q", s, tg.u.Hostname(), ffmpegHost(s))
		require.NotEmpty(t, tg.u.Host)
	})
}

func TestPlaylistRewrite(t *testing.T) {
	p, _, _ := testPolicy(t, PolicyOptions{})
	x := &egress{p: p}
	base, _ := url.Parse("https://public.test/live/index.m3u8")
	ctx := context.Background()
	enc := "http://" + encodeHTTPSHost("cdn.test:443")
	in := "#EXTM3U\r\n#EXT-X-KEY:METHOD=AES-128,URI=\"https://cdn.test/key\"\n#EXT-X-MAP:URI=\"init.mp4\"\n" +
		"#EXTINF:2,\nseg0.ts\n#EXTINF:2,\n/abs/seg1.ts\n#EXTINF:2,\nhttps://cdn.test/seg2.ts\n#EXTINF:2,\n//cdn.test/seg3.ts\n" +
		"#EXTINF:2,\nhttp://cdn.test/seg4.ts\n\n#EXT-X-ENDLIST\n"
	out, err := x.rewritePlaylist(ctx, base, []byte(in))
	require.NoError(t, err)
	want := "#EXTM3U\r\n#EXT-X-KEY:METHOD=AES-128,URI=\"" + enc + "/key\"\n#EXT-X-MAP:URI=\"init.mp4\"\n" +
		"#EXTINF:2,\nseg0.ts\n#EXTINF:2,\n/abs/seg1.ts\n#EXTINF:2,\n" + enc + "/seg2.ts\n#EXTINF:2,\n" + enc + "/seg3.ts\n" +
		"#EXTINF:2,\nhttp://cdn.test/seg4.ts\n\n#EXT-X-ENDLIST\n"
	require.Equal(t, want, string(out))

	for name, entry := range map[string]string{
		"file":        "file:///etc/passwd",
		"tcp":         "tcp://public.test:1/",
		"httpproxy":   "httpproxy://203.0.113.1:80/x:1",
		"crypto":      "crypto+http://public.test/seg.ts",
		"data":        "data:video/mp2t;base64,AAAA",
		"metadata":    "http://169.254.169.254/latest/meta-data/",
		"private":     "https://private.test/seg.ts",
		"unresolved":  "http://nxdomain.test/seg.ts",
		"key private": "#EXT-X-KEY:METHOD=AES-128,URI=\"http://10.0.0.1/key\"",
	} {
		_, err := x.rewritePlaylist(ctx, base, []byte("#EXTM3U\n#EXTINF:2,\n"+entry+"\n"))
		require.Error(t, err, name)
	}
	var many strings.Builder
	many.WriteString("#EXTM3U\n")
	for i := range maxPlaylistHosts + 1 {
		many.WriteString("http://203.0.113." + string(rune('1'+i%9)) + strings.Repeat("0", i/9) + "/s.ts\n")
	}
	_, err = x.rewritePlaylist(ctx, base, []byte(many.String()))
	require.ErrorContains(t, err, "hosts")
}

// TestProxyDecidesBeforeDialling drives the proxy as FFmpeg does (absolute-form requests) and
// shows that refused hosts are never dialled, and that an accepted one is dialled by its
// checked address, not its name.
func TestProxyDecidesBeforeDialling(t *testing.T) {
	var mu sync.Mutex
	var dialled []string
	p, _, refused := testPolicy(t, PolicyOptions{Dial: func(_ context.Context, _, addr string) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		dialled = append(dialled, addr)
		return nil, errors.New("test: no connections")
	}})
	x, err := p.egress()
	require.NoError(t, err)
	proxyURL, _ := url.Parse(x.url)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	defer client.CloseIdleConnections()
	get := func(u string) (int, string) {
		resp, err := client.Get(u)
		require.NoError(t, err)
		defer resp.Body.Close()
		b := make([]byte, 100)
		n, _ := resp.Body.Read(b)
		return resp.StatusCode, strings.TrimSpace(string(b[:n]))
	}
	for _, u := range []string{"http://metadata.test/latest/meta-data/", "http://127.0.0.1:22/", "http://private.test/",
		"http://" + encodeHTTPSHost("10.0.0.1:443") + "/", "http://mixed.test/"} {
		code, body := get(u)
		require.Equal(t, http.StatusBadGateway, code, u)
		require.Equal(t, "source refused or unavailable", body, u)
	}
	require.Empty(t, dialled, "refused hosts are decided before any connection")
	require.Len(t, *refused, 5)

	code, body := get("http://public.test/clip.mp4")
	require.Equal(t, http.StatusBadGateway, code)
	require.Equal(t, "source refused or unavailable", body, "a failed dial says no more than a refusal")
	code, _ = get("http://" + encodeHTTPSHost("public6.test:8443") + "/clip.mp4")
	require.Equal(t, http.StatusBadGateway, code)
	mu.Lock()
	require.Equal(t, []string{"203.0.113.10:80", "[2001:db8::10]:8443"}, dialled, "dialled by the checked address")
	mu.Unlock()

	// A proxy CONNECT (what FFmpeg's tls would send) is refused outright.
	req, _ := http.NewRequest(http.MethodConnect, x.url, nil)
	req.Host = "public.test:443"
	resp, err := http.DefaultTransport.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)

	require.NoError(t, p.Close())
	_, err = p.egress()
	require.Error(t, err, "a closed policy opens nothing")
}
