package source

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// The source policy decides which network sources a submitted URL may make this process connect
// to. Without it, POST /api/scans and lae.submit were an SSRF and port-scanning service: any
// caller could make FFmpeg connect to loopback, link-local (cloud metadata) and private
// addresses, follow redirects there, and read the port's state off the error text.
//
// It is enforced twice. At submission (Policy.Check, from ingest/submit and the HTTP API), for
// fast feedback: the scheme must be allowed and the host must resolve, with every address
// outside the refused ranges (refusedAddr) or inside an allow-listed prefix; nothing is
// connected. And when ingest opens the URL (Options.Policy, set in the ingest worker's pipeline
// template, so that a work item published straight to the work queue is held to it too), where
// what FFmpeg actually connects is controlled per scheme:
//
//   - http, https: FFmpeg 5.1 follows redirects and opens playlist entries by itself, without
//     asking (its AVIO interrupt callback sees no URLs, go-astiav exposes no io_open). So
//     FFmpeg sends every HTTP request to an in-process proxy on loopback (egress, proxy.go),
//     which resolves each host, checks every address and dials only a checked address: a
//     refused address is never connected, and no second DNS answer comes between check and
//     connection. Redirect targets (Location) and every URI of an HLS playlist are checked by
//     the proxy as they pass, and checked again when FFmpeg requests them. FFmpeg gets
//     http_proxy, protocol_whitelist "http,tcp,crypto" (no tls, https or httpproxy: it cannot
//     open a connection the proxy does not see) and a demuxer whitelist (formatWhitelist)
//     without the demuxers that open URLs named inside the media (concat, dash, imf, ...).
//     https sources, redirects and playlist entries reach FFmpeg as plain http URLs with an
//     encoded host (ffmpegURL) that the proxy turns back into https; TLS is the proxy's, and
//     it verifies certificates (FFmpeg's own default was not to).
//   - rtsp, srt, udp, tcp: the host is resolved once, checked, and FFmpeg gets the URL with
//     the checked address in place of the name (pinned).
//   - rtsps, rtmp, rtmps: checked like the others, but handed to FFmpeg with the name: TLS
//     needs it for SNI, and RTMP servers pick their virtual host from the tcUrl.
//
// A failed open of a governed network source fails with ErrUnavailable whatever the reason
// (refused, closed port, open port speaking something else, HTTP error, timeout), so the error
// no longer tells port states apart; the reason goes to PolicyOptions.Refused (the operator's
// log). A refused scheme is named (that says nothing about the network).
//
// Residual gaps, where FFmpeg connects without a caller seeing it:
//   - RTSP: FFmpeg follows RTSP 3xx redirects and sends RTP/RTCP to the ports the server
//     names; only the submitted host is checked (and pinned).
//   - rtsps, rtmp, rtmps: FFmpeg resolves the name again itself, so a DNS answer that changes
//     between the check and FFmpeg's lookup (DNS rebinding) is not caught.
//   - tcp stays in the http whitelist (FFmpeg reaches the proxy over it): a demuxer opening a
//     tcp:// URL named inside the media would connect directly. The demuxers that do are
//     outside formatWhitelist; hls opens only file, data and http* URLs (hence no httpproxy).
//   - no_proxy: FFmpeg bypasses http_proxy for hosts the no_proxy environment variable
//     matches; URLs that FFmpeg would fetch directly are refused (checkNoProxy), never
//     connected unchecked.
//   - Timing: a refused address fails at once and an unreachable one after a timeout.
//
// Costs: under the policy DASH, IMF and concat sources are not opened (format whitelist), and
// cookies set by https sources are not sent back (FFmpeg matches their domain against the
// encoded host name).
//
// Local files (plain paths, file:) are not network sources: the policy lets them through, and
// FFmpeg's whitelist for them is "file" only. Whether a caller may name local files at all is
// decided elsewhere (serve.allow_local_paths for the HTTP API).

// ErrUnavailable is the one error a policy-governed network source fails with, whether it was
// refused by the policy or could not be opened: a caller must not learn from the error whether
// a port is closed, open or speaks HTTP. The reason goes to PolicyOptions.Refused.
var ErrUnavailable = errors.New("source refused or unavailable")

// ErrSchemeNotAllowed is returned (wrapped) for a submitted URL whose scheme the policy does not
// allow. It says nothing about the network, so it names the scheme and the allowed ones.
var ErrSchemeNotAllowed = errors.New("URL scheme not allowed for submitted sources")

// NetworkSchemes are the network schemes a policy can allow (ValidateURL's list without file).
var NetworkSchemes = []string{"http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp"}

