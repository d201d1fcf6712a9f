// Package core builds the lae stack from one validated configuration and owns its lifecycle:
// NATS (embedded or external), the submit responder and ingest worker, the detector workers
// and the aggregator, and the operations endpoint. `lae scan`, `lae serve` and every
// distributed role start their stages here and nowhere else.
//
// Stages start in dependency order (NATS, aggregator, detector, ingest) and stop in reverse:
// ingest stops taking videos and finishes the ones in hand, the detector and aggregator
// drain what ingest published, then NATS closes. The first stage that stops on its own is
// reported on Failed, so the caller ends the run with that error instead of waiting forever.
package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/aggregator/service"
	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/detector/worker"
	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/ingest/submit"
	ingestworker "github.com/lae-screening/lae/ingest/worker"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/jsretry"
	"github.com/lae-screening/lae/internal/metrics"
	"github.com/lae-screening/lae/internal/natsembed"
	"github.com/lae-screening/lae/internal/ops"
	"github.com/lae-screening/lae/internal/rescore"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Options configures Start.
type Options struct {
	// Config must have passed Validate(Roles); Start validates it again.
	Config config.Config
	// Roles picks the stages and whether NATS is embedded.
	Roles config.Roles
	// Name names the process in logs and its NATS connection ("scan", "serve", "ingest", ...).
	Name   string
	Logger *zap.Logger
	// Prepare (optional) runs once NATS is connected, before the stages and the operations
	// endpoint start: `lae serve` opens its buckets, starts following scans and adds its
	// routes to Stack.Ops.Mux there, so that it misses no event and serves no 404.
	Prepare func(ctx context.Context, s *Stack) error
	// Store asks for StoreDir without an embedded server (`lae serve --api-only` keeps webhook
	// URLs and upload names there): Config.Store, or a temporary directory removed on Close.
	Store bool
}

// Stack is a running set of stages. Its fields are valid until Close.
type Stack struct {
	cfg   config.Config
	roles config.Roles
	log   *zap.Logger

	embedded *natsembed.Server
	// NC and JS reach the stack's NATS (embedded or external).
	NC *nats.Conn
	JS jetstream.JetStream
	// Ops is the operations endpoint (/metrics, /healthz, /readyz), nil when Config.HTTP.Addr
	// is empty; `lae serve` adds its API routes to Ops.Mux.
	Ops *ops.Server
	// Metrics records the stages' work (nil without Ops).
	Metrics *metrics.Metrics
	// Card is the model identity and the decision threshold every verdict uses.
	Card  model.CardInfo
	model *model.Model

	storeDir, tempDir string
	// sources is the source policy of submitted URLs (nil when off or without ingest).
	sources *source.Policy

	progressMu sync.Mutex
	progress   map[string]func(pipeline.Progress)

	failed     chan struct{}
	failedErr  error
	failedOnce sync.Once

	cancelIngest, cancelStages, cancelWatch context.CancelFunc
	abort                                   chan struct{}
	ingestWG, stagesWG                      sync.WaitGroup
	closeOnce                               sync.Once
}

// LoadModel loads the detector's model as configured: the one model.Load call of the
// product (the stack's detector and `lae rescore` use it).
func LoadModel(d config.Detector) (*model.Model, error) {
	// model.Load's errors already say "load model <path>".
	return model.Load(model.Options{Path: model.PathOrDefault(d.Model), LibPath: d.ORTLib, Provider: d.Provider,
		MaxBatch: batchSize(d), NoArena: d.NoArena})
}

// batchSize is the configured batch, or the provider's when none is.
func batchSize(d config.Detector) int {
	if d.BatchSize > 0 {
		return d.BatchSize
	}
	return model.BatchSize(d.Provider)
}

