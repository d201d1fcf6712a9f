package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
	"unicode"
)

// MinTokenLen is the shortest accepted API token: shorter ones are guessable.
const MinTokenLen = 16

// ParseTokens reads a tokens file: one token per line, blank lines and lines starting with
// '#' ignored, surrounding blanks trimmed. A token may not contain blanks or control
// characters (they would not survive an Authorization header) and must be at least
// MinTokenLen bytes. Errors name the line but never echo a token.
func ParseTokens(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	var out []string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkToken(line); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	return out, nil
}

func checkToken(t string) error {
	if len(t) < MinTokenLen {
		return fmt.Errorf("token shorter than %d bytes", MinTokenLen)
	}
	for _, r := range t {
		if r > unicode.MaxASCII || r <= ' ' || r == 0x7f {
			return errors.New("token has a blank, control or non-ASCII character")
		}
	}
	return nil
}

// APITokens are the configured API bearer tokens: TokensFile's and Tokens (env
// LAE_SERVE_TOKENS). None means an open API.
func (s Serve) APITokens() ([]string, error) {
	var out []string
	if s.TokensFile != "" {
		f, err := os.Open(s.TokensFile)
		if err != nil {
			return nil, bad("--tokens-file", "serve.tokens_file", s.TokensFile, err.Error())
		}
		defer func() { _ = f.Close() }()
		toks, err := ParseTokens(f)
		if err != nil {
			return nil, bad("--tokens-file", "serve.tokens_file", s.TokensFile, err.Error())
		}
		if len(toks) == 0 {
			return nil, bad("--tokens-file", "serve.tokens_file", s.TokensFile, "no tokens in it")
		}
		out = append(out, toks...)
	}
	for i, t := range s.Tokens {
		if err := checkToken(t); err != nil {
			return nil, bad("", "serve.tokens", fmt.Sprintf("#%d", i+1), err.Error())
		}
		out = append(out, t)
	}
	return out, nil
}

// WebhookKey is the webhook signing key: WebhookSecret, else the first line of
// WebhookSecretFile; nil when neither is set.
func (s Serve) WebhookKey() ([]byte, error) {
	if s.WebhookSecret != "" {
		return []byte(s.WebhookSecret), nil
	}
	if s.WebhookSecretFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(s.WebhookSecretFile)
	if err != nil {
		return nil, bad("--webhook-secret-file", "serve.webhook_secret_file", s.WebhookSecretFile, err.Error())
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSpace(line); len(line) < MinTokenLen {
		return nil, bad("--webhook-secret-file", "serve.webhook_secret_file", s.WebhookSecretFile,
			fmt.Sprintf("want a secret of at least %d bytes on the first line", MinTokenLen))
	}
	return []byte(line), nil
}

func (s Serve) check() error {
	if _, err := s.APITokens(); err != nil {
		return err
	}
	key, err := s.WebhookKey()
	if err != nil {
		return err
	}
	if s.WebhookSecret != "" && len(s.WebhookSecret) < MinTokenLen {
		return bad("", "serve.webhook_secret", "(hidden)", fmt.Sprintf("want at least %d bytes", MinTokenLen))
	}
	if s.WebhookURL != "" && key == nil {
		return bad("--webhook-url", "serve.webhook_url", s.WebhookURL, "webhooks are signed: set serve.webhook_secret_file or LAE_SERVE_WEBHOOK_SECRET")
	}
	if s.WebhookAttempts < 1 || s.WebhookAttempts > 20 {
		return bad("--webhook-attempts", "serve.webhook_attempts", s.WebhookAttempts, "want 1 to 20")
	}
	if s.WebhookTimeout <= 0 || s.WebhookTimeout > 5*time.Minute {
		return bad("", "serve.webhook_timeout", s.WebhookTimeout, "want > 0 and at most 5m")
	}
	return nil
}

// ValidateServe is what `lae serve` checks beyond Validate: an API without tokens is only
// served on a loopback address, unless --insecure-no-auth says so.
func (c Config) ValidateServe() error {
	toks, err := c.Serve.APITokens()
	if err != nil {
		return UsageError{err}
	}
	if len(toks) == 0 && !c.Serve.InsecureNoAuth && !LoopbackAddr(c.HTTP.Addr) {
		return UsageError{bad("--http", "http.addr", c.HTTP.Addr,
			"an API without tokens may only listen on loopback: give --tokens-file (or LAE_SERVE_TOKENS), or --insecure-no-auth")}
	}
	return nil
}

// LoopbackAddr reports whether host:port listens on loopback only ("localhost", 127.0.0.0/8,
// ::1); an empty host listens everywhere.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
