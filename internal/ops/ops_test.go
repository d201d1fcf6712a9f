package ops

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/internal/config"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return getAuth(t, url, "")
}

// getAuth is get with an Authorization header (none when auth is "").
func getAuth(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	s := NewServer()
	m := s.Metrics
	m.Verdict("fake")
	m.Error("detector", "malformed_crop")
	require.NoError(t, s.Start("127.0.0.1:0"))
	defer s.Shutdown(context.Background())
	base := "http://" + s.Addr()

	ready := errors.New("model loading")
	s.AddReadyCheck("model", func() error { return ready })
	tests := []struct {
		name, path string
		before     func()
		code       int
		body       string
	}{
		{name: "live", path: "/healthz", code: 200, body: "ok"},
		{name: "not ready", path: "/readyz", code: 503, body: "model loading"},
		{name: "ready", path: "/readyz", before: func() { ready = nil }, code: 200, body: "ready"},
		{name: "metrics", path: "/metrics", code: 200, body: `lae_verdicts_total{verdict="fake"} 1`},
		{name: "errors by kind", path: "/metrics", code: 200, body: `lae_errors_total{kind="malformed_crop",stage="detector"} 1`},
		{name: "ready gauge", path: "/metrics", code: 200, body: "lae_ready 1"},
		{name: "own routes counted", path: "/metrics", code: 200, body: `lae_http_requests_total{code="503",route="/readyz"} 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			code, body := get(t, base+tc.path)
			require.Equal(t, tc.code, code)
			require.Contains(t, body, tc.body)
		})
	}
}

// lae_ready follows the readiness checks at every scrape.
func TestReadyGauge(t *testing.T) {
	s := NewServer()
	var down error
	s.AddReadyCheck("nats", func() error { return down })
	require.Equal(t, 1.0, gauge(t, s, "lae_ready"))
	down = errors.New("nats RECONNECTING")
	require.Equal(t, 0.0, gauge(t, s, "lae_ready"))
}

// gauge reads an unlabelled gauge from the server's registry.
func gauge(t *testing.T, s *Server, name string) float64 {
	t.Helper()
	mfs, err := s.Registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// With tokens, /metrics wants one of them as a bearer token; the probes stay open.
func TestMetricsToken(t *testing.T) {
	const tok, other = "0123456789abcdef-metrics", "fedcba9876543210-metrics"
	s := NewServer()
	s.RequireMetricsToken([]string{other, tok})
	require.NoError(t, s.Start("127.0.0.1:0"))
	defer s.Shutdown(context.Background())
	base := "http://" + s.Addr()
	tests := []struct {
		name, path, auth string
		code             int
	}{
		{"no token", "/metrics", "", http.StatusUnauthorized},
		{"wrong token", "/metrics", "Bearer 0123456789abcdef-metricz", http.StatusUnauthorized},
		{"token prefix", "/metrics", "Bearer 0123456789abcdef", http.StatusUnauthorized},
		{"basic scheme", "/metrics", "Basic " + tok, http.StatusUnauthorized},
		{"token", "/metrics", "Bearer " + tok, http.StatusOK},
		{"second token, lower-case scheme", "/metrics", "bearer " + other, http.StatusOK},
		{"liveness open", "/healthz", "", http.StatusOK},
		{"readiness open", "/readyz", "", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := getAuth(t, base+tc.path, tc.auth)
			require.Equal(t, tc.code, code, body)
			if tc.path == "/metrics" && code == http.StatusOK {
				require.Contains(t, body, "lae_ready ")
			}
		})
	}
	s.RequireMetricsToken(nil)
	code, _ := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code, "no tokens: open again")
}

func TestConnectErrors(t *testing.T) {
	tests := []struct {
		name string
		c    config.NATS
		err  string
	}{
		{name: "no urls", c: config.NATS{}, err: "no server URLs"},
		{name: "missing nkey", c: config.NATS{URLs: []string{"nats://127.0.0.1:1"}, NKey: "/nonexistent.nk"}, err: "nonexistent.nk"},
		{name: "nothing listening", c: config.NATS{URLs: []string{"nats://127.0.0.1:1"}}, err: "nats connect nats://127.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Connect(tc.c, "test", zap.NewNop())
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestNewLoggerRejectsBadLevel(t *testing.T) {
	_, err := NewLogger(config.Log{Level: "loud"})
	require.ErrorContains(t, err, "loud")
	l, err := NewLogger(config.Log{Level: "debug", Format: "console"})
	require.NoError(t, err)
	l.Debug("works")
}
