package source

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// egress is the policy's HTTP proxy (see policy.go): FFmpeg sends every request of a governed
// http(s) source here, and the proxy connects only to addresses the policy accepts, checks each
// redirect and each URI of an HLS playlist on the way back, and rewrites those that need TLS
// into the plain-http form FFmpeg is restricted to.
type egress struct {
	p   *Policy
	url string // what FFmpeg's http_proxy option is set to
	srv *http.Server
	tr  *http.Transport
	rp  *httputil.ReverseProxy
}

// Limits of what the proxy inspects: a playlist is read whole before FFmpeg sees it, and each
// distinct host it names is resolved and checked.
const (
	maxPlaylistBytes = 16 << 20
	maxPlaylistHosts = 16
)

// httpsSuffix ends the host FFmpeg is given for an https URL: the label before it is the
// base32 of the real host:port. .invalid never resolves (RFC 6761), so should FFmpeg ever try
// the name itself, it fails instead of connecting.
const httpsSuffix = ".https.lae-source.invalid"

var hostEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// upstreamKey carries a request's checked upstream URL from ServeHTTP to Rewrite.
type upstreamKey struct{}

func startEgress(p *Policy) (*egress, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("source policy proxy: %w", err)
	}
	x := &egress{p: p, url: "http://" + ln.Addr().String()}
	var tlsConf *tls.Config
	if p.o.TLSConfig != nil {
		tlsConf = p.o.TLSConfig.Clone()
	}
	x.tr = &http.Transport{
		Proxy:               nil, // the proxy connects itself: the dial is where the policy holds
		DialContext:         x.dial,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 15 * time.Second,
		MaxIdleConns:        32,
		IdleConnTimeout:     30 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	x.rp = &httputil.ReverseProxy{
		Rewrite:        x.rewrite,
		Transport:      x.tr,
		ModifyResponse: x.modify,
		ErrorHandler:   x.fail,
		// Live progressive streams must reach FFmpeg as they arrive.
		FlushInterval: 50 * time.Millisecond,
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	x.srv = &http.Server{Handler: x, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = x.srv.Serve(ln) }()
	return x, nil
}

func (x *egress) close() error {
	err := x.srv.Close()
	x.tr.CloseIdleConnections()
	return err
}

// ServeHTTP takes FFmpeg's proxy requests (absolute-form GETs). Anything else is refused: with
// protocol_whitelist "http,tcp,crypto" FFmpeg has no reason to send a CONNECT.
func (x *egress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || !r.URL.IsAbs() {
		x.deny(w, r.URL.String(), fmt.Errorf("proxy refuses %s %s", r.Method, r.URL))
		return
	}
	up, err := x.upstream(r.URL)
	if err != nil {
		x.deny(w, r.URL.String(), err)
		return
	}
	x.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), upstreamKey{}, up)))
}

// upstream turns the URL FFmpeg asked for back into the real one (ffmpegURL's inverse) and
// checks its scheme; its host is checked when the Transport dials it.
func (x *egress) upstream(in *url.URL) (*url.URL, error) {
	if in.Scheme != "http" {
		return nil, fmt.Errorf("proxy refuses scheme %q", in.Scheme)
	}
	u := *in
	u.User = nil
	if hp, ok := decodeHTTPSHost(in.Hostname()); ok {
		u.Scheme, u.Host = "https", hp
	}
	if !x.p.schemes[u.Scheme] {
		return nil, schemeError(u.Scheme, x.p.Schemes())
	}
	return &u, nil
}

func (x *egress) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL = pr.In.Context().Value(upstreamKey{}).(*url.URL)
	pr.Out.Host = ""
	// The Transport then asks for gzip itself and decodes it, so the proxy reads playlists in
	// clear; an encoding it did not ask for is refused in modify.
	pr.Out.Header.Del("Accept-Encoding")
}

// dial is the only way the proxy connects anywhere: the host is resolved once, every address
// is checked, and only checked addresses are dialled.
func (x *egress) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	addrs, err := x.p.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		c, err := x.p.o.Dial(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// modify checks what comes back before FFmpeg sees it: a redirect target is checked and put in
// FFmpeg's form, an HLS playlist has every URI checked and the absolute ones put in FFmpeg's
// form. An error fails the response (fail).
func (x *egress) modify(resp *http.Response) error {
	ctx, base := resp.Request.Context(), resp.Request.URL
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		// FFmpeg would inflate it (a deflated playlist) where the proxy cannot read it.
		return fmt.Errorf("response with unrequested Content-Encoding %q", enc)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		out, err := x.entry(ctx, base, loc, nil)
		if err != nil {
			return fmt.Errorf("redirect: %w", err)
		}
		resp.Header.Set("Location", out)
	}
	if resp.StatusCode/100 != 2 || resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	br := bufio.NewReader(resp.Body)
	head, _ := br.Peek(len(utf8BOM) + len(m3uTag))
	if !isPlaylist(head) {
		resp.Body = readCloser{br, resp.Body}
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(br, maxPlaylistBytes+1))
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read playlist: %w", err)
	}
	if len(body) > maxPlaylistBytes {
		return fmt.Errorf("playlist over %d bytes", maxPlaylistBytes)
	}
	out, err := x.rewritePlaylist(ctx, base, body)
	if err != nil {
		return err
	}
	// The playlist changed length: a partial (206) answer to FFmpeg's "Range: bytes=0-"
	// becomes the whole body.
	resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
	resp.Header.Del("Content-Range")
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	resp.ContentLength = int64(len(out))
	resp.Body = io.NopCloser(bytes.NewReader(out))
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

const (
	utf8BOM = "\uFEFF"
	m3uTag  = "#EXTM3U"
)

