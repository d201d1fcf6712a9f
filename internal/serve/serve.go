// Package serve is `lae serve`: the whole pipeline in one process (embedded nats-server
// listening on a TCP port so that external `lae submit` and `lae watch` clients can use it,
// the submit responder, ingest, detector and aggregator workers) plus an HTTP API and a live
// web page over it.
//
// # HTTP API
//
//	POST /api/scans                       submit: a JSON laev1.SubmitRequest, or a multipart
//	                                      upload (field "file", optional fields sample_fps,
//	                                      max_duration_s, reference) -> 202 {"video_id": ...}
//	GET  /api/scans                       scans: finished ones from the verdicts KV bucket and the
//	                                      ones in progress, newest first (?limit=N, default 200)
//	GET  /api/scans/{id}                  the latest verdict JSON with "state": "done", or
//	                                      "state": "pending" (with the rolling verdict, if any)
//	                                      while the scan runs; 404 for an unknown id
//	GET  /api/scans/{id}/history          every final verdict revision
//	GET  /api/scans/{id}/evidence/{n}     the n-th (0-based) evidence image, JPEG
//	GET  /api/scans/{id}/report           the self-contained HTML report (?download=1 to save)
//	GET  /api/events                      Server-Sent Events: "scan" (progress) and "verdict"
//	GET  /metrics /healthz /readyz        operations (internal/ops)
//	GET  /                                the live page
//
// The verdict, evidence and report routes take ?revision=N for an earlier revision.
//
// Local file paths are not accepted in JSON submissions unless Options.AllowLocalPaths is set:
// the HTTP API must not let a caller make the server read arbitrary files. Uploads are stored
// under <store>/uploads/<video id>/ and submitted by path.
package serve

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/aggregator/service"
	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/detector/worker"
	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/ingest/submit"
	ingestworker "github.com/lae-screening/lae/ingest/worker"
	"github.com/lae-screening/lae/internal/metrics"
	"github.com/lae-screening/lae/internal/natsembed"
	"github.com/lae-screening/lae/internal/ops"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Options configures Start. Zero values take the documented defaults.
type Options struct {
	// NATSHost and NATSPort are where the embedded nats-server listens for external clients.
	// NATSPort 0 = no TCP listener (in-process only); -1 = a free port. NATSHost "" = 127.0.0.1.
	NATSHost string
	NATSPort int
	// HTTPAddr is the API and page address (default 127.0.0.1:8080; ":0" = a free port).
	HTTPAddr string
	// StoreDir holds JetStream's files and uploads; "" = a temporary directory removed on Close.
	StoreDir string
	// Retention of the provisioned streams (zero = the product defaults, on disk).
	Retention laev1.Retention

	// Model is the LAE ONNX file (required); ORTLib and Provider as in model.Options.
	Model, ORTLib, Provider string
	// SampleFPS is the sampling rate of submissions that do not give one (0 = every frame).
	SampleFPS float64
	// FaceModel is a faces.Open spec: yunet, haar-alt, haar, lbp, or a YuNet .onnx path ("" = yunet).
	FaceModel string
	// MaxDuration caps the media time ingested per video (0 = no limit).
	MaxDuration time.Duration
	// MinEyePx is ingest's tiny-face limit (pipeline.Options.MinEyePx): faces whose eyes are
	// closer than this many source pixels are counted, not scored. 0 keeps every face; `lae
	// serve` passes pipeline.DefaultMinEyePx unless told otherwise.
	MinEyePx float64
	// OpenTimeout bounds opening and reading a network source (default 15 s).
	OpenTimeout time.Duration
	// IngestConcurrency is how many videos are ingested at once (default 2).
	IngestConcurrency int
	// Rule, TopK, Threshold and EvidenceFrames configure verdicts as in service.Options;
	// Threshold <= 0 takes the model's calibrated threshold.
	Rule           string
	TopK           int
	Threshold      float64
	EvidenceFrames int
	// BatchSize and BatchTimeout configure the detector's batching.
	BatchSize    int
	BatchTimeout time.Duration
	// RollingEvery is how often a scan in progress gets a rolling verdict (default 2 s;
	// negative = never).
	RollingEvery time.Duration

	// AllowLocalPaths lets JSON submissions name files on this machine (off by default).
	AllowLocalPaths bool
	// MaxUploadBytes caps an upload (default 2 GiB).
	MaxUploadBytes int64
	// ShutdownTimeout bounds how long videos in hand may run, and how long the detector and
	// aggregator may drain, once the context ends (default 30 s).
	ShutdownTimeout time.Duration

	Logger *zap.Logger
}