// Start validates the configuration and starts the stack. On error everything started is
// stopped again.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	if err := o.Config.Validate(o.Roles); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	s := &Stack{cfg: o.Config, roles: o.Roles, log: o.Logger, failed: make(chan struct{}),
		progress: map[string]func(pipeline.Progress){}, abort: make(chan struct{}), cancelIngest: func() {}, cancelStages: func() {}, cancelWatch: func() {}}
	defer func() {
		if err != nil {
			s.stop(context.Background(), true)
		}
	}()
	c := o.Config
	if o.Roles.Aggregate || o.Roles.Detect {
		// The aggregator decides with the card's threshold; a detector alone only names the
		// model in its log, and its ONNX metadata can do that (below).
		card, cerr := model.ResolveCard(c.Detector.Model, c.Aggregator.Threshold)
		if cerr != nil && o.Roles.Aggregate {
			return nil, cerr
		}
		s.Card = card
	}
	if o.Roles.Ingest {
		if s.sources, err = SourcePolicy(c.Sources, s.log.Named("sources")); err != nil {
			return nil, err
		}
	}
	if c.HTTP.Addr != "" {
		s.Ops = ops.NewServer()
		s.Metrics = s.Ops.Metrics
		if err := s.protectMetrics(); err != nil {
			return nil, err
		}
	}
	if o.Roles.Detect {
		if s.model, err = LoadModel(c.Detector); err != nil {
			return nil, err
		}
		if s.Card.Name == "" {
			md := s.model.Metadata()
			s.Card.Name, s.Card.Version = md.Name, md.Version
		}
	}
	if o.Roles.Embedded || o.Store {
		if err := s.openStore(o.Name); err != nil {
			return nil, err
		}
	}
	if err := s.connect(ctx, o.Name); err != nil {
		return nil, err
	}
	if o.Prepare != nil {
		if err := o.Prepare(ctx, s); err != nil {
			return nil, err
		}
	}
	if s.Ops != nil {
		s.Metrics.SetBuildInfo(ops.Version(), buildModel(s.Card))
		s.Ops.AddReadyCheck("nats", ops.NATSReady(s.NC))
		s.Ops.AddReadyCheck("stages", s.stagesReady)
		if err := s.Ops.Start(c.HTTP.Addr); err != nil {
			return nil, err
		}
	}
	if err := s.startStages(); err != nil {
		return nil, err
	}
	s.log.Info("started", zap.String("nats", s.NATSURL()), zap.String("http", s.HTTPAddr()),
		zap.String("model", s.Card.Name), zap.String("model_version", s.Card.Version), zap.Float64("threshold", s.Card.Threshold))
	return s, nil
}

// protectMetrics puts a distributed role's /metrics behind serve's tokens when
// serve.metrics_auth asks for it. `lae serve` (embedded) checks its own tokens in front of
// the whole endpoint (internal/serve), so it is left alone here; a role asked to protect
// /metrics without any token is a configuration mistake, not an open endpoint.
func (s *Stack) protectMetrics() error {
	if s.roles.Embedded || !s.cfg.Serve.MetricsAuth {
		return nil
	}
	tokens, err := s.cfg.Serve.APITokens()
	if err != nil {
		return err
	}
	if len(tokens) == 0 {
		return config.Usagef("serve.metrics_auth: no tokens to check (set serve.tokens_file or LAE_SERVE_TOKENS)")
	}
	s.Ops.RequireMetricsToken(tokens)
	return nil
}

// Retention is the contract's retention for the configured one.
func Retention(r config.Retention) laev1.Retention {
	return laev1.Retention{FacesMaxAge: r.FacesMaxAge, FacesMaxBytes: r.FacesMaxBytes, FramesMaxAge: r.FramesMaxAge,
		FramesMaxBytes: r.FramesMaxBytes, UploadsMaxAge: r.UploadsMaxAge, UploadsMaxBytes: r.UploadsMaxBytes,
		Replicas: r.Replicas, Memory: r.Memory}
}

// SourcePolicy is the configured source policy, nil when it is off. Refusals and failed opens
// are logged to log with their reason, which submitters only see as source.ErrUnavailable.
func SourcePolicy(c config.Sources, log *zap.Logger) (*source.Policy, error) {
	if !c.Enforced() {
		return nil, nil
	}
	allow, err := c.Prefixes()
	if err != nil {
		return nil, config.UsageError{Err: err}
	}
	return source.NewPolicy(source.PolicyOptions{Schemes: c.AllowedSchemes, Allow: allow,
		Refused: func(url string, detail error) {
			log.Warn("source refused or unavailable", zap.String("url", url), zap.Error(detail))
		}})
}

