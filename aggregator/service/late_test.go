package service

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// observed returns a logger that records every entry, so a test can wait for what the
// aggregator did (a tick that forgot a video, a rolling verdict withheld) instead of sleeping.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

// logged reports whether msg was logged for video key.
func logged(logs *observer.ObservedLogs, msg string, key videoKey) bool {
	for _, e := range logs.FilterMessage(msg).All() {
		if e.ContextMap()["video"] == key.String() {
			return true
		}
	}
	return false
}

// revision returns a copy of v's scores and end-of-stream under another scoring revision, as
// `lae rescore` publishes them.
func revision(v *video, rev uint32) ([]*laev1.FrameScore, *laev1.EndOfStream) {
	scores := make([]*laev1.FrameScore, len(v.scores))
	for i, s := range v.scores {
		scores[i] = proto.Clone(s).(*laev1.FrameScore)
		scores[i].Revision = rev
	}
	eos := proto.Clone(v.eos).(*laev1.EndOfStream)
	eos.Revision = rev
	return scores, eos
}

// lateScore is a score of a crop the video never published (so JetStream does not drop it as
// a duplicate), as a detector that was down for a long time sends it.
func lateScore(v *video, rev uint32) *laev1.FrameScore {
	s := proto.Clone(v.scores[0]).(*laev1.FrameScore)
	s.FrameIndex, s.Revision = 1_000_000, rev
	return s
}

// stored reads the verdict in the KV bucket and the last one on the video's subject
// (what `lae watch` starts from).
func (h *harness) stored(t *testing.T, id string) (kv, last laev1.Verdict) {
	t.Helper()
	ctx := context.Background()
	b, err := h.js.KeyValue(ctx, laev1.BucketVerdicts)
	require.NoError(t, err)
	e, err := b.Get(ctx, id)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(e.Value(), &kv))
	st, err := h.js.Stream(ctx, laev1.StreamVerdicts)
	require.NoError(t, err)
	m, err := st.GetLastMsgForSubject(ctx, laev1.VerdictSubject(id))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(m.Data, &last))
	return kv, last
}

func (h *harness) hookErrorCount(kind string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hookErrors[kind]
}