// Server is a running `lae serve`.
type Server struct {
	o       Options
	log     *zap.Logger
	nats    *natsembed.Server
	model   *model.Model
	ops     *ops.Server
	metrics *metrics.Metrics
	kv      jetstream.KeyValue
	obj     jetstream.ObjectStore
	tracker *tracker
	hub     *hub
	tmpDir  string
	upDir   string

	// done is closed when shutdown starts: event streams end so the HTTP server can stop.
	done      chan struct{}
	closeOnce sync.Once

	cancelIngest, cancelStages, cancelWatch context.CancelFunc
	ingestWG, stagesWG, watchWG             sync.WaitGroup
	failed                                  chan error
}

// Start loads the model, starts the embedded server, the workers and the HTTP server.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	if o.Model == "" {
		return nil, errors.New("serve: no model given")
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:8080"
	}
	if o.NATSHost == "" {
		o.NATSHost = "127.0.0.1"
	}
	if o.MaxUploadBytes <= 0 {
		o.MaxUploadBytes = 2 << 30
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.RollingEvery == 0 {
		o.RollingEvery = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	s := &Server{o: o, log: o.Logger, done: make(chan struct{}), failed: make(chan error, 4),
		cancelIngest: func() {}, cancelStages: func() {}, cancelWatch: func() {}}
	defer func() {
		if err != nil {
			s.shutdown(context.Background())
		}
	}()

	store := o.StoreDir
	if store == "" {
		if s.tmpDir, err = os.MkdirTemp("", "lae-serve-"); err != nil {
			return nil, fmt.Errorf("serve: temp store: %w", err)
		}
		store = s.tmpDir
	}
	s.upDir = filepath.Join(store, "uploads")
	if err := os.MkdirAll(s.upDir, 0o755); err != nil {
		return nil, fmt.Errorf("serve: uploads dir: %w", err)
	}

	if s.model, err = model.Load(model.Options{Path: o.Model, LibPath: o.ORTLib, Provider: o.Provider, MaxBatch: o.BatchSize}); err != nil {
		return nil, fmt.Errorf("serve: load model: %w", err)
	}
	md := s.model.Metadata()
	if s.o.Threshold <= 0 {
		s.o.Threshold = md.Threshold
	}

	no := natsembed.Options{StoreDir: filepath.Join(store, "nats"), Retention: o.Retention}
	if o.NATSPort != 0 {
		no.Host, no.Port = o.NATSHost, o.NATSPort
	}
	if s.nats, err = natsembed.Start(ctx, no); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	js := s.nats.JS
	if s.kv, err = js.KeyValue(ctx, laev1.BucketVerdicts); err != nil {
		return nil, fmt.Errorf("serve: open verdicts bucket: %w", err)
	}
	if s.obj, err = js.ObjectStore(ctx, laev1.BucketEvidence); err != nil {
		return nil, fmt.Errorf("serve: open evidence store: %w", err)
	}

	s.ops = ops.NewServer()
	s.metrics = metrics.New(s.ops.Registry)
	s.ops.AddReadyCheck("nats", ops.NATSReady(s.nats.NC))
	s.hub = newHub()
	s.tracker = newTracker(s.hub)
	if err := s.startWatch(ctx); err != nil {
		return nil, err
	}
	s.startStages(md.Name)
	s.routes()
	if err := s.ops.Start(o.HTTPAddr); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	s.log.Info("serving", zap.String("http", s.ops.Addr()), zap.String("nats", s.NATSURL()),
		zap.String("model", md.Name), zap.String("model_version", md.Version), zap.Float64("threshold", s.o.Threshold))
	return s, nil
}

// startStages runs the submit responder and ingest (stopped first on shutdown), then the
// detector and aggregator (stopped once they have drained).
func (s *Server) startStages(modelName string) {
	o, js, nc := s.o, s.nats.JS, s.nats.NC
	stagesCtx, cancelStages := context.WithCancel(context.Background())
	ingestCtx, cancelIngest := context.WithCancel(context.Background())
	s.cancelStages, s.cancelIngest = cancelStages, cancelIngest
	mt := s.metrics
	s.goStage(&s.ingestWG, "submit", func() error { return submit.Serve(ingestCtx, nc, js, s.log.Named("submit")) })
	s.goStage(&s.ingestWG, "ingest", func() error {
		return ingestworker.Run(ingestCtx, js, ingestworker.Options{
			Concurrency: o.IngestConcurrency, DefaultSampleFPS: o.SampleFPS, ShutdownTimeout: o.ShutdownTimeout,
			Pipeline: pipeline.Options{MaxDuration: o.MaxDuration, FaceModel: o.FaceModel, MinEyePx: o.MinEyePx,
				Source: source.Options{OpenTimeout: o.OpenTimeout, ReadTimeout: o.OpenTimeout}},
			Logger: s.log.Named("ingest"),
			Hooks: ingestworker.Hooks{
				Done: func(_ string, e *laev1.EndOfStream, err error) {
					mt.IngestDone(err == nil, e.GetFramesDecoded(), e.GetFramesSampled(), e.GetFaces(), e.GetCropsPublished())
				},
				Error: mt.StageErrors("ingest"),
			},
		})
	})
	s.goStage(&s.stagesWG, "detector", func() error {
		return worker.Run(stagesCtx, js, s.model, worker.Options{
			BatchSize: o.BatchSize, BatchTimeout: o.BatchTimeout, Logger: s.log.Named("detector"),
			Hooks: worker.Hooks{
				Batch:     mt.Batch,
				Malformed: func(string) { mt.Error("detector", "malformed_crop") },
				Failed:    func(stage string, n int, _ error) { mt.Errors.WithLabelValues("detector", stage).Add(float64(n)) },
			},
		})
	})
	rolling := o.RollingEvery
	if rolling < 0 {
		rolling = 0
	}
	s.goStage(&s.stagesWG, "aggregator", func() error {
		return service.Run(stagesCtx, js, service.Options{
			Rule: o.Rule, TopK: o.TopK, Threshold: s.o.Threshold, EvidenceFrames: o.EvidenceFrames, Model: modelName,
			RollingEvery: rolling, Logger: s.log.Named("aggregator"),
			Hooks: service.Hooks{
				Verdict: func(v *laev1.Verdict) { mt.Verdict(v.Verdict) },
				Error:   mt.StageErrors("aggregator"),
			},
		})
	})
	for _, c := range [][2]string{{laev1.StreamIngest, laev1.ConsumerIngest}, {laev1.StreamFaces, laev1.ConsumerDetector},
		{laev1.StreamScores, laev1.ConsumerAggregator}} {
		go mt.WatchConsumer(stagesCtx, js, c[0], c[1], 5*time.Second)
	}
}

func (s *Server) goStage(wg *sync.WaitGroup, name string, f func() error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := f(); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("stage stopped", zap.String("stage", name), zap.Error(err))
			select {
			case s.failed <- fmt.Errorf("%s: %w", name, err):
			default:
			}
		}
	}()
}

