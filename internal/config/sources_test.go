package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSourcesDefaults: the source policy is on wherever URLs come from callers (lae serve, the
// distributed ingest role) and off for lae scan, whose user owns the machine.
func TestSourcesDefaults(t *testing.T) {
	require.True(t, Default().Sources.Enforced(), "distributed roles")
	require.True(t, ForCommand("serve").Sources.Enforced())
	require.True(t, ForCommand("ingest").Sources.Enforced())
	require.False(t, ForCommand("scan").Sources.Enforced())
	d := Default().Sources
	require.NotContains(t, d.AllowedSchemes, "tcp", "raw tcp is off by default")
	require.NotContains(t, d.AllowedSchemes, "udp", "raw udp is off by default")
	require.Empty(t, d.AllowCIDRs)
	// Default hands out its own slice.
	d.AllowedSchemes[0] = "x"
	require.Equal(t, "http", Default().Sources.AllowedSchemes[0])
}

func TestSourcesValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(s *Sources)
		err  string // "" = valid; else what the one-line error says
	}{
		{"defaults", func(*Sources) {}, ""},
		{"off", func(s *Sources) { s.Policy = PolicyOff }, ""},
		{"raw tcp allowed", func(s *Sources) { s.AllowedSchemes = []string{"tcp", "UDP", "http"} }, ""},
		{"cidrs", func(s *Sources) { s.AllowCIDRs = []string{"10.20.0.0/16", "127.0.0.0/8", "fd00::/8", "192.168.1.7"} }, ""},
		{"bad policy", func(s *Sources) { s.Policy = "yes" }, "sources.policy yes: want on or off"},
		{"empty policy", func(s *Sources) { s.Policy = "" }, "sources.policy"},
		{"bad cidr", func(s *Sources) { s.AllowCIDRs = []string{"10.0.0.0/8", "10.0.0.300/8"} }, "sources.allow_cidrs 10.0.0.300/8: not a CIDR"},
		{"cidr words", func(s *Sources) { s.AllowCIDRs = []string{"office"} }, "sources.allow_cidrs office"},
		{"zoned address", func(s *Sources) { s.AllowCIDRs = []string{"fe80::1%eth0"} }, "sources.allow_cidrs fe80::1%eth0"},
		{"file scheme", func(s *Sources) { s.AllowedSchemes = []string{"file"} }, "sources.allowed_schemes file: want any of http"},
		{"ffmpeg-only scheme", func(s *Sources) { s.AllowedSchemes = []string{"concat"} }, "sources.allowed_schemes concat"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(&c.Sources)
			err := c.Sources.check()
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.err)
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}
	// Through Validate it is a usage error, checked for roles that ingest only.
	c := Default()
	c.HTTP.Addr = "" // Validate would try to listen on it
	c.Sources.AllowCIDRs = []string{"not-a-cidr"}
	err := c.Validate(Roles{Ingest: true})
	require.True(t, errors.As(err, new(UsageError)), "%v", err)
	require.Contains(t, err.Error(), "sources.allow_cidrs not-a-cidr")
	require.NoError(t, c.Validate(Roles{Detect: false}), "a role without ingest does not use the policy")
}

func TestSourcesPrefixes(t *testing.T) {
	s := Sources{AllowCIDRs: []string{"10.20.0.0/16", "10.1.2.3/8", "192.168.1.7", "::1"}}
	got, err := s.Prefixes()
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.20.0.0/16"),
		netip.MustParsePrefix("10.0.0.0/8"), // masked
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("::1/128"),
	}, got)
}

func TestSourcesFromFileAndEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "lae.yaml")
	require.NoError(t, os.WriteFile(file, []byte("sources:\n  policy: off\n  allowed_schemes: [http, tcp]\n  allow_cidrs: [10.20.0.0/16]\n"), 0o644))
	c, err := Load(file)
	require.NoError(t, err)
	require.Equal(t, Sources{Policy: PolicyOff, AllowedSchemes: []string{"http", "tcp"}, AllowCIDRs: []string{"10.20.0.0/16"}}, c.Sources)

	t.Setenv("LAE_SOURCES_POLICY", "on")
	t.Setenv("LAE_SOURCES_ALLOW_CIDRS", "10.0.0.0/8, 127.0.0.0/8")
	c, err = Load(file)
	require.NoError(t, err)
	require.True(t, c.Sources.Enforced())
	require.Equal(t, []string{"10.0.0.0/8", "127.0.0.0/8"}, c.Sources.AllowCIDRs)
	require.True(t, strings.Contains(strings.Join(EnvNames(), " "), "LAE_SOURCES_ALLOWED_SCHEMES"))
}
