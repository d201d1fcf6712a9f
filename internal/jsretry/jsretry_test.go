package jsretry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestUnanswered(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{jetstream.ErrNoStreamResponse, true},
		{fmt.Errorf("publish: %w", nats.ErrNoResponders), true},
		{nats.ErrDisconnected, true},
		{&jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10060, Description: "expected stream does not match"}, false},
		{jetstream.ErrMsgAlreadyAckd, false},
		{context.DeadlineExceeded, false},
		{errors.New("maximum payload exceeded"), false},
	} {
		if got := Unanswered(tc.err); got != tc.want {
			t.Errorf("Unanswered(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestDo(t *testing.T) {
	t.Run("asked again until answered", func(t *testing.T) {
		calls := 0
		err := Do(context.Background(), func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("an attempt without a deadline")
			}
			if calls++; calls < 3 {
				return []error{context.DeadlineExceeded, nats.ErrNoResponders}[calls-1]
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("Do = %v after %d calls, want nil after 3", err, calls)
		}
	})
	t.Run("other errors at once", func(t *testing.T) {
		calls := 0
		refused := &jetstream.APIError{Code: 404, Description: "stream not found"}
		err := Do(context.Background(), func(context.Context) error { calls++; return refused })
		if !errors.Is(err, refused) || calls != 1 {
			t.Fatalf("Do = %v after %d calls, want the refusal after 1", err, calls)
		}
	})
	t.Run("until ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := Do(ctx, func(context.Context) error {
			if calls++; calls == 5 {
				cancel()
			}
			return nats.ErrTimeout
		})
		if !errors.Is(err, nats.ErrTimeout) || calls != 5 {
			t.Fatalf("Do = %v after %d calls, want a timeout after 5", err, calls)
		}
	})
}