// isPlaylist reports whether a body starts like an HLS playlist. FFmpeg's hls demuxer parses a
// playlist only when its first line is #EXTM3U, so every playlist FFmpeg reads is inspected,
// whatever the URL or Content-Type said.
func isPlaylist(head []byte) bool {
	return bytes.HasPrefix(bytes.TrimPrefix(head, []byte(utf8BOM)), []byte(m3uTag))
}

// uriAttr matches the URI attributes of playlist tags (EXT-X-KEY, EXT-X-MAP, EXT-X-MEDIA, ...).
var uriAttr = regexp.MustCompile(`URI="([^"]*)"`)

// rewritePlaylist checks every URI of an HLS playlist (URI lines and URI="..." attributes):
// each must be http(s), allowed, and name a host the policy accepts; those that name a host
// are rewritten into FFmpeg's form (ffmpegURL), relative ones are left to resolve against the
// playlist's own URL, which FFmpeg already holds in that form.
func (x *egress) rewritePlaylist(ctx context.Context, base *url.URL, body []byte) ([]byte, error) {
	hosts := map[string]bool{base.Scheme + "://" + base.Host: true} // dialled, so checked
	var out bytes.Buffer
	out.Grow(len(body) + len(body)/8)
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line = body[:i+1]
		}
		body = body[len(line):]
		text := strings.TrimRight(string(line), "\r\n")
		eol := string(line[len(text):])
		trimmed := strings.TrimSpace(text)
		var err error
		switch {
		case trimmed == "":
		case strings.HasPrefix(trimmed, "#"):
			text = uriAttr.ReplaceAllStringFunc(text, func(m string) string {
				v, e := x.entry(ctx, base, uriAttr.FindStringSubmatch(m)[1], hosts)
				if e != nil && err == nil {
					err = e
				}
				return `URI="` + v + `"`
			})
		default:
			text, err = x.entry(ctx, base, trimmed, hosts)
		}
		if err != nil {
			return nil, fmt.Errorf("playlist %s: %w", base.Redacted(), err)
		}
		out.WriteString(text)
		out.WriteString(eol)
	}
	return out.Bytes(), nil
}

// entry checks one URI found in a response (a redirect's Location, a playlist entry) against
// base and returns what FFmpeg gets instead: it must be http(s) and allowed, and its host must
// be accepted (checked once per playlist, hosts caching the verdicts; nil = always check).
// A URI naming a host is returned in FFmpeg's form; a relative one unchanged.
func (x *egress) entry(ctx context.Context, base *url.URL, ref string, hosts map[string]bool) (string, error) {
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("URI %q: %w", ref, err)
	}
	u := base.ResolveReference(r)
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("URI %q: scheme %q is not http(s)", ref, u.Scheme)
	}
	if !x.p.schemes[u.Scheme] {
		return "", schemeError(u.Scheme, x.p.Schemes())
	}
	key := u.Scheme + "://" + u.Host
	if !hosts[key] {
		if len(hosts) >= maxPlaylistHosts {
			return "", fmt.Errorf("more than %d hosts", maxPlaylistHosts)
		}
		if _, err := x.p.resolve(ctx, u.Hostname()); err != nil {
			return "", err
		}
		if hosts != nil {
			hosts[key] = true
		}
	}
	if r.Host == "" && r.Scheme == "" {
		return ref, nil
	}
	out := ffmpegURL(u)
	if err := checkNoProxy(out); err != nil {
		return "", err
	}
	return out.String(), nil
}

func (x *egress) fail(w http.ResponseWriter, r *http.Request, err error) {
	x.deny(w, r.URL.String(), err)
}

// deny answers FFmpeg with one status and text whatever the reason, and reports the reason.
func (x *egress) deny(w http.ResponseWriter, rawURL string, err error) {
	if x.p.o.Refused != nil {
		x.p.o.Refused(rawURL, err)
	}
	http.Error(w, ErrUnavailable.Error(), http.StatusBadGateway)
}

// ffmpegURL is how a checked http(s) URL is handed to FFmpeg: http unchanged (FFmpeg sends it
// to the proxy as is), https as plain http to an encoded host that the proxy decodes back
// (upstream), since FFmpeg may not speak TLS itself.
func ffmpegURL(u *url.URL) *url.URL {
	out := *u
	if out.Scheme == "https" {
		port := out.Port()
		if port == "" {
			port = "443"
		}
		out.Scheme, out.Host = "http", encodeHTTPSHost(net.JoinHostPort(out.Hostname(), port))
	}
	return &out
}

func encodeHTTPSHost(hostport string) string {
	return hostEncoding.EncodeToString([]byte(hostport)) + httpsSuffix
}

// decodeHTTPSHost is encodeHTTPSHost's inverse: the real host:port (port omitted when 443),
// and whether host was an encoded one at all.
func decodeHTTPSHost(host string) (string, bool) {
	label, ok := strings.CutSuffix(strings.ToLower(host), httpsSuffix)
	if !ok || label == "" {
		return "", false
	}
	b, err := hostEncoding.DecodeString(label)
	if err != nil {
		return "", false
	}
	h, port, err := net.SplitHostPort(string(b))
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || !validHost(h) || n < 1 || n > 65535 {
		return "", false
	}
	if port == "443" {
		if strings.Contains(h, ":") {
			return "[" + h + "]", true
		}
		return h, true
	}
	return net.JoinHostPort(h, port), true
}

// validHost reports whether h is made only of what a host name or IP literal contains, so that
// a crafted label cannot smuggle a path, user or second authority into the upstream URL.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	if strings.Contains(h, ":") {
		a, err := netip.ParseAddr(h)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	for _, c := range h {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-_", c)
		if !ok {
			return false
		}
	}
	return true
}