// HTTPAddr is the address the HTTP server listens on.
func (s *Server) HTTPAddr() string { return s.ops.Addr() }

// NATSURL is the embedded server's client URL ("" when it does not listen).
func (s *Server) NATSURL() string {
	if s.o.NATSPort == 0 {
		return ""
	}
	return s.nats.ClientURL()
}

// JetStream is the embedded server's JetStream context (tests inspect streams).
func (s *Server) JetStream() jetstream.JetStream { return s.nats.JS }

// Failed delivers the error of a stage that stopped on its own.
func (s *Server) Failed() <-chan error { return s.failed }

// Run starts a server, serves until ctx ends or a stage fails, then shuts down gracefully.
func Run(ctx context.Context, o Options, started func(*Server)) error {
	s, err := Start(ctx, o)
	if err != nil {
		return err
	}
	if started != nil {
		started(s)
	}
	var stageErr error
	select {
	case <-ctx.Done():
	case stageErr = <-s.failed:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.o.ShutdownTimeout+10*time.Second)
	defer cancel()
	s.Shutdown(sctx)
	return stageErr
}

// Shutdown stops accepting work, lets the videos in hand finish (up to ShutdownTimeout), lets
// the detector and aggregator drain what ingest published, then stops everything. It is
// idempotent.
func (s *Server) Shutdown(ctx context.Context) { s.shutdown(ctx) }

func (s *Server) shutdown(ctx context.Context) {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.ops != nil {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := s.ops.Shutdown(hctx); err != nil {
				s.log.Warn("http shutdown", zap.Error(err))
			}
			cancel()
		}
		s.cancelIngest()
		s.ingestWG.Wait()
		if s.nats != nil {
			s.drain(ctx)
		}
		s.cancelStages()
		s.stagesWG.Wait()
		s.cancelWatch()
		s.watchWG.Wait()
		if s.nats != nil {
			s.nats.Close()
		}
		if s.model != nil {
			_ = s.model.Close()
		}
		if s.tmpDir != "" {
			_ = os.RemoveAll(s.tmpDir)
		}
		s.log.Info("stopped")
	})
}

// drain waits, up to ShutdownTimeout, until the detector and aggregator have no pending or
// unacknowledged messages, so that a graceful stop finishes the scans ingest completed.
func (s *Server) drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.o.ShutdownTimeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		busy := false
		for _, c := range [][2]string{{laev1.StreamFaces, laev1.ConsumerDetector}, {laev1.StreamScores, laev1.ConsumerAggregator}} {
			cons, err := s.nats.JS.Consumer(ctx, c[0], c[1])
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
