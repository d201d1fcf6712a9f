package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/internal/testenv"
)

// TestSettleResendsUnansweredScores publishes a score to a subject whose only listener drops
// it without a word, as a clustered stream's followers do while no leader is elected: the
// score is sent again once unanswered for answerWait and stored once when the stream appears;
// a stream that never answers fails the wait when ctx ends (the crop is then handed back).
func TestSettleResendsUnansweredScores(t *testing.T) {
	for _, appear := range []bool{true, false} {
		t.Run(map[bool]string{true: "stream appears", false: "stream never answers"}[appear], func(t *testing.T) {
			srv := testenv.StartNATS(t)
			const subject = "lae.test.silent-scores"
			var dropped atomic.Int64
			sub, err := srv.NC.Subscribe(subject, func(*nats.Msg) {
				if dropped.Add(1) == 1 && appear {
					// Created from the listener, after the first send was lost, as a newly
					// elected leader takes over.
					go func() {
						_, err := srv.JS.CreateStream(context.Background(), jetstream.StreamConfig{Name: "SILENT_SCORES",
							Subjects: []string{subject}, Storage: jetstream.MemoryStorage})
						if err != nil {
							t.Errorf("create stream: %v", err)
						}
					}()
				}
			})
			require.NoError(t, err)
			defer sub.Unsubscribe() //nolint:errcheck // the server stops with the test
			require.NoError(t, srv.NC.Flush())

			w := &worker{js: srv.JS, log: zap.NewNop(), o: Options{answerWait: 200 * time.Millisecond}}
			f, err := srv.JS.PublishMsgAsync(&nats.Msg{Subject: subject, Data: []byte("score")}, jetstream.WithMsgID("score/v/1/0/0"))
			require.NoError(t, err)
			p := &pending{future: f, id: "score/v/1/0/0"}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err = w.settle(ctx, p)
			if !appear {
				require.ErrorIs(t, err, context.DeadlineExceeded)
				require.Greater(t, dropped.Load(), int64(1), "sent again while unanswered")
				return
			}
			require.NoError(t, err)
			st, err := srv.JS.Stream(context.Background(), "SILENT_SCORES")
			require.NoError(t, err)
			info, err := st.Info(context.Background())
			require.NoError(t, err)
			require.EqualValues(t, 1, info.State.Msgs, "stored once")
		})
	}
}
