package core

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestProgressPublisher: ingest's per-frame progress goes out on the video's progress subject
// at most every progressEvery per video, the first report of a video at once.
func TestProgressPublisher(t *testing.T) {
	srv := testenv.StartNATS(t)
	msgs := make(chan *nats.Msg, 64)
	sub, err := srv.NC.ChanSubscribe(laev1.SubjectProgressPrefix+"*", msgs)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()

	now := time.Unix(1000, 0)
	pp := newProgressPublisher(srv.NC, zap.NewNop())
	pp.now = func() time.Time { return now }
	frame := func(id string, n uint64) {
		pp.progress(id, pipeline.Progress{FramesSampled: n, CropsPublished: 2 * n, PTS: float64(n) / 5, Duration: 10 * time.Second})
	}
	frame("a", 1) // sent: the first of a
	frame("b", 1) // sent: the first of b
	for n := uint64(2); n <= 5; n++ {
		now = now.Add(progressEvery / 4)
		frame("a", n) // n=5 is progressEvery after n=1: sent
	}
	pp.done("a")
	frame("a", 6) // a video run again starts afresh: sent
	require.NoError(t, srv.NC.Flush())

	var got []laev1.IngestProgress
	require.Eventually(t, func() bool {
		for len(msgs) > 0 {
			m := <-msgs
			var p laev1.IngestProgress
			require.NoError(t, json.Unmarshal(m.Data, &p))
			require.Equal(t, laev1.ProgressSubject(p.VideoID), m.Subject)
			got = append(got, p)
		}
		return len(got) >= 4
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []laev1.IngestProgress{
		{VideoID: "a", FramesSampled: 1, CropsPublished: 2, MediaSeconds: 0.2, DurationSeconds: 10},
		{VideoID: "b", FramesSampled: 1, CropsPublished: 2, MediaSeconds: 0.2, DurationSeconds: 10},
		{VideoID: "a", FramesSampled: 5, CropsPublished: 10, MediaSeconds: 1, DurationSeconds: 10},
		{VideoID: "a", FramesSampled: 6, CropsPublished: 12, MediaSeconds: 1.2, DurationSeconds: 10},
	}, got)
	require.Empty(t, msgs, "nothing more")
}
