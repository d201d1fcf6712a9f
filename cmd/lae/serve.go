package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/ops"
	"github.com/lae-screening/lae/internal/scanner"
	"github.com/lae-screening/lae/internal/serve"
)

// serveCmd runs the all-in-one server: embedded NATS on a port, every pipeline stage, the
// HTTP API and the live page.
func serveCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lae serve [flags]\n\nRuns every stage in one process with an embedded NATS server that external\n"+
			"`lae submit` and `lae watch` clients can reach, an HTTP API and a live page.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		natsHost    = fs.String("nats-host", "127.0.0.1", "address the embedded NATS server listens on")
		natsPort    = fs.Int("nats-port", 4222, "NATS client port (0 = no TCP listener, -1 = a free port)")
		httpAddr    = fs.String("http", "127.0.0.1:8080", "HTTP address of the API, the live page and /metrics, /healthz, /readyz")
		store       = fs.String("store", "", "directory for JetStream data and uploads (default: a temporary directory removed on exit)")
		modelPath   = fs.String("model", "", "LAE ONNX model (default: the shipped detector/models/lae-v2.onnx)")
		ortLib      = fs.String("ort-lib", os.Getenv("LAE_ORT_LIB"), "ONNX Runtime shared library (env LAE_ORT_LIB; default .cache/ort/libonnxruntime.so.1)")
		provider    = fs.String("provider", "cpu", "ONNX Runtime execution provider: cpu, cuda or tensorrt")
		fps         = fs.Float64("fps", 5, "default frames per second to sample (0 = every frame); a submission may set its own")
		maxDur      = fs.Duration("max-duration", 0, "stop each input after this much media time (0 = no limit)")
		faceModel   = fs.String("face-model", "", "face detector: yunet (embedded), haar-alt, haar, lbp, or a YuNet .onnx file (default: yunet)")
		minEyePx    = fs.Float64("min-eye-px", pipeline.DefaultMinEyePx, "faces whose eyes are closer than this many source pixels are too small to judge: counted (faces_too_small), not scored (0 = score every face)")
		rule        = fs.String("rule", "", "verdict rule: mean, topk_mean or max_face_mean (default: the aggregator's)")
		topK        = fs.Int("topk", 0, "k for the topk_mean rule (0 = default)")
		threshold   = fs.Float64("threshold", 0, "decision threshold on the video score (0 = the model's calibrated one)")
		evFrames    = fs.Int("evidence-frames", 3, "number of top frames to keep as evidence")
		batch       = fs.Int("batch-size", 0, "most crops per inference batch (0 = default)")
		concurrency = fs.Int("ingest-concurrency", 2, "videos ingested at once")
		rolling     = fs.Duration("rolling", 2*time.Second, "interval of rolling verdicts of scans in progress (negative = none)")
		openTimeout = fs.Duration("open-timeout", 15*time.Second, "bound on opening a network source and on a stalled read")
		allowLocal  = fs.Bool("allow-local-paths", false, "accept local file paths in HTTP submissions (uploads are always accepted)")
		maxUpload   = fs.Int64("max-upload", 2<<30, "largest accepted upload, in bytes")
		shutdown    = fs.Duration("shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long videos in hand may run and the pipeline may drain")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn, error")
		logFormat   = fs.String("log-format", "console", "log format: console or json")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log, err := ops.NewLogger(config.Log{Level: *logLevel, Format: *logFormat})
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	routeFFmpegLog(log.Named("ffmpeg"))
	if *modelPath == "" {
		*modelPath = scanner.DefaultModelPath()
	}
	return serve.Run(ctx, serve.Options{
		NATSHost: *natsHost, NATSPort: *natsPort, HTTPAddr: *httpAddr, StoreDir: *store,
		Model: *modelPath, ORTLib: *ortLib, Provider: *provider,
		SampleFPS: *fps, MaxDuration: *maxDur, FaceModel: *faceModel, MinEyePx: *minEyePx, OpenTimeout: *openTimeout,
		IngestConcurrency: *concurrency, Rule: *rule, TopK: *topK, Threshold: *threshold, EvidenceFrames: *evFrames,
		BatchSize: *batch, RollingEvery: *rolling, AllowLocalPaths: *allowLocal, MaxUploadBytes: *maxUpload,
		ShutdownTimeout: *shutdown, Logger: log,
	}, func(s *serve.Server) {
		log.Info("lae serve ready", zap.String("page", "http://"+s.HTTPAddr()+"/"), zap.String("nats", s.NATSURL()))
	})
}
