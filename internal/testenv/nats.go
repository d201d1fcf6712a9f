package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/lae-screening/lae/internal/natsembed"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// StartNATS starts an embedded nats-server with every lae stream provisioned in memory
// (nothing on disk outlives the test) and closes it when the test ends; the test fails when
// it does not start within a minute.
func StartNATS(tb testing.TB) *natsembed.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := natsembed.Start(ctx, natsembed.Options{Retention: laev1.Retention{Memory: true}})
	if err != nil {
		tb.Fatalf("start embedded nats-server: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}
