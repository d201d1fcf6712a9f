package pipeline

import (
	"context"
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
