package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// The hook adapters count what the composition sites hand them.
func TestHookAdapters(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.IngestDone(true, 100, 20, 5, 4)
	m.IngestDone(false, 0, 0, 0, 0)
	require.Equal(t, 1.0, testutil.ToFloat64(m.VideosIngested.WithLabelValues("ok")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.VideosIngested.WithLabelValues("failed")))
	require.Equal(t, 100.0, testutil.ToFloat64(m.FramesDecoded))
	require.Equal(t, 20.0, testutil.ToFloat64(m.FramesSampled))
	require.Equal(t, 5.0, testutil.ToFloat64(m.Faces))
	require.Equal(t, 4.0, testutil.ToFloat64(m.CropsPublished))

	ingestErr := m.StageErrors("ingest")
	ingestErr("malformed_submission")
	ingestErr("malformed_submission")
	m.ErrorN("detector", "inference", 16)
	m.ErrorN("detector", "inference", 0)
	require.Equal(t, 2.0, testutil.ToFloat64(m.Errors.WithLabelValues("ingest", "malformed_submission")))
	require.Equal(t, 16.0, testutil.ToFloat64(m.Errors.WithLabelValues("detector", "inference")))

	m.Verdict("fake")
	require.Equal(t, 1.0, testutil.ToFloat64(m.Verdicts.WithLabelValues("fake")))
}

// A nil *Metrics records nothing and its error hook is nil, so a role without metrics makes no
// call at all.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	require.Nil(t, m.StageErrors("ingest"))
	require.NotPanics(t, func() {
		m.IngestDone(true, 1, 1, 1, 1)
		m.Error("ingest", "x")
		m.ErrorN("detector", "inference", 3)
		m.Verdict("real")
		m.Batch(4, time.Millisecond)
		m.ObserveDecode(time.Millisecond)
		m.ObserveFaceDetect(time.Millisecond)
		m.ObserveTimeToVerdict(time.Second)
		m.Accepted("v", time.Now())
		m.VerdictFinal("v", time.Now())
		m.SetLiveLag("v", time.Second)
		m.LiveEnded("v")
		m.SetBuildInfo("devel", "lae-v2")
		m.WebhookEnded("delivered", 1)
	})
}