// SourcePolicy is the policy submissions are held to (nil when off or without ingest).
func (s *Stack) SourcePolicy() *source.Policy { return s.sources }

// ensureProvisioned checks that the streams exist and creates the missing ones when this
// user may (a development server without permissions). With per-role permissions the roles
// may only look streams up: an operator provisions once with `lae provision`, which is also
// how retention changes reach the streams.
func ensureProvisioned(ctx context.Context, js jetstream.JetStream, r laev1.Retention) error {
	missing, err := laev1.Provisioned(ctx, js)
	if err != nil || len(missing) == 0 {
		return err
	}
	if err := laev1.Provision(ctx, js, r); err != nil {
		return fmt.Errorf("streams %v are missing and this user may not create them (run lae provision as an operator): %w", missing, err)
	}
	return nil
}

// connect starts the embedded server (which it provisions) or connects to the configured
// one (which must be provisioned, see ensureProvisioned).
func (s *Stack) connect(ctx context.Context, name string) error {
	c := s.cfg
	retention := Retention(c.Retention)
	if !s.roles.Embedded {
		nc, err := ops.Connect(c.NATS, "lae-"+name, s.log)
		if err != nil {
			return err
		}
		s.NC = nc
		if s.JS, err = jsretry.New(nc); err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return ensureProvisioned(pctx, s.JS, retention)
	}
	no := natsembed.Options{StoreDir: filepath.Join(s.storeDir, "nats"), Retention: retention}
	if c.NATS.ListenPort != 0 {
		no.Host, no.Port = c.NATS.ListenHost, c.NATS.ListenPort
		if no.Token = c.NATS.Token; no.Token == "" {
			tok, err := newToken()
			if err != nil {
				return err
			}
			no.Token = tok
		}
	}
	srv, err := natsembed.Start(ctx, no)
	if err != nil {
		return err
	}
	s.embedded, s.NC, s.JS = srv, srv.NC, srv.JS
	if no.Token != "" {
		return s.writeClientConfig(no.Token)
	}
	return nil
}

// openStore picks the store directory: Config.Store, or a temporary one removed on Close.
func (s *Stack) openStore(name string) error {
	if s.storeDir = s.cfg.Store; s.storeDir != "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "lae-"+name+"-")
	if err != nil {
		return fmt.Errorf("temporary store: %w", err)
	}
	s.storeDir, s.tempDir = dir, dir
	return nil
}

// newToken makes the per-instance NATS token of a listening embedded server.
func newToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make NATS token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ClientConfigName is the client configuration a listening embedded server writes into its
// store: its URL and token, readable by the owner only, for `lae submit|watch --config`.
const ClientConfigName = "client.yaml"

func (s *Stack) writeClientConfig(token string) error {
	c := fmt.Sprintf("# written by lae: the NATS URL and token of this instance (keep it private)\nnats:\n  urls: [%q]\n  token: %q\n",
		s.embedded.ClientURL(), token)
	p := filepath.Join(s.storeDir, ClientConfigName)
	if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
		return fmt.Errorf("write NATS client config: %w", err)
	}
	return os.Chmod(p, 0o600) // WriteFile keeps the mode of a file that exists
}

// ClientConfig is the path of the client configuration of a listening embedded server ("" when
// it does not listen).
func (s *Stack) ClientConfig() string {
	if s.NATSURL() == "" {
		return ""
	}
	return filepath.Join(s.storeDir, ClientConfigName)
}

