package serve

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestSubmitSourcePolicy: lae serve holds submitted URLs to the source policy (on by default):
// internal addresses get one generic answer that says nothing about the port, raw sockets are
// refused by scheme, and nothing refused is queued.
func TestSubmitSourcePolicy(t *testing.T) {
	s := startServer(t, nil)
	url := baseURL(s) + "/api/scans"
	for _, c := range []struct {
		name, url, msg string
	}{
		{"cloud metadata", "http://169.254.169.254/latest/meta-data/", "source refused or unavailable"},
		{"loopback port", "http://127.0.0.1:6379/", "source refused or unavailable"},
		{"ipv6 loopback", "http://[::1]:22/", "source refused or unavailable"},
		{"private rtsp", "rtsp://10.0.0.8:554/cam", "source refused or unavailable"},
		{"numeric loopback", "http://2130706433/", "source refused or unavailable"},
		{"raw tcp", "tcp://203.0.113.9:22", `URL scheme not allowed for submitted sources: \"tcp\"`},
		{"raw udp", "udp://203.0.113.9:1234", `URL scheme not allowed for submitted sources: \"udp\"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := postJSON(t, url, laev1.SubmitRequest{URL: c.url})
			require.Equal(t, http.StatusBadRequest, code, "%s", body)
			require.Contains(t, string(body), c.msg)
		})
	}
	_, body, _ := get(t, baseURL(s)+"/api/scans")
	require.JSONEq(t, `{"scans":[]}`, string(body), "nothing refused was queued")
}