// DefaultSchemes are the schemes allowed when PolicyOptions.Schemes is empty: raw tcp and udp
// are left out, since they read whatever a port sends (a port scanner's dream), and no
// product source needs them.
var DefaultSchemes = []string{"http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "srt"}

// formatWhitelist is the demuxers FFmpeg may use for a governed network source (nested
// playlists and segments included: FFmpeg copies the whitelist to them). It leaves out every
// demuxer that opens URLs named inside the media (concat, dash, imf, ...) except hls, whose
// playlists the proxy checks; a format outside it fails the open.
const formatWhitelist = "hls,mpegts,mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,flv,live_flv,avi,mpeg,mpegvideo," +
	"h264,hevc,m4v,mjpeg,mpjpeg,ogg,asf,nut,ivf,obu,gif,aac,mp3,ac3,eac3,webvtt,rtsp"

// proxiedWhitelist is FFmpeg's protocol whitelist for proxied http(s) sources: plain HTTP
// (over tcp, to the proxy only, since http_proxy is set) and crypto for AES-128 HLS segments.
// Without tls, https and httpproxy FFmpeg cannot open a connection the proxy does not see.
const proxiedWhitelist = "http,tcp,crypto"

// Resolver looks up the addresses of a host; *net.Resolver is one. Tests inject a map so that
// nothing leaves the machine.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// PolicyOptions configures NewPolicy.
type PolicyOptions struct {
	// Schemes are the network schemes submitted URLs may use (nil = DefaultSchemes); each
	// must be one of NetworkSchemes.
	Schemes []string
	// Allow are address ranges accepted although they fall in a refused range (a camera
	// network, a lab's 127.0.0.0/8).
	Allow []netip.Prefix
	// Resolver resolves host names (nil = net.DefaultResolver).
	Resolver Resolver
	// Dial connects the proxy to an address the policy accepted (nil = a net.Dialer with a
	// 15 s timeout). It only ever receives literal addresses.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is the proxy's TLS client configuration for https sources (nil = verify
	// against the system roots). FFmpeg never speaks TLS for a governed source: the proxy does.
	TLSConfig *tls.Config
	// Refused, when set, is told why a source was refused or failed to open (the detail that
	// ErrUnavailable hides from the submitter); it must be safe for concurrent use.
	Refused func(url string, detail error)
}

// Policy is a source policy (see the comment at the top of this file). It is safe for
// concurrent use; Close stops its proxy.
type Policy struct {
	o       PolicyOptions
	schemes map[string]bool

	mu     sync.Mutex
	proxy  *egress // started by the first proxied open
	closed bool
}

// NewPolicy checks o and returns the policy. The proxy starts with the first http(s) open.
func NewPolicy(o PolicyOptions) (*Policy, error) {
	if len(o.Schemes) == 0 {
		o.Schemes = DefaultSchemes
	}
	p := &Policy{o: o, schemes: map[string]bool{}}
	for _, s := range o.Schemes {
		s = strings.ToLower(s)
		if !slices.Contains(NetworkSchemes, s) {
			return nil, fmt.Errorf("source policy: scheme %q is not a network scheme (want %s)", s, strings.Join(NetworkSchemes, ", "))
		}
		p.schemes[s] = true
	}
	if p.o.Resolver == nil {
		p.o.Resolver = net.DefaultResolver
	}
	if p.o.Dial == nil {
		d := &net.Dialer{Timeout: 15 * time.Second}
		p.o.Dial = d.DialContext
	}
	return p, nil
}

// Close stops the policy's proxy: sources opened through it fail from then on. It is safe to
// call on a nil policy and more than once.
func (p *Policy) Close() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	x := p.proxy
	p.proxy, p.closed = nil, true
	p.mu.Unlock()
	if x != nil {
		return x.close()
	}
	return nil
}

// Schemes are the allowed schemes, in NetworkSchemes order.
func (p *Policy) Schemes() []string {
	var out []string
	for _, s := range NetworkSchemes {
		if p.schemes[s] {
			out = append(out, s)
		}
	}
	return out
}

// Check is the decision for a submitted URL, made without connecting anything: a local path
// passes (it is not a network source), a network URL passes when its scheme is allowed and its
// host resolves to addresses the policy accepts. A refused scheme gives ErrSchemeNotAllowed; a
// refused or unresolvable host gives ErrUnavailable, the same for both so that the answer does
// not map the internal network.
func (p *Policy) Check(ctx context.Context, rawURL string) error {
	scheme, _, err := parseURL(rawURL)
	if err != nil || scheme == "file" {
		return err
	}
	if _, err := p.checkURL(ctx, rawURL); err != nil {
		return p.refused(rawURL, err)
	}
	return nil
}