// startStages starts the aggregator and the detector (they drain last) and then the submit
// responder and ingest (they stop first).
func (s *Stack) startStages() error {
	c, js, mt := s.cfg, s.JS, s.Metrics
	stagesCtx, cancelStages := context.WithCancel(context.Background())
	ingestCtx, cancelIngest := context.WithCancel(context.Background())
	watchCtx, cancelWatch := context.WithCancel(context.Background())
	s.cancelStages, s.cancelIngest, s.cancelWatch = cancelStages, cancelIngest, cancelWatch
	watch := func(stream, consumer string) {
		if mt != nil {
			go mt.WatchConsumer(watchCtx, js, stream, consumer, 5*time.Second)
		}
	}
	if s.roles.Aggregate {
		watch(laev1.StreamScores, laev1.ConsumerAggregator)
		s.goStage(&s.stagesWG, "aggregator", func() error {
			return service.Run(stagesCtx, js, service.Options{
				Rule: c.Aggregator.Rule, TopK: c.Aggregator.TopK, Threshold: s.Card.Threshold,
				EvidenceFrames: c.Aggregator.EvidenceFrames, Model: s.Card.Name, RollingEvery: c.Aggregator.RollingEvery,
				Logger: s.log.Named("aggregator"), Hooks: aggregatorHooks(mt),
			})
		})
	}
	if s.roles.Detect {
		watch(laev1.StreamFaces, laev1.ConsumerDetector)
		s.goStage(&s.stagesWG, "detector", func() error {
			return worker.Run(stagesCtx, js, s.model, worker.Options{
				BatchSize: batchSize(c.Detector), BatchTimeout: c.Detector.BatchTimeout, Workers: c.Detector.Workers,
				Logger: s.log.Named("detector"), Hooks: detectorHooks(mt), AbandonPullOnStop: s.roles.Embedded,
			})
		})
	}
	if s.roles.Ingest {
		watch(laev1.StreamIngest, laev1.ConsumerIngest)
		stopSubmit, err := submit.Listen(ingestCtx, s.NC, js, s.log.Named("submit"), submit.Options{Policy: s.sources})
		if err != nil {
			return err
		}
		s.goStage(&s.ingestWG, "submit", func() error {
			<-ingestCtx.Done()
			return stopSubmit()
		})
		pub := newProgressPublisher(s.NC, s.log.Named("ingest"))
		hooks := ingestHooks(mt, s.roles.Aggregate, func(videoID string, p pipeline.Progress) {
			pub.progress(videoID, p)
			s.reportProgress(videoID, p)
		})
		done := hooks.Done
		hooks.Done = func(videoID string, eos *laev1.EndOfStream, err error) {
			pub.done(videoID)
			if done != nil {
				done(videoID, eos, err)
			}
		}
		s.goStage(&s.ingestWG, "ingest", func() error {
			in := c.Ingest
			return ingestworker.Run(ingestCtx, js, ingestworker.Options{
				Concurrency: in.Concurrency, DefaultSampleFPS: in.SampleFPS, ShutdownTimeout: c.ShutdownTimeout, Abort: s.abort,
				Pipeline: pipeline.Options{MaxDuration: in.MaxDuration, FaceModel: in.FaceModel, MinEyePx: in.MinEyePx,
					Source: source.Options{OpenTimeout: in.OpenTimeout, ReadTimeout: in.OpenTimeout, Policy: s.sources}, StageTime: stageTime(mt)},
				Logger: s.log.Named("ingest"), Hooks: hooks, AbandonPullOnStop: s.roles.Embedded,
			})
		})
	}
	return nil
}

// goStage runs a stage; a stage that stops with an error (not by cancellation) is the
// stack's failure.
func (s *Stack) goStage(wg *sync.WaitGroup, name string, run func() error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := run(); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("stage stopped", zap.String("stage", name), zap.Error(err))
			s.fail(fmt.Errorf("%s stage stopped: %w", name, err))
		}
	}()
}

func (s *Stack) fail(err error) {
	s.failedOnce.Do(func() {
		s.progressMu.Lock()
		s.failedErr = err
		s.progressMu.Unlock()
		close(s.failed)
	})
}

// stagesReady fails readiness once a stage has died, so a supervisor restarts the process.
func (s *Stack) stagesReady() error {
	s.progressMu.Lock()
	defer s.progressMu.Unlock()
	return s.failedErr
}

// Failed is closed when a stage has stopped on its own; Err says why.
func (s *Stack) Failed() <-chan struct{} { return s.failed }

// Err is the first stage failure, or nil.
func (s *Stack) Err() error { return s.stagesReady() }

// Config is the configuration the stack runs with.
func (s *Stack) Config() config.Config { return s.cfg }

// StoreDir is the embedded store's directory (a temporary one when none was configured).
func (s *Stack) StoreDir() string { return s.storeDir }

// NATSURL is the embedded server's client URL ("" when it does not listen or is external).
func (s *Stack) NATSURL() string {
	if s.embedded == nil || s.cfg.NATS.ListenPort == 0 {
		return ""
	}
	return s.embedded.ClientURL()
}

