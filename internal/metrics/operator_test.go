package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// histogram reads the count and sum of the series of histogram family name in reg whose
// labels include labels (name, value pairs); zeros when there is none.
func histogram(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (count uint64, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		}
	}
	return 0, 0
}

// Each observer moves its own histogram by what it is given.
func TestIngestHistograms(t *testing.T) {
	tests := []struct {
		name    string
		observe func(m *Metrics, d time.Duration)
		family  string
	}{
		{"decode", (*Metrics).ObserveDecode, "lae_ingest_decode_seconds"},
		{"face detect", (*Metrics).ObserveFaceDetect, "lae_ingest_face_detect_seconds"},
		{"time to verdict", (*Metrics).ObserveTimeToVerdict, "lae_time_to_verdict_seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := New(reg)
			tt.observe(m, 30*time.Millisecond)
			tt.observe(m, 20*time.Millisecond)
			tt.observe(m, -time.Millisecond) // a clock step backwards is no observation
			n, sum := histogram(t, reg, tt.family)
			require.Equal(t, uint64(2), n)
			require.InDelta(t, 0.05, sum, 1e-9)
		})
	}
}

// A final verdict observes the time since its video's acceptance once; a video accepted
// elsewhere (no Accepted here) is not observed, and a second acceptance keeps the first time.
func TestTimeToVerdict(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	m.Accepted("a", t0)
	m.Accepted("a", t0.Add(time.Minute))
	m.VerdictFinal("a", t0.Add(90*time.Second))
	m.VerdictFinal("a", t0.Add(time.Hour))
	m.VerdictFinal("elsewhere", t0.Add(time.Hour))
	n, sum := histogram(t, reg, "lae_time_to_verdict_seconds")
	require.Equal(t, uint64(1), n)
	require.InDelta(t, 90, sum, 1e-9)
}

// Past the bound the oldest acceptances are forgotten, the newest kept.
func TestAcceptedBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	t0 := time.Now()
	for i := range maxAccepted + 1 {
		m.Accepted(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	require.LessOrEqual(t, len(m.accepted), maxAccepted/2+2)
	m.VerdictFinal(fmt.Sprint(maxAccepted), t0.Add(time.Duration(maxAccepted+1000)*time.Millisecond))
	m.VerdictFinal("0", t0.Add(time.Hour))
	n, sum := histogram(t, reg, "lae_time_to_verdict_seconds")
	require.Equal(t, uint64(1), n, "the newest is still measured, the oldest forgotten")
	require.InDelta(t, 1, sum, 1e-9)
}

// The live lag is a series per live video, removed when its ingest ends.
func TestLiveLag(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.SetLiveLag("cam1", 1500*time.Millisecond)
	m.SetLiveLag("cam2", time.Second)
	m.SetLiveLag("cam1", 2*time.Second)
	require.Equal(t, 2.0, testutil.ToFloat64(m.LiveLag.WithLabelValues("cam1")))
	require.Equal(t, 2, testutil.CollectAndCount(m.LiveLag))
	m.LiveEnded("cam1")
	require.Equal(t, 1, testutil.CollectAndCount(m.LiveLag))
}

// Build info is one series with value 1; setting it again replaces it.
func TestBuildInfo(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.SetBuildInfo("devel+abc", "lae-v1 1")
	m.SetBuildInfo("devel+abc", "lae-v2 2")
	require.Equal(t, 1, testutil.CollectAndCount(m.BuildInfo))
	require.Equal(t, 1.0, testutil.ToFloat64(m.BuildInfo.WithLabelValues("devel+abc", "lae-v2 2")))
}

// The middleware counts by route and status code, times every request, and keeps Flush
// reachable for server-sent events.
func TestHTTPMiddleware(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	mux := http.NewServeMux()
	mux.Handle("GET /api/scans/{id}", m.HTTPMiddleware("/api/scans/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.Error(w, "no such scan", http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte("{}"))
	})))
	mux.Handle("GET /api/events", m.HTTPMiddleware("/api/events", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		require.NoError(t, http.NewResponseController(w).Flush())
		w.(http.Flusher).Flush()
	})))
	mux.Handle("GET /panic", m.HTTPMiddleware("/panic", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler)
	})))
	tests := []struct {
		path, route, code string
	}{
		{"/api/scans/v1", "/api/scans/{id}", "200"},
		{"/api/scans/v2", "/api/scans/{id}", "200"},
		{"/api/scans/missing", "/api/scans/{id}", "404"},
		{"/api/events", "/api/events", "200"},
		{"/panic", "/panic", "500"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		func() {
			defer func() { _ = recover() }() // the re-raised panic, as net/http would see it
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		}()
	}
	want := map[[2]string]float64{}
	for _, tt := range tests {
		want[[2]string{tt.route, tt.code}]++
	}
	for k, v := range want {
		require.Equal(t, v, testutil.ToFloat64(m.HTTPRequests.WithLabelValues(k[0], k[1])), "%v", k)
	}
	n, _ := histogram(t, reg, "lae_http_request_seconds", "route", "/api/scans/{id}")
	require.Equal(t, uint64(3), n)

	var nilM *Metrics
	h := http.NotFoundHandler()
	require.NotNil(t, nilM.HTTPMiddleware("/x", h))
}

func TestWebhookEnded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.WebhookEnded("delivered", 1)
	m.WebhookEnded("delivered", 3)
	m.WebhookEnded("failed", 5)
	m.WebhookEnded("failed", 0) // dropped unsent
	require.Equal(t, 2.0, testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("delivered")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("failed")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("dropped")))
	count, sum := histogram(t, reg, "lae_webhook_attempts")
	require.Equal(t, uint64(3), count, "a dropped delivery made no attempt")
	require.Equal(t, 9.0, sum)
}
