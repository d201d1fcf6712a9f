package core

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/config"
)

// TestSourcePolicyFollowsTheConfig: lae scan gets no policy, lae serve and lae ingest the
// configured one, whose refusals are logged with their reason.
func TestSourcePolicyFollowsTheConfig(t *testing.T) {
	p, err := SourcePolicy(config.ForCommand("scan").Sources, zap.NewNop())
	require.NoError(t, err)
	require.Nil(t, p, "lae scan opens anything")

	core, logs := observer.New(zap.WarnLevel)
	c := config.ForCommand("serve").Sources
	c.AllowCIDRs = []string{"10.20.0.0/16"}
	p, err = SourcePolicy(c, zap.New(core))
	require.NoError(t, err)
	require.NotNil(t, p)
	defer p.Close()
	require.Equal(t, source.DefaultSchemes, p.Schemes())
	ctx := context.Background()
	require.NoError(t, p.Check(ctx, "rtsp://10.20.0.7/cam"), "allow-listed")
	require.ErrorIs(t, p.Check(ctx, "http://169.254.169.254/latest/meta-data/"), source.ErrUnavailable)
	require.Equal(t, 1, logs.FilterMessage("source refused or unavailable").Len())
	require.Contains(t, logs.All()[0].ContextMap()["error"], "link-local")

	c.AllowCIDRs = []string{"10.0.0.0/33"}
	_, err = SourcePolicy(c, zap.NewNop())
	require.ErrorContains(t, err, "sources.allow_cidrs")
}
