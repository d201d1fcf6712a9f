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
	"github.com/lae-screening/lae/internal/metrics"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	s := NewServer()
	m := metrics.New(s.Registry)
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