// TestLateMessagesNeverReplaceFinalVerdict: a score that arrives after its video's final
// verdict (a detector down for longer than DoneTTL, or an aggregator restarted in between) is
// counted and dropped; before the fix it started a fresh state whose rolling final:false
// verdict replaced the final one for good, and `lae watch` never returned. An old revision's
// end-of-stream must not replace a newer revision's final verdict either.
func TestLateMessagesNeverReplaceFinalVerdict(t *testing.T) {
	tests := []struct {
		name string
		// doneTTL is Options.DoneTTL (0 = the default, 10m).
		doneTTL time.Duration
		// rescored gives the video a final verdict of revision 1 after the one of revision 0.
		rescored bool
		// restart replaces the aggregator by a new instance (nothing remembered in memory).
		restart bool
		// late publishes the late message.
		late func(t *testing.T, h *harness, v *video)
		// wantRevision is the revision of the final verdict that must stay.
		wantRevision int
		// lateScores is how many late scores must be counted (Hooks.Error "late_score").
		lateScores int
	}{
		{name: "score within DoneTTL", lateScores: 1,
			late: func(t *testing.T, h *harness, v *video) { h.publishScore(t, lateScore(v, 0)) }},
		{name: "score after DoneTTL", doneTTL: time.Nanosecond, lateScores: 1,
			late: func(t *testing.T, h *harness, v *video) { h.publishScore(t, lateScore(v, 0)) }},
		{name: "score after a restart", restart: true, lateScores: 1,
			late: func(t *testing.T, h *harness, v *video) { h.publishScore(t, lateScore(v, 0)) }},
		{name: "old revision's score after rescoring and a restart", rescored: true, restart: true, wantRevision: 1, lateScores: 1,
			late: func(t *testing.T, h *harness, v *video) { h.publishScore(t, lateScore(v, 0)) }},
		{name: "new revision's late score after DoneTTL", rescored: true, doneTTL: time.Nanosecond, wantRevision: 1, lateScores: 1,
			late: func(t *testing.T, h *harness, v *video) { h.publishScore(t, lateScore(v, 1)) }},
		{name: "old revision's end-of-stream after rescoring and a restart", rescored: true, restart: true, wantRevision: 1,
			late: func(t *testing.T, h *harness, v *video) {
				// Past the de-duplication window, the same end-of-stream is stored again.
				data, err := proto.Marshal(v.eos)
				require.NoError(t, err)
				_, err = h.js.Publish(context.Background(), laev1.EOSSubject(v.id), data, jetstream.WithMsgID("eos-again/"+v.id))
				require.NoError(t, err)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startServer(t)
			log, logs := observed()
			// Rolling verdicts as often as the tick allows: a state made for a late score
			// would publish one at once.
			o := Options{RollingEvery: time.Millisecond, DoneTTL: tc.doneTTL, Logger: log}
			h.run(t, o)
			v := makeVideo(t, "late", 4, true)
			for _, s := range v.scores {
				h.publishScore(t, s)
			}
			h.publishEOS(t, v.eos)
			finished := []videoKey{{v.id, 0}}
			if tc.rescored {
				scores, eos := revision(v, 1)
				for _, s := range scores {
					h.publishScore(t, s)
				}
				h.publishEOS(t, eos)
				finished = append(finished, videoKey{v.id, 1})
			}
			require.Eventually(t, func() bool { return len(h.verdictsFor(v.id)) == len(finished) }, 10*time.Second, 10*time.Millisecond)
			if tc.doneTTL > 0 {
				require.Eventually(t, func() bool {
					for _, k := range finished {
						if !logged(logs, "finished video forgotten", k) {
							return false
						}
					}
					return true
				}, 10*time.Second, 10*time.Millisecond, "DoneTTL passed")
			}
			if tc.restart {
				h.stop()
				h.run(t, o)
			}
			late := h.stats.Late.Load()
			tc.late(t, h, v)

			// Either the late message is dropped, or (the bug) a verdict replaces the final one.
			require.Eventually(t, func() bool {
				if h.stats.Late.Load() > late {
					return true
				}
				kv, _ := h.stored(t, v.id)
				return !kv.Final || kv.Revision != tc.wantRevision
			}, 10*time.Second, 10*time.Millisecond)
			kv, last := h.stored(t, v.id)
			assert.True(t, kv.Final, "the bucket still holds a final verdict")
			assert.Equal(t, tc.wantRevision, kv.Revision)
			assert.True(t, last.Final, "the last verdict published (where lae watch starts) is final")
			assert.Equal(t, tc.wantRevision, last.Revision)
			assert.Zero(t, h.stats.Rolling.Load(), "no rolling verdict")
			assert.Equal(t, tc.lateScores, h.hookErrorCount("late_score"))
			assert.Len(t, h.verdictsFor(v.id), len(finished), "no new final verdict")
		})
	}
}

// TestRescoringKeepsFinalVerdictUntilNewOne: while a rescoring run's scores come in (its
// end-of-stream comes last), the previous revision's final verdict stays in the bucket; no
// rolling verdict replaces it, and the new revision's final verdict does.
func TestRescoringKeepsFinalVerdictUntilNewOne(t *testing.T) {
	h := startServer(t)
	log, logs := observed()
	h.run(t, Options{RollingEvery: time.Millisecond, Logger: log})
	v := makeVideo(t, "rescoring", 4, true)
	for _, s := range v.scores {
		h.publishScore(t, s)
	}
	h.publishEOS(t, v.eos)
	require.Eventually(t, func() bool { return len(h.verdictsFor(v.id)) == 1 }, 10*time.Second, 10*time.Millisecond)

	scores, eos := revision(v, 1)
	for _, s := range scores {
		h.publishScore(t, s)
	}
	require.Eventually(t, func() bool {
		return logged(logs, "rolling verdict withheld: a final verdict is in the bucket", videoKey{v.id, 1}) || h.stats.Rolling.Load() > 0
	}, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, h.stats.Rolling.Load(), "no rolling verdict over the final one")
	kv, last := h.stored(t, v.id)
	assert.True(t, kv.Final)
	assert.Equal(t, 0, kv.Revision)
	assert.True(t, last.Final)

	h.publishEOS(t, eos)
	require.Eventually(t, func() bool { return len(h.verdictsFor(v.id)) == 2 }, 10*time.Second, 10*time.Millisecond)
	kv, last = h.stored(t, v.id)
	assert.True(t, kv.Final)
	assert.Equal(t, 1, kv.Revision, "the new revision's final verdict replaces the old one")
	assert.Equal(t, 1, last.Revision)
	assert.Zero(t, h.hookErrorCount("late_score"))
}
