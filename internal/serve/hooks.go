package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/webhook"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Webhooks: every final verdict (a rescore's new revision included) is POSTed, signed, to
// serve.webhook_url, and the first final verdict also to the submission's own webhook_url
// (internal/webhook). Per-submission URLs are kept from the submission to that verdict in
// memory and in <store>/webhooks/<video id> (owner-only: a URL may carry a secret in its
// query), so a scan that outlives a restart still calls its submitter back.

// startWebhooks makes the dispatcher when a signing secret is configured.
func (s *Server) startWebhooks(ctx context.Context) error {
	c := s.o.Config.Serve
	key, err := c.WebhookKey()
	if err != nil || key == nil {
		return err
	}
	var pol webhook.Policy
	if s.sources != nil {
		// The source policy's ranges and allow_cidrs, with this server's resolver: the same
		// decision as for submitted URLs, and one a test can make without asking DNS.
		p, err := webhookPolicy(s.o.Config.Sources, s.o.Resolver, s.log)
		if err != nil {
			return err
		}
		s.hookPolicy, pol = p, p
	}
	s.webhooks, err = webhook.New(webhook.Options{Secret: key, Policy: pol, Resolver: s.o.Resolver,
		Attempts: c.WebhookAttempts, Timeout: c.WebhookTimeout, Logger: s.log.Named("webhook"), Ended: s.stack.Metrics.WebhookEnded})
	if err != nil {
		return fmt.Errorf("start webhooks: %w", err)
	}
	if c.WebhookURL != "" {
		if err := webhook.CheckURL(ctx, nil, c.WebhookURL); err != nil {
			return fmt.Errorf("serve.webhook_url: %w", err)
		}
		// The address is checked at every delivery; a refusal now (a DNS hiccup, or a URL the
		// policy refuses) is worth a warning, not a failed start.
		if err := s.webhooks.Check(ctx, c.WebhookURL); err != nil {
			s.log.Warn("serve.webhook_url refused by the source policy now; deliveries will be refused too unless that changes",
				zap.String("url", c.WebhookURL), zap.Error(err))
		}
	}
	return nil
}

// webhookPolicy is the source policy for webhook URLs: http and https only, the configured
// allow_cidrs, hosts resolved by res (nil = net.DefaultResolver).
func webhookPolicy(c config.Sources, res webhook.Resolver, log *zap.Logger) (*source.Policy, error) {
	allow, err := c.Prefixes()
	if err != nil {
		return nil, config.UsageError{Err: err}
	}
	o := source.PolicyOptions{Schemes: []string{"http", "https"}, Allow: allow,
		Refused: func(url string, detail error) {
			log.Warn("webhook URL refused", zap.String("url", url), zap.Error(detail))
		}}
	if res != nil {
		o.Resolver = res
	}
	p, err := source.NewPolicy(o)
	if err != nil {
		return nil, fmt.Errorf("webhook policy: %w", err)
	}
	return p, nil
}

// maxWebhookURL bounds a submission's webhook URL.
const maxWebhookURL = 2048

// checkWebhook decides a submission's webhook_url.
func (s *Server) checkWebhook(ctx context.Context, u string) error {
	if s.webhooks == nil {
		return errors.New("webhook_url: this server has no webhook secret (serve.webhook_secret_file)")
	}
	if len(u) > maxWebhookURL {
		return fmt.Errorf("webhook_url is longer than %d bytes", maxWebhookURL)
	}
	if err := s.webhooks.Check(ctx, u); err != nil {
		return fmt.Errorf("webhook_url: %w", err)
	}
	return nil
}

// setHook records (or with "" drops) a submission's webhook URL.
func (s *Server) setHook(videoID, u string) {
	s.hooksMu.Lock()
	defer s.hooksMu.Unlock()
	if u == "" {
		if _, ok := s.hooks[videoID]; ok {
			delete(s.hooks, videoID)
			s.dropHookFile(videoID)
		}
		return
	}
	s.hooks[videoID] = u
	if err := keepFile(s.hookDir, videoID, []byte(u)); err != nil {
		s.log.Warn("keep webhook URL (it is lost if the server restarts before the verdict)", zap.String("video_id", videoID), zap.Error(err))
	}
}

// dropHookFile removes a kept webhook URL; s.hooksMu must be held.
func (s *Server) dropHookFile(videoID string) {
	if err := dropKept(s.hookDir, videoID); err != nil {
		s.log.Warn("remove kept webhook URL", zap.String("video_id", videoID), zap.Error(err))
	}
}

// loadHooks reads the webhook URLs kept by an earlier run (their scans' verdicts are still
// to come, or came while the server was down: those are not sent again).
func (s *Server) loadHooks(storeDir string) error {
	s.hookDir = filepath.Join(storeDir, "webhooks")
	if err := os.MkdirAll(s.hookDir, 0o700); err != nil {
		return fmt.Errorf("create webhooks dir: %w", err)
	}
	entries, err := os.ReadDir(s.hookDir)
	if err != nil {
		return fmt.Errorf("read webhooks dir: %w", err)
	}
	s.hooksMu.Lock()
	defer s.hooksMu.Unlock()
	for _, e := range entries {
		id := e.Name()
		if !e.Type().IsRegular() || laev1.ValidateVideoID(id) != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.hookDir, id))
		if err != nil || len(b) == 0 || len(b) > maxWebhookURL {
			s.log.Warn("unreadable kept webhook URL", zap.String("video_id", id), zap.Error(err))
			continue
		}
		s.hooks[id] = string(b)
	}
	return nil
}

// notify queues the deliveries of a final verdict; raw is the verdict's JSON as stored. It
// never blocks the verdict watcher.
func (s *Server) notify(v laev1.Verdict, raw []byte) {
	if s.webhooks == nil || !v.Final {
		return
	}
	s.hooksMu.Lock()
	own, ok := s.hooks[v.VideoID]
	if ok {
		delete(s.hooks, v.VideoID)
		s.dropHookFile(v.VideoID)
	}
	s.hooksMu.Unlock()
	global := s.o.Config.Serve.WebhookURL
	if global != "" {
		s.webhooks.Enqueue(v.VideoID, global, "verdict", v.Revision, raw)
	}
	if own != "" && own != global {
		s.webhooks.Enqueue(v.VideoID, own, "verdict", v.Revision, raw)
	}
}

// webhookLog is the answer of GET /api/scans/{id}/webhooks.
type webhookLog struct {
	Deliveries []webhook.Delivery `json:"deliveries"`
}

func (s *Server) handleWebhookLog(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var log []webhook.Delivery
	if s.webhooks != nil {
		log = s.webhooks.Log(id)
	}
	if len(log) == 0 {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		if _, exists := s.scanState(ctx, id); !exists {
			httpError(w, http.StatusNotFound, "no scan "+id)
			return
		}
		log = []webhook.Delivery{}
	}
	writeJSON(w, http.StatusOK, webhookLog{Deliveries: log})
}
