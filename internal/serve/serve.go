// Package serve is `lae serve`: an HTTP API and a live web page over lae. By default it also
// runs the whole pipeline in the same process (embedded nats-server listening on a TCP port so
// that external `lae submit` and `lae watch` clients can use it, the submit responder, ingest,
// detector and aggregator workers). With serve.api_only it runs no stage: it joins a
// deployment's NATS (nats.urls), whose ingest, detect and aggregate roles do the work, and
// follows scans through NATS alone (submissions, ingest progress, scores, end-of-stream events,
// the verdicts bucket), so nothing ties it to the machines that scan.
//
// # HTTP API
//
// openapi.yaml is the API's description (served as GET /api/openapi.json, and tested against
// the route table of routes.go); in short:
//
//	POST   /api/scans                     submit: a JSON laev1.SubmitRequest (plus webhook_url),
//	                                      or a multipart upload (field "file", optional fields
//	                                      sample_fps, max_duration_s, reference, priority,
//	                                      webhook_url, rescore) -> 202 {"video_id": ...}; an
//	                                      upload of bytes scanned before -> 200 with the earlier
//	                                      scan (duplicate_of) unless rescore=true
//	GET    /api/scans                     scans, newest first, a page at a time (?limit=N,
//	                                      default 200; ?cursor= from next_cursor), filtered by
//	                                      ?state=, ?verdict=, ?q=
//	GET    /api/scans/{id}                the latest verdict JSON with "state": "done", or
//	                                      "state": "pending" (with the rolling verdict, if any)
//	                                      while the scan runs; 404 for an unknown id
//	DELETE /api/scans/{id}                the scan, its verdicts, evidence, upload and webhook log
//	GET    /api/scans/{id}/history        every final verdict revision
//	GET    /api/scans/{id}/evidence/{n}   the n-th (0-based) evidence image, JPEG
//	GET    /api/scans/{id}/report         the self-contained HTML report (?download=1 to save)
//	GET    /api/scans/{id}/webhooks       the scan's webhook deliveries and their attempts
//	GET    /api/events                    Server-Sent Events with ids: "scan" (progress),
//	                                      "verdict", "deleted"; Last-Event-ID resumes (hub.go)
//	GET    /api/openapi.json              the OpenAPI document (open)
//	GET    /metrics /healthz /readyz      operations (internal/ops; the probes are open,
//	                                      /metrics unless serve.metrics_auth)
//	GET    /, /login                      the live page and its sign-in form
//
// With tokens configured every other route needs "Authorization: Bearer <token>" (auth.go).
// Errors are one-line JSON objects: {"error": "..."}. Final verdicts are POSTed, signed, to
// the configured and per-submission webhook URLs (hooks.go).
//
// The verdict, evidence and report routes take ?revision=N for an earlier revision.
//
// A scan summary (GET /api/scans, "scan" events) reports progress as media time read:
// media_seconds of duration_seconds (the length is known once ingest reports the source's
// duration; before it, and for live streams, only the elapsed media time), and for a final
// verdict that read part of the video only, partial and read_share.
//
// Local file paths are not accepted in JSON submissions unless Options.AllowLocalPaths is set:
// the HTTP API must not let a caller make the server read arbitrary files. Uploads are stored
// in the uploads object store and submitted as upload:<video id> (uploads.go).
package serve

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/core"
	"github.com/lae-screening/lae/internal/webhook"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Options configures Start.
type Options struct {
	// Config is the whole configuration (config.ForCommand("serve") defaults): the stack's
	// settings, HTTP.Addr for the API and page, Serve for the API's limits.
	Config config.Config
	Logger *zap.Logger
	// Resolver resolves webhook hosts, at registration and at delivery (nil =
	// net.DefaultResolver); tests inject one so that no name is ever looked up.
	Resolver webhook.Resolver
}

// Server is a running `lae serve`: the stack plus the HTTP API and the live page.
type Server struct {
	o       Options
	log     *zap.Logger
	stack   *core.Stack
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	obj     jetstream.ObjectStore
	uploads jetstream.ObjectStore
	// sources is the policy submitted URLs are held to when accepted (nil when off).
	sources *source.Policy
	tracker *tracker
	hub     *hub
	auth    *authn
	dedupe  *dedupe
	// webhooks delivers final verdicts (nil without a webhook secret); hooks are the
	// submissions' own webhook URLs until their final verdict.
	webhooks *webhook.Dispatcher
	// hookPolicy decides webhook addresses (nil when the source policy is off).
	hookPolicy *source.Policy
	hooksMu    sync.Mutex
	hooks      map[string]string
	hookDir    string // where hooks are kept across restarts
	nameDir    string // where upload names are kept across restarts (names.go)

	// done is closed when shutdown starts: event streams end so the HTTP server can stop.
	done      chan struct{}
	closeOnce sync.Once

	cancelWatch context.CancelFunc
	watchWG     sync.WaitGroup
}