// checkURL parses a network URL, checks its scheme and resolves and checks its host. It
// returns the parsed URL and the accepted addresses; its errors are the detail (for logs).
func (p *Policy) checkURL(ctx context.Context, rawURL string) (*target, error) {
	t, err := parseTarget(rawURL)
	if err != nil {
		return nil, err
	}
	if !p.schemes[t.u.Scheme] {
		return nil, schemeError(t.u.Scheme, p.Schemes())
	}
	if t.addrs, err = p.resolve(ctx, t.u.Hostname()); err != nil {
		return nil, err
	}
	return t, nil
}

func schemeError(scheme string, allowed []string) error {
	return fmt.Errorf("%w: %q (allowed: %s)", ErrSchemeNotAllowed, scheme, strings.Join(allowed, ", "))
}

// target is a parsed network URL and, once resolved, the addresses its host was accepted with.
type target struct {
	u     *url.URL
	addrs []netip.Addr
}

// parseTarget parses a network URL strictly: it needs a host, and the host FFmpeg's own parser
// (av_url_split) would find must be the one Go found, so that the checked host is the connected
// one.
func parseTarget(rawURL string) (*target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse URL: %w", err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Opaque != "" || u.Host == "" {
		return nil, errors.New("URL has no host")
	}
	if h := ffmpegHost(rawURL); !strings.EqualFold(h, u.Hostname()) {
		return nil, fmt.Errorf("ambiguous URL: host %q for Go, %q for FFmpeg", u.Hostname(), h)
	}
	q := u.Query()
	switch u.Scheme {
	case "tcp":
		if q.Has("listen") {
			return nil, errors.New("tcp listen mode is not a source")
		}
	case "srt":
		if m := q.Get("mode"); m != "" && m != "caller" {
			return nil, fmt.Errorf("srt mode %q is not a source", m)
		}
	}
	return &target{u: u}, nil
}

// ffmpegHost is the host FFmpeg's av_url_split finds in raw: after "scheme://", up to the
// first '/', '?' or '#', after the last '@', without the port (brackets removed for IPv6).
func ffmpegHost(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	if strings.HasPrefix(rest, "[") {
		if i := strings.IndexByte(rest, ']'); i > 0 {
			return rest[1:i]
		}
		return rest
	}
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// resolve resolves host once and checks every address: all must be accepted, so that an
// answer mixing a public and a private address cannot steer the connection to the private one.
// Literal addresses are not looked up.
func (p *Policy) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if host == "" {
		return nil, errors.New("URL has no host")
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		addrs = []netip.Addr{a}
	} else {
		if looksNumeric(host) {
			// inet_aton forms (127.1, 0x7f000001, 017700000001) are addresses to the C
			// resolver FFmpeg uses but names to Go's: refuse rather than guess.
			return nil, fmt.Errorf("host %q is a non-canonical IP address", host)
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		addrs, err = p.o.Resolver.LookupNetIP(lctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			return nil, fmt.Errorf("%s: %w", host, err)
		}
	}
	return addrs, nil
}

// looksNumeric reports whether every dot-separated part of host is a decimal, octal or hex
// number, as inet_aton reads them.
func looksNumeric(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	for _, part := range strings.Split(host, ".") {
		lp := strings.ToLower(part)
		digits, hex := lp, false
		if strings.HasPrefix(lp, "0x") {
			digits, hex = lp[2:], true
		}
		if digits == "" && !hex {
			return false
		}
		for _, c := range digits {
			isDigit := c >= '0' && c <= '9' || hex && c >= 'a' && c <= 'f'
			if !isDigit {
				return false
			}
		}
	}
	return true
}

// CheckAddr is the policy's decision for one address: nil when it may be connected.
func (p *Policy) CheckAddr(a netip.Addr) error {
	a = a.WithZone("")
	u := a.Unmap()
	for _, pre := range p.o.Allow {
		if pre.Contains(a) || pre.Contains(u) {
			return nil
		}
	}
	if why := refusedAddr(u); why != "" {
		return fmt.Errorf("address %s is %s", u, why)
	}
	return nil
}

// refusedRanges are refused besides what netip classifies (loopback, link-local, private,
// multicast, unspecified), each because it reaches this machine or an internal network, or
// embeds an IPv4 address that could.
var refusedRanges = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "in 0.0.0.0/8 (this host)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (carrier NAT; some clouds' metadata)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking space"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible IPv6"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64 (embeds an IPv4 address)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local NAT64"},
	{netip.MustParsePrefix("2001::/32"), "Teredo (embeds an IPv4 address)"},
	{netip.MustParsePrefix("2002::/16"), "6to4 (embeds an IPv4 address)"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

// refusedAddr says why a is refused ("" when it is not).
func refusedAddr(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast():
		return "link-local (cloud metadata lives here)"
	case a.IsMulticast():
		return "multicast"
	case a.IsPrivate():
		return "private"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(a) {
			return r.why
		}
	}
	return ""
}

