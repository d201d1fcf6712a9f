package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestRepublishUntilStreamAnswers publishes to a subject no stream holds yet (what a publish
// sees while a clustered stream elects a leader): the message is sent again until the stream
// exists and is stored once; without a stream within the budget the publish fails as ErrPublish.
func TestRepublishUntilStreamAnswers(t *testing.T) {
	for _, tc := range []struct {
		name         string
		streamAppear bool
	}{
		{"stream appears", true},
		{"stream never answers", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.StartNATS(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			subject := "lae.test.republish"
			attempts := 0
			r := &run{js: srv.JS, o: Options{MaxPending: 4}, log: zap.NewNop(), eos: &laev1.EndOfStream{},
				republishBudget: 3 * time.Second}
			r.republished = func() {
				attempts++
				if tc.streamAppear && attempts == 2 {
					_, err := srv.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "REPUBLISH", Subjects: []string{subject},
						Storage: jetstream.MemoryStorage})
					require.NoError(t, err)
				}
			}
			require.NoError(t, r.publish(ctx, &nats.Msg{Subject: subject, Data: []byte("crop")}, "m1", true))
			err := r.drain(ctx)
			if !tc.streamAppear {
				require.ErrorIs(t, err, ErrPublish)
				require.Positive(t, attempts)
				require.Zero(t, r.eos.CropsPublished)
				return
			}
			require.NoError(t, err)
			require.Equal(t, 2, attempts)
			require.EqualValues(t, 1, r.eos.CropsPublished)
			st, err := srv.JS.Stream(ctx, "REPUBLISH")
			require.NoError(t, err)
			info, err := st.Info(ctx)
			require.NoError(t, err)
			require.EqualValues(t, 1, info.State.Msgs, "stored once")
		})
	}
}

// TestRepublishSilentStream publishes to a subject whose only listener drops what it gets
// without a word: what a clustered stream's followers do while no leader is elected, and what
// a leader that dies does with the messages it had not answered. Each message is sent again
// once it has gone unanswered for answerWait, and stored once when the stream appears; when it
// never does, the drain fails as ErrPublish about ackTimeout after the sends, not ackTimeout
// per pending message one after the other (the TestCluster stall: ingest silent for minutes).
func TestRepublishSilentStream(t *testing.T) {
	const msgs = 6
	const ackWait = 2 * time.Second
	for _, tc := range []struct {
		name         string
		streamAppear bool
	}{
		{"stream appears", true},
		{"stream never answers", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.StartNATS(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			subject := "lae.test.silent"
			var dropped atomic.Int64
			sub, err := srv.NC.Subscribe(subject, func(*nats.Msg) { dropped.Add(1) })
			require.NoError(t, err)
			defer sub.Unsubscribe() //nolint:errcheck // the server stops with the test
			require.NoError(t, srv.NC.Flush())
			var attempts atomic.Int64
			r := &run{js: srv.JS, o: Options{MaxPending: msgs}, log: zap.NewNop(), eos: &laev1.EndOfStream{},
				ackTimeout: ackWait, answerWait: 200 * time.Millisecond, republishBudget: time.Second}
			r.republished = func() {
				if attempts.Add(1) == 1 && tc.streamAppear {
					_, err := srv.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "SILENT", Subjects: []string{subject},
						Storage: jetstream.MemoryStorage})
					require.NoError(t, err)
				}
			}
			for i := range msgs {
				require.NoError(t, r.publish(ctx, &nats.Msg{Subject: subject, Data: []byte("crop")}, fmt.Sprintf("m%d", i), true))
			}
			start := time.Now()
			err = r.drain(ctx)
			took := time.Since(start)
			require.GreaterOrEqual(t, dropped.Load(), int64(msgs), "the first sends reached only the silent listener")
			if !tc.streamAppear {
				require.ErrorIs(t, err, ErrPublish)
				require.Zero(t, r.eos.CropsPublished)
				require.Less(t, took, 2*ackWait, "the pending messages fail together, not one ackTimeout each")
				return
			}
			require.NoError(t, err)
			require.EqualValues(t, msgs, r.eos.CropsPublished)
			require.GreaterOrEqual(t, attempts.Load(), int64(msgs), "each lost message was sent again")
			st, err := srv.JS.Stream(ctx, "SILENT")
			require.NoError(t, err)
			info, err := st.Info(ctx)
			require.NoError(t, err)
			require.EqualValues(t, msgs, info.State.Msgs, "each stored once")
		})
	}
}

// TestRepublishAfterOutageWaitsOnce: a window of pending messages that all failed while no
// stream answered is sent again once the first of them gets through, without each waiting a
// backoff in turn (MaxPending backoffs after every leader election).
func TestRepublishAfterOutageWaitsOnce(t *testing.T) {
	const msgs = 80 // one backoff each would take at least msgs*republishBackoff = 8 s
	srv := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subject := "lae.test.outage"
	attempts := 0
	r := &run{js: srv.JS, o: Options{MaxPending: msgs}, log: zap.NewNop(), eos: &laev1.EndOfStream{},
		republishBudget: 10 * time.Second}
	r.republished = func() {
		if attempts++; attempts == 2 {
			_, err := srv.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "OUTAGE", Subjects: []string{subject},
				Storage: jetstream.MemoryStorage})
			require.NoError(t, err)
		}
	}
	for i := range msgs {
		require.NoError(t, r.publish(ctx, &nats.Msg{Subject: subject, Data: []byte("crop")}, fmt.Sprintf("m%d", i), true))
	}
	start := time.Now()
	require.NoError(t, r.drain(ctx))
	took := time.Since(start)
	require.EqualValues(t, msgs, r.eos.CropsPublished)
	require.Less(t, took, time.Duration(msgs)*republishBackoff/2, "the outage is waited out once, not once per message")
}
