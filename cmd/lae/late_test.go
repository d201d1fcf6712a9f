package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

var lateScoreRe = regexp.MustCompile(`(?m)^lae_errors_total\{kind="late_score",stage="aggregator"\} ([0-9.e+]+)$`)

// TestLateScoreKeepsFinalVerdict runs `lae aggregate` as a separate process against a separate
// nats-server (the deployment's config, the aggregator connecting as its own user), lets it
// store a video's final verdict, restarts it, and then delivers a score of that video, as a
// detector that was down for a long time does. The new process remembers nothing of the video,
// exactly as an aggregator does once DoneTTL (10 min) has passed. The score must be counted as
// late and dropped: before the fix it started a fresh state whose rolling final:false verdict
// replaced the final one, and `lae watch` never returned.
func TestLateScoreKeepsFinalVerdict(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	dir := t.TempDir()
	srv := newNATSProc(t, dir, "lae-late", true)
	url := srv.URL
	nc, err := srv.connect("admin")
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	// The operator's `lae provision`: the aggregator's user may not create streams.
	require.NoError(t, laev1.Provision(ctx, js, laev1.Retention{}))

	// Rolling verdicts on, as in production: a state made for the late score would publish one
	// at the aggregator's next tick.
	env := []string{"LAE_NATS_URLS=" + url, "LAE_NATS_USER=aggregator", "LAE_NATS_PASSWORD=pw-aggregator",
		"LAE_LOG_LEVEL=debug", "LAE_AGGREGATOR_ROLLING_EVERY=1s"}
	aggregate := func(name string) *proc { return startRole(t, dir, name, env, "aggregate") }
	first := aggregate("aggregate-1")

	const id = "late-mp"
	publish := func(subject, msgID string, m proto.Message) {
		t.Helper()
		data, err := proto.Marshal(m)
		require.NoError(t, err)
		_, err = js.Publish(ctx, subject, data, jetstream.WithMsgID(msgID))
		require.NoError(t, err)
	}
	score := func(frame uint64) {
		publish(laev1.ScoresSubject(id), laev1.ScoreMsgID(id, frame, 0, 0),
			&laev1.FrameScore{VideoId: id, FrameIndex: frame, TrackId: 1, Score: 0.9, Model: "test"})
	}
	for f := range uint64(4) {
		score(f)
	}
	publish(laev1.EOSSubject(id), laev1.EOSMsgID(id, 0), &laev1.EndOfStream{VideoId: id, SourceUrl: "file:///late.mp4",
		FramesSampled: 4, Faces: 4, CropsPublished: 4, Tracks: 1})

	kv, err := js.KeyValue(ctx, laev1.BucketVerdicts)
	require.NoError(t, err)
	stored := func() laev1.Verdict {
		e, err := kv.Get(ctx, id)
		require.NoError(t, err)
		var v laev1.Verdict
		require.NoError(t, json.Unmarshal(e.Value(), &v))
		return v
	}
	require.Eventually(t, func() bool {
		e, err := kv.Get(ctx, id)
		return err == nil && strings.Contains(string(e.Value()), `"final":true`)
	}, time.Minute, 50*time.Millisecond, "final verdict stored")
	want := stored()

	first.stop(t)
	second := aggregate("aggregate-2")
	score(1_000_000) // a crop of the video scored long after its verdict

	// Either the score is counted as late, or (the bug) a rolling verdict replaces the final one
	// at the aggregator's next tick.
	require.Eventually(t, func() bool {
		return metricValue(t, second.http, lateScoreRe) >= 1 || !stored().Final
	}, time.Minute, 100*time.Millisecond)
	got := stored()
	require.True(t, got.Final, "the final verdict stays in the bucket: %+v", got)
	require.Equal(t, want.Verdict, got.Verdict)
	require.Equal(t, want.CropsScored, got.CropsScored)
	require.Equal(t, 1.0, metricValue(t, second.http, lateScoreRe), "the late score is counted")

	// What `lae watch` sees: the final verdict, so it returns at once.
	client := filepath.Join(dir, "client.yaml")
	require.NoError(t, os.WriteFile(client, []byte(fmt.Sprintf("nats:\n  urls: [%s]\n  user: client\n  password: pw-client\n", url)), 0o644))
	out, stderr, code := runLae(t, time.Minute, "watch", "--config", client, "--json", "--timeout", "20s", id)
	require.Equal(t, 0, code, "watch: %s", stderr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var v laev1.Verdict
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &v))
	require.True(t, v.Final)
	require.Equal(t, want.Verdict, v.Verdict)
	second.stop(t)
}