// admit holds one open to the policy (the hook in open): it is a no-op for a nil policy and
// for local files. For a network source it checks the URL and returns what FFmpeg is handed
// instead of ffURL, adjusting opts (FFmpeg's format and protocol options) as described at the
// top of this file.
func (p *Policy) admit(ctx context.Context, scheme, ffURL string, opts map[string]string) (string, error) {
	if p == nil || scheme == "file" {
		return ffURL, nil
	}
	t, err := p.checkURL(ctx, ffURL)
	if err != nil {
		return "", err
	}
	opts["format_whitelist"] = formatWhitelist
	switch scheme {
	case "http", "https":
		x, err := p.egress()
		if err != nil {
			return "", err
		}
		out := ffmpegURL(t.u)
		if err := checkNoProxy(out); err != nil {
			return "", err
		}
		opts["protocol_whitelist"] = proxiedWhitelist
		opts["http_proxy"] = x.url
		return out.String(), nil
	case "rtsp", "srt", "udp", "tcp":
		// Pinned: FFmpeg connects to the address that was checked.
		u := *t.u
		if port := u.Port(); port != "" {
			u.Host = net.JoinHostPort(t.addrs[0].String(), port)
		} else {
			u.Host = hostLiteral(t.addrs[0])
		}
		return u.String(), nil
	}
	return ffURL, nil
}

func hostLiteral(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "[" + a.String() + "]"
	}
	return a.Unmap().String()
}

// egress returns the policy's proxy, starting it on first use.
func (p *Policy) egress() (*egress, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("source policy closed")
	}
	if p.proxy == nil {
		x, err := startEgress(p)
		if err != nil {
			return nil, err
		}
		p.proxy = x
	}
	return p.proxy, nil
}

// checkNoProxy refuses a URL FFmpeg would fetch without the proxy: FFmpeg's http protocol
// ignores http_proxy for hosts matched by the no_proxy environment variable.
func checkNoProxy(u *url.URL) error {
	if v := os.Getenv("no_proxy"); matchNoProxy(v, u.Hostname()) {
		return fmt.Errorf("host %q matches no_proxy=%q: FFmpeg would connect to it directly, past the source policy", u.Hostname(), v)
	}
	return nil
}

// matchNoProxy is FFmpeg's ff_http_match_no_proxy: entries separated by spaces or commas, "*"
// matches everything, an entry (leading "*" and "." dropped) matches the host or any host
// ending in "."+entry; the comparison is case-sensitive, as FFmpeg's is.
func matchNoProxy(noProxy, host string) bool {
	if noProxy == "" || host == "" {
		return false
	}
	for _, pat := range strings.FieldsFunc(noProxy, func(r rune) bool { return r == ' ' || r == ',' }) {
		if pat == "*" {
			return true
		}
		pat = strings.TrimPrefix(pat, "*")
		pat = strings.TrimPrefix(pat, ".")
		if len(pat) > len(host) || !strings.HasSuffix(host, pat) {
			continue
		}
		if len(pat) == len(host) || host[len(host)-len(pat)-1] == '.' {
			return true
		}
	}
	return false
}

// refused reports detail to PolicyOptions.Refused and returns what the submitter sees: a
// refused scheme as such (it says nothing about the network), anything else as ErrUnavailable.
func (p *Policy) refused(rawURL string, detail error) error {
	if errors.Is(detail, ErrSchemeNotAllowed) {
		return detail
	}
	if p.o.Refused != nil {
		p.o.Refused(rawURL, detail)
	}
	return unavailable{detail}
}

// conceal replaces the error of a failed open of a governed network source with ErrUnavailable
// (the hook in open, deferred): whether FFmpeg met a refusal, a closed port, a port that does
// not speak the protocol or an HTTP error must not show. Cancellation by the caller and errors
// of local files and URL syntax are kept.
func (p *Policy) conceal(ctx context.Context, rawURL string, err *error) {
	if p == nil || *err == nil || ctx.Err() != nil && errors.Is(*err, ctx.Err()) {
		return
	}
	if errors.Is(*err, ErrUnsupportedScheme) || errors.Is(*err, ErrUnavailable) {
		return
	}
	if scheme, _, perr := parseURL(rawURL); perr != nil || scheme == "file" {
		return
	}
	*err = p.refused(rawURL, *err)
}

// unavailable is ErrUnavailable carrying the detail for Detail (and nothing else: errors.Is
// and errors.As do not reach into it, so no caller can branch on, or print, the hidden reason).
type unavailable struct{ detail error }

func (e unavailable) Error() string        { return ErrUnavailable.Error() }
func (e unavailable) Is(target error) bool { return target == ErrUnavailable }

// Detail is the reason hidden behind an ErrUnavailable from a policy (for the operator's logs
// and tests), or nil.
func Detail(err error) error {
	var u unavailable
	if errors.As(err, &u) {
		return u.detail
	}
	return nil
}
