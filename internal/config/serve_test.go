package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseTokens(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []string
		err  string
	}{
		{"empty", "", nil, ""},
		{"comments and blanks", "# ops team\n\n  tok-aaaaaaaaaaaaaaaa  \n#tok-commented-out-xx\ntok-bbbbbbbbbbbbbbbb\r\n", []string{"tok-aaaaaaaaaaaaaaaa", "tok-bbbbbbbbbbbbbbbb"}, ""},
		{"too short", "short\n", nil, "line 1: token shorter"},
		{"inner blank", "# c\ntok aaaaaaaaaaaaaaaaaa\n", nil, "line 2: token has a blank"},
		{"non-ascii", "tokéééééééééééééééé\n", nil, "non-ASCII"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTokens(strings.NewReader(c.in))
			if c.err != "" {
				require.ErrorContains(t, err, c.err)
				require.NotContains(t, err.Error(), "aaaa", "errors must not echo tokens")
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}

// FuzzParseTokens: any file either fails or yields tokens an Authorization header can carry.
func FuzzParseTokens(f *testing.F) {
	f.Add("# c\ntok-aaaaaaaaaaaaaaaa\n")
	f.Add("\x00\xff\n\n#\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		toks, err := ParseTokens(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, tok := range toks {
			require.GreaterOrEqual(t, len(tok), MinTokenLen)
			require.NotContains(t, tok, " ")
			require.False(t, strings.HasPrefix(tok, "#"))
			require.NoError(t, checkToken(tok))
		}
	})
}

func TestValidateServe(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(good, []byte("# api\ntok-aaaaaaaaaaaaaaaa\n"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("# nothing\n"), 0o600))
	secret := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(secret, []byte("whsec-0123456789abcdef\n"), 0o600))
	cases := []struct {
		name string
		mod  func(c *Config)
		err  string // "" = valid
	}{
		{"loopback without tokens", func(*Config) {}, ""},
		{"localhost without tokens", func(c *Config) { c.HTTP.Addr = "localhost:0" }, ""},
		{"ipv6 loopback without tokens", func(c *Config) { c.HTTP.Addr = "[::1]:0" }, ""},
		{"everywhere without tokens", func(c *Config) { c.HTTP.Addr = ":0" }, "--http :0"},
		{"public address without tokens", func(c *Config) { c.HTTP.Addr = "192.0.2.1:0" }, "--insecure-no-auth"},
		{"everywhere, insecure asked", func(c *Config) { c.HTTP.Addr, c.Serve.InsecureNoAuth = ":0", true }, ""},
		{"everywhere with a tokens file", func(c *Config) { c.HTTP.Addr, c.Serve.TokensFile = ":0", good }, ""},
		{"everywhere with env tokens", func(c *Config) { c.HTTP.Addr, c.Serve.Tokens = ":0", []string{"tok-cccccccccccccccc"} }, ""},
		{"missing tokens file", func(c *Config) { c.Serve.TokensFile = filepath.Join(dir, "nope") }, "--tokens-file"},
		{"tokens file without tokens", func(c *Config) { c.Serve.TokensFile = empty }, "no tokens in it"},
		{"short env token", func(c *Config) { c.Serve.Tokens = []string{"short"} }, "serve.tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ForCommand("serve")
			cfg.HTTP.Addr = "127.0.0.1:0"
			c.mod(&cfg)
			err := cfg.ValidateServe()
			if c.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, c.err)
			require.True(t, errors.As(err, new(UsageError)))
		})
	}

	webhook := []struct {
		name string
		mod  func(s *Serve)
		err  string
	}{
		{"defaults", func(*Serve) {}, ""},
		{"url with secret file", func(s *Serve) { s.WebhookURL, s.WebhookSecretFile = "https://hooks.example/v", secret }, ""},
		{"url without secret", func(s *Serve) { s.WebhookURL = "https://hooks.example/v" }, "webhooks are signed"},
		{"short secret", func(s *Serve) { s.WebhookSecret = "short" }, "at least 16"},
		{"zero attempts", func(s *Serve) { s.WebhookAttempts = 0 }, "--webhook-attempts"},
		{"bad tokens file", func(s *Serve) { s.TokensFile = empty }, "--tokens-file"},
	}
	for _, c := range webhook {
		t.Run("validate "+c.name, func(t *testing.T) {
			cfg := ForCommand("serve")
			c.mod(&cfg.Serve)
			err := cfg.Serve.check()
			if c.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, c.err)
		})
	}
}

func TestServeEnvTokens(t *testing.T) {
	t.Setenv("LAE_SERVE_TOKENS", "tok-aaaaaaaaaaaaaaaa, tok-bbbbbbbbbbbbbbbb")
	c, err := LoadOver(ForCommand("serve"), "")
	require.NoError(t, err)
	toks, err := c.Serve.APITokens()
	require.NoError(t, err)
	require.Equal(t, []string{"tok-aaaaaaaaaaaaaaaa", "tok-bbbbbbbbbbbbbbbb"}, toks)
}