// Start starts the stack (core.Start validates the configuration first), the scan tracker
// and the HTTP API.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Config.HTTP.Addr == "" {
		return nil, config.Usagef("--http: lae serve needs an HTTP address")
	}
	if err := o.Config.ValidateServe(); err != nil {
		return nil, err
	}
	tokens, err := o.Config.Serve.APITokens()
	if err != nil {
		return nil, config.UsageError{Err: err}
	}
	s := &Server{o: o, log: o.Logger, done: make(chan struct{}), cancelWatch: func() {}, auth: newAuthn(tokens),
		dedupe: newDedupe(), hooks: map[string]string{}}
	if !s.auth.enabled() {
		s.log.Warn("the HTTP API has no tokens: anyone who can reach " + o.Config.HTTP.Addr + " may submit, read and delete scans (give --tokens-file)")
	}
	s.hub = newHub()
	s.tracker = newTracker(s.hub)
	s.stack, err = core.Start(ctx, core.Options{Config: o.Config, Roles: o.Config.ServeRoles(), Name: "serve", Logger: o.Logger,
		Prepare: s.prepare, Store: true})
	if err != nil {
		return nil, err
	}
	s.log.Info("serving", zap.String("page", "http://"+s.HTTPAddr()+"/"), zap.String("nats", s.NATSURL()),
		zap.String("nats_clients", "lae submit|watch --config "+s.stack.ClientConfig()))
	return s, nil
}

// prepare runs once NATS is up, before the stages and the HTTP endpoint start: the tracker
// sees every submission, and the page is there on the first request.
func (s *Server) prepare(ctx context.Context, st *core.Stack) error {
	s.stack, s.js = st, st.JS
	var err error
	if s.kv, err = st.JS.KeyValue(ctx, laev1.BucketVerdicts); err != nil {
		return fmt.Errorf("open verdicts bucket: %w", err)
	}
	if s.obj, err = st.JS.ObjectStore(ctx, laev1.BucketEvidence); err != nil {
		return fmt.Errorf("open evidence store: %w", err)
	}
	if s.uploads, err = st.JS.ObjectStore(ctx, laev1.BucketUploads); err != nil {
		return fmt.Errorf("open uploads store: %w", err)
	}
	// With its own ingest the stack holds the policy; an API-only server makes the same one to
	// hold submissions to for a fast answer (the deployment's ingest holds them to it again).
	// With the policy off both are nil.
	if s.sources = st.SourcePolicy(); s.sources == nil {
		if s.sources, err = core.SourcePolicy(s.o.Config.Sources, s.log.Named("sources")); err != nil {
			return err
		}
	}
	if err := s.loadHooks(st.StoreDir()); err != nil {
		return err
	}
	s.nameDir = filepath.Join(st.StoreDir(), "names")
	if err := os.MkdirAll(s.nameDir, 0o700); err != nil {
		return fmt.Errorf("create upload names dir: %w", err)
	}
	if err := s.startWebhooks(ctx); err != nil {
		return err
	}
	if err := s.startWatch(ctx); err != nil {
		return err
	}
	// The ops mux becomes the fallback of serve's: the API and page routes, and the token
	// check in front of everything but the probes (routes.go).
	st.Ops.Mux = s.mux(st.Ops.Mux)
	return nil
}

// HTTPAddr is the address the HTTP server listens on.
func (s *Server) HTTPAddr() string { return s.stack.HTTPAddr() }

// NATSURL is the embedded server's client URL ("" when it does not listen).
func (s *Server) NATSURL() string { return s.stack.NATSURL() }

// ClientConfig is the client configuration (URL and token) of the embedded NATS server.
func (s *Server) ClientConfig() string { return s.stack.ClientConfig() }

// JetStream is the stack's JetStream context (tests inspect streams).
func (s *Server) JetStream() jetstream.JetStream { return s.js }

// Failed is closed when a stage stopped on its own (Err says why).
func (s *Server) Failed() <-chan struct{} { return s.stack.Failed() }

// Run starts a server, serves until ctx ends or a stage fails, then shuts down gracefully
// and returns the stage's error, if any.
func Run(ctx context.Context, o Options, started func(*Server)) error {
	s, err := Start(ctx, o)
	if err != nil {
		return err
	}
	if started != nil {
		started(s)
	}
	select {
	case <-ctx.Done():
	case <-s.stack.Failed():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*o.Config.ShutdownTimeout+10*time.Second)
	defer cancel()
	s.Shutdown(sctx)
	return s.stack.Err()
}

// Shutdown ends the event streams, then stops the stack in order (core.Stack.Close: the HTTP
// endpoint, ingest with the videos in hand, the drain, the stages, NATS) and the tracker. It
// is idempotent.
func (s *Server) Shutdown(ctx context.Context) {
	s.closeOnce.Do(func() {
		close(s.done)
		s.stack.Close(ctx)
		s.cancelWatch()
		s.watchWG.Wait()
		if s.webhooks != nil {
			// After the watcher: the drain's last final verdicts are queued by then.
			s.webhooks.Close(ctx)
		}
		_ = s.hookPolicy.Close()
		s.log.Info("stopped")
	})
}
