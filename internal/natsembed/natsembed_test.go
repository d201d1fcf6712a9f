package natsembed

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

func TestStartProvisionsEveryStream(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{Retention: laev1.Retention{Memory: true}})
	require.NoError(t, err)
	defer s.Close()
	for _, cfg := range laev1.StreamConfigs(laev1.Retention{}) {
		_, err := s.JS.Stream(ctx, cfg.Name)
		require.NoError(t, err, cfg.Name)
	}
	_, err = s.JS.KeyValue(ctx, laev1.BucketVerdicts)
	require.NoError(t, err)
	// Provisioning twice is a no-op, so every service may do it at start.
	require.NoError(t, laev1.Provision(ctx, s.JS, laev1.Retention{Memory: true}))
}