// HTTPAddr is the operations endpoint's address ("" when there is none).
func (s *Stack) HTTPAddr() string {
	if s.Ops == nil {
		return ""
	}
	return s.Ops.Addr()
}

// FollowProgress calls f with the ingest progress of videoID until the returned stop is
// called (in-process ingest only).
func (s *Stack) FollowProgress(videoID string, f func(pipeline.Progress)) (stop func()) {
	s.progressMu.Lock()
	s.progress[videoID] = f
	s.progressMu.Unlock()
	return func() {
		s.progressMu.Lock()
		delete(s.progress, videoID)
		s.progressMu.Unlock()
	}
}

func (s *Stack) reportProgress(videoID string, p pipeline.Progress) {
	s.progressMu.Lock()
	f := s.progress[videoID]
	s.progressMu.Unlock()
	if f != nil {
		f(p)
	}
}

// Close stops the stack in reverse order: ingest finishes the videos in hand (up to
// ShutdownTimeout), the detector and aggregator drain what was published (up to
// ShutdownTimeout, and never past ctx), then the stages, the model, the endpoint and NATS
// stop. With ctx already done nothing waits: a user who pressed Ctrl-C gets the prompt back.
// It is idempotent.
func (s *Stack) Close(ctx context.Context) { s.stop(ctx, ctx.Err() != nil) }

func (s *Stack) stop(ctx context.Context, abort bool) {
	s.closeOnce.Do(func() {
		if s.Ops != nil {
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := s.Ops.Shutdown(hctx); err != nil {
				s.log.Warn("http shutdown", zap.Error(err))
			}
			cancel()
		}
		if abort {
			close(s.abort)
		}
		s.cancelIngest()
		if !abort {
			s.ingestWG.Wait()
			s.log.Debug("ingest stopped")
			// Only a process that also ingests knows its published work is complete; a
			// detector among many must not wait on the shared consumers (its in-flight
			// batches finish when its context ends).
			if s.embedded != nil {
				s.drain(ctx)
			}
		}
		s.log.Debug("drained")
		s.cancelStages()
		s.stagesWG.Wait()
		if abort {
			s.ingestWG.Wait()
		}
		s.cancelWatch()
		_ = s.sources.Close()
		if s.embedded != nil {
			s.embedded.Close()
		} else if s.NC != nil {
			_ = s.NC.Drain()
		}
		if s.model != nil {
			_ = s.model.Close()
		}
		if s.tempDir != "" {
			_ = os.RemoveAll(s.tempDir)
		}
		s.log.Info("stopped")
	})
}

// drain waits until the detector and aggregator consumers have nothing pending or
// unacknowledged, so a graceful stop finishes the videos ingest completed.
func (s *Stack) drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var consumers [][2]string
	if s.roles.Detect {
		consumers = append(consumers, [2]string{laev1.StreamFaces, laev1.ConsumerDetector})
	}
	if s.roles.Aggregate {
		consumers = append(consumers, [2]string{laev1.StreamScores, laev1.ConsumerAggregator})
	}
	for len(consumers) > 0 {
		busy := false
		for _, c := range consumers {
			cons, err := s.JS.Consumer(ctx, c[0], c[1])
			if err != nil {
				continue // never created: nothing to drain
			}
			info, err := cons.Info(ctx)
			if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
				busy = true
			}
		}
		if !busy {
			return
		}
		select {
		case <-ctx.Done():
			s.log.Warn("shutdown: pipeline not drained in time; the rest resumes on the next start with the same store")
			return
		case <-t.C:
		}
	}
}

// Rescore scores the archived crops of the selected videos again with the configured model
// (`lae rescore`): the detector stage runs over one consumer per video, wired here like
// every other stage.
func Rescore(ctx context.Context, js jetstream.JetStream, d config.Detector, o rescore.Options) ([]rescore.Result, error) {
	m, err := LoadModel(d)
	if err != nil {
		return nil, err
	}
	defer func() { _ = m.Close() }()
	return rescore.Run(ctx, js, func(ctx context.Context, wo worker.Options) error {
		return worker.Run(ctx, js, m, wo)
	}, o)
}
