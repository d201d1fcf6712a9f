// Package jsretry is what the stages share about JetStream publishes that go unanswered: a
// clustered stream electing a new leader drops what it receives without a word for a few
// seconds (nats-server: a follower that is not the leader sends no reply), and a leader that
// dies takes the messages it had not answered with it. Such a publish is sent again with the
// same message id, so the stream still stores it once.
package jsretry

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AnswerWait is how long a publish may go unanswered before it is taken as lost and sent
// again: a local or clustered stream answers in milliseconds, so silence is a lost message,
// not a slow one.
const AnswerWait = 5 * time.Second

// PublishAsyncTimeout is the JetStream context's bound on an asynchronous publish's answer
// (jetstream.WithPublishAsyncTimeout). A lost publish would otherwise stay in the client's
// table of pending acknowledgements for good; it is longer than any stage waits for one.
const PublishAsyncTimeout = time.Minute

// New is jetstream.New with PublishAsyncTimeout: every JetStream context of lae.
func New(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc, jetstream.WithPublishAsyncTimeout(PublishAsyncTimeout))
}

// Unanswered says whether a publish failed because no stream leader answered it (a clustered
// stream electing a new leader) or because the connection dropped before its answer came (the
// server it was connected to died): sent again, it waits in the client's reconnect buffer for
// the next server.
func Unanswered(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrDisconnected) || (errors.As(err, &apiErr) && apiErr.Code == 503)
}

// AttemptTimeout bounds one JetStream API request (creating a consumer, asking for its info)
// that Do retries: a request that reached a stream or meta leader as it died is never
// answered, and waiting the caller's whole deadline on it would turn a leader election of a
// few seconds into a failure.
const AttemptTimeout = 5 * time.Second

// Do runs request with a context bounded by AttemptTimeout, again while it times out or finds
// no responder (as happens while a cluster elects a leader), until it succeeds, fails
// otherwise, or ctx ends.
func Do(ctx context.Context, request func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, AttemptTimeout)
		err := request(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return err
		}
	}
}

// retryable says whether a JetStream API request may succeed when asked again.
func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}
