package source

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// ErrUnsupportedScheme is returned (wrapped) for a URL whose scheme is not in
// the allowlist. The allowlist exists because FFmpeg understands many more
// protocols (concat:, subfile:, pipe:, data:, ...) than we want a submitted
// URL to be able to reach.
var ErrUnsupportedScheme = errors.New("unsupported URL scheme")

// supportedSchemes is the allowlist of URL schemes, in the order the error
// message lists them. HLS is plain http(s) pointing at a .m3u8 playlist.
var supportedSchemes = []string{"file", "http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp"}

// liveSchemes are the schemes of sources that are live by nature: there is
// no end to seek to and the duration is unknown.
var liveSchemes = map[string]bool{"rtsp": true, "rtsps": true, "rtmp": true, "rtmps": true, "srt": true, "udp": true, "tcp": true}

// protocolWhitelist is what FFmpeg may open on behalf of each scheme. It stops
// a playlist or a crafted container from reaching other protocols (for example
// a local .m3u8 pulling http segments, or an HLS playlist listing file: URLs).
var protocolWhitelist = map[string]string{
	"file":  "file",
	"http":  "http,https,tcp,tls,crypto",
	"https": "http,https,tcp,tls,crypto",
	"rtsp":  "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
	"rtsps": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
	"rtmp":  "rtmp,rtmps,tcp,tls",
	"rtmps": "rtmp,rtmps,tcp,tls",
	"srt":   "srt,udp",
	"udp":   "udp,rtp",
	"tcp":   "tcp",
}

// ValidateURL reports whether url is something Open accepts: a plain path,
// file://, http(s) (including HLS .m3u8 playlists), rtsp(s), rtmp(s), srt,
// udp or tcp. Any other scheme gives an error naming the scheme and the
// supported ones.
func ValidateURL(url string) error {
	_, _, err := parseURL(url)
	return err
}

// LocalPath is the file a URL names when it is a local file (a plain path or file:), and
// false for network sources.
func LocalPath(raw string) (string, bool) {
	scheme, ffURL, err := parseURL(raw)
	if err != nil || scheme != "file" {
		return "", false
	}
	return strings.TrimPrefix(ffURL, "file:"), true
}

// parseURL splits url into its scheme ("file" for plain paths) and the string
// handed to FFmpeg. Plain paths become "file:<path>" so that FFmpeg never
// interprets a colon in a file name as a protocol prefix.
func parseURL(raw string) (scheme, ffURL string, err error) {
	if strings.TrimSpace(raw) == "" {
		return "", "", errors.New("empty URL")
	}
	scheme, rest, ok := splitScheme(raw)
	if !ok {
		return "file", "file:" + raw, nil
	}
	scheme = strings.ToLower(scheme)
	if _, known := protocolWhitelist[scheme]; !known {
		return "", "", fmt.Errorf("%w %q (supported: %s; HLS via http(s) .m3u8)",
			ErrUnsupportedScheme, scheme, strings.Join(supportedSchemes, ", "))
	}
	if scheme == "file" {
		p, err := filePath(raw, rest)
		if err != nil {
			return "", "", err
		}
		return "file", "file:" + p, nil
	}
	return scheme, raw, nil
}

// splitScheme finds an RFC 3986 scheme prefix ("x:" with x = ALPHA *(ALPHA /
// DIGIT / "+" / "-" / ".")). A single letter before the colon is not taken as
// a scheme so that Windows drive paths stay paths.
func splitScheme(raw string) (scheme, rest string, ok bool) {
	i := strings.IndexByte(raw, ':')
	if i < 2 {
		return "", "", false
	}
	for j := 0; j < i; j++ {
		c := raw[j]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return "", "", false
		}
	}
	return raw[:i], raw[i+1:], true
}

// filePath turns the part after "file:" into a local path: file:///a/b,
// file:/a/b and file:a/b are all accepted; %-escapes are decoded.
func filePath(raw, rest string) (string, error) {
	if strings.HasPrefix(rest, "//") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("parse file URL: %w", err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return "", fmt.Errorf("file URL with remote host %q is not supported", u.Host)
		}
		return filepath.FromSlash(u.Path), nil
	}
	p, err := url.PathUnescape(rest)
	if err != nil {
		return "", fmt.Errorf("parse file URL: %w", err)
	}
	return p, nil
}
