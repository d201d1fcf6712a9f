package core

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/ops"
	"github.com/lae-screening/lae/internal/testenv"
)

// A live source's lag is the wall time since its first sampled frame minus the media time
// read since; files (a known duration) have none, and the series goes when ingest ends.
func TestLiveLag(t *testing.T) {
	srv := ops.NewServer()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	l := newLiveLag(srv.Metrics, func() time.Time { return now })
	lag := func(id string) float64 { return testutil.ToFloat64(srv.Metrics.LiveLag.WithLabelValues(id)) }
	tests := []struct {
		name    string
		advance time.Duration
		pts     float64
		want    float64
	}{
		{"first frame starts the clock", 0, 1000, 0},
		{"real time", 2 * time.Second, 1002, 0},
		{"falling behind", 5 * time.Second, 1004, 3},
		{"a buffered burst is no negative lag", 0, 1010, 0},
	}
	for _, tt := range tests {
		now = now.Add(tt.advance)
		l.progress("cam", pipeline.Progress{PTS: tt.pts})
		require.InDelta(t, tt.want, lag("cam"), 1e-9, tt.name)
	}
	l.progress("file", pipeline.Progress{PTS: 1, Duration: time.Minute})
	require.Equal(t, 1, testutil.CollectAndCount(srv.Metrics.LiveLag), "a file has no lag series")
	l.ended("cam")
	require.Equal(t, 0, testutil.CollectAndCount(srv.Metrics.LiveLag))
	require.Empty(t, l.start)
}

func TestBuildModel(t *testing.T) {
	tests := []struct {
		card model.CardInfo
		want string
	}{
		{model.CardInfo{Name: "lae-v2", Version: "2.0.0"}, "lae-v2@2.0.0"},
		{model.CardInfo{Name: "lae-v2"}, "lae-v2"},
		{model.CardInfo{}, "none"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, buildModel(tt.card))
	}
}

// A role asked to protect /metrics needs tokens; serve (embedded) protects its own.
func TestProtectMetrics(t *testing.T) {
	role := config.Roles{Detect: true}
	tests := []struct {
		name    string
		roles   config.Roles
		auth    bool
		tokens  []string
		wantErr string
		want    int
	}{
		{"off", role, false, nil, "", http.StatusOK},
		{"no tokens", role, true, nil, "no tokens", 0},
		{"tokens", role, true, []string{"0123456789abcdef0123"}, "", http.StatusUnauthorized},
		{"serve protects its own", config.AllRoles, true, nil, "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.Serve.MetricsAuth, c.Serve.Tokens = tt.auth, tt.tokens
			s := &Stack{cfg: c, roles: tt.roles, Ops: ops.NewServer()}
			err := s.protectMetrics()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.NoError(t, s.Ops.Start("127.0.0.1:0"))
			defer s.Ops.Shutdown(context.Background())
			code, _ := scrape(t, s.Ops.Addr())
			require.Equal(t, tt.want, code)
		})
	}
}

func scrape(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// sample is the value of one exposed sample line ("name{labels} value"), -1 when absent.
func sample(body, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// A scan on a stack with an operations endpoint feeds the operator metrics: decode and
// face-detection time per sampled frame, one time to verdict, and the build with the card's
// model.
func TestScanFeedsOperatorMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "faces.mp4")
	testenv.WriteClip(t, path, faceClip(25))
	c := scanConfig(t)
	c.HTTP.Addr = "127.0.0.1:0"
	st := startStack(t, c)
	v, err := st.Scan(ctx, path)
	require.NoError(t, err)

	// The aggregator reports a verdict to the metrics after storing it, so the scan may see the
	// verdict a moment before the scrape sees its time.
	var body string
	require.Eventually(t, func() bool {
		code, b := scrape(t, st.HTTPAddr())
		body = b
		return code == http.StatusOK && sample(body, "lae_time_to_verdict_seconds_count") >= 1
	}, 10*time.Second, 10*time.Millisecond, "no time to verdict observed")
	require.Equal(t, float64(v.FramesSampled), sample(body, "lae_ingest_decode_seconds_count"), "one decode time per sampled frame")
	require.Equal(t, float64(v.FramesSampled), sample(body, "lae_ingest_face_detect_seconds_count"))
	require.Equal(t, 1.0, sample(body, "lae_time_to_verdict_seconds_count"))
	require.Greater(t, sample(body, "lae_time_to_verdict_seconds_sum"), 0.0)
	require.Equal(t, 1.0, sample(body, `lae_build_info{model="`+buildModel(st.Card)+`",version="`+ops.Version()+`"}`))
	require.Equal(t, 1.0, sample(body, "lae_ready"))
	require.Equal(t, -1.0, sample(body, `lae_live_lag_seconds{video_id="`+v.VideoID+`"}`), "a file is not live")
}
