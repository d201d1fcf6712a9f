package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
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
	"github.com/lae-screening/lae/internal/metrics"
	"github.com/lae-screening/lae/internal/ops"
	"github.com/lae-screening/lae/internal/scanner"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// roleEnv is what every distributed role gets from runRole.
type roleEnv struct {
	cfg     config.Config
	log     *zap.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	ops     *ops.Server
	metrics *metrics.Metrics
}

// runRole wires config, logging, NATS, the operations endpoint and signals around a role's
// run loop. The loop must return once ctx ends and its in-flight work is finished.
func runRole(ctx context.Context, name string, args []string, run func(ctx context.Context, env *roleEnv) error) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfgPath := fs.String("config", os.Getenv("LAE_CONFIG"), "configuration file (YAML; env LAE_CONFIG); LAE_<SECTION>_<FIELD> variables override it")
	natsURL := fs.String("nats", "", "NATS server URLs, comma-separated (overrides config nats.urls)")
	httpAddr := fs.String("http", "", "operations endpoint address for /metrics, /healthz, /readyz (overrides config http.addr)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lae %s [flags]\n\nflags:\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *natsURL != "" {
		cfg.NATS.URLs = splitList(*natsURL)
	}
	if *httpAddr != "" {
		cfg.HTTP.Addr = *httpAddr
	}
	log, err := ops.NewLogger(cfg.Log)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("role", name))
	routeFFmpegLog(log.Named("ffmpeg"))

	env := &roleEnv{cfg: cfg, log: log, ops: ops.NewServer()}
	env.metrics = metrics.New(env.ops.Registry)
	if err := env.ops.Start(cfg.HTTP.Addr); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = env.ops.Shutdown(sctx)
	}()
	env.nc, err = ops.Connect(cfg.NATS, "lae-"+name, log)
	if err != nil {
		return err
	}
	defer env.nc.Close()
	env.ops.AddReadyCheck("nats", ops.NATSReady(env.nc))
	if env.js, err = jetstream.New(env.nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = laev1.Provision(pctx, env.js, retention(cfg.Retention))
	cancel()
	if err != nil {
		return err
	}
	log.Info("started", zap.Strings("nats", cfg.NATS.URLs), zap.String("http", env.ops.Addr()))
	err = run(ctx, env)
	log.Info("stopped", zap.Error(err))
	return err
}

func retention(r config.Retention) laev1.Retention {
	return laev1.Retention{FacesMaxAge: r.FacesMaxAge, FacesMaxBytes: r.FacesMaxBytes, FramesMaxAge: r.FramesMaxAge,
		FramesMaxBytes: r.FramesMaxBytes, Replicas: r.Replicas}
}

// ingestCmd answers submissions and ingests videos from the work queue.
func ingestCmd(ctx context.Context, args []string) error {
	return runRole(ctx, "ingest", args, func(ctx context.Context, env *roleEnv) error {
		c := env.cfg.Ingest
		go env.metrics.WatchConsumer(ctx, env.js, laev1.StreamIngest, laev1.ConsumerIngest, 5*time.Second)
		errc := make(chan error, 1)
		go func() { errc <- submit.Serve(ctx, env.nc, env.js, env.log.Named("submit")) }()
		err := ingestworker.Run(ctx, env.js, ingestworker.Options{
			Concurrency: c.Concurrency, DefaultSampleFPS: c.SampleFPS, ShutdownTimeout: env.cfg.ShutdownTimeout,
			Pipeline: pipeline.Options{MaxDuration: c.MaxDuration, FaceModel: c.FaceModel, MinEyePx: c.MinEyePx,
				Source: source.Options{OpenTimeout: c.OpenTimeout, ReadTimeout: c.OpenTimeout}},
			Logger: env.log,
			Hooks: ingestworker.Hooks{
				Done: func(_ string, e *laev1.EndOfStream, err error) {
					env.metrics.IngestDone(err == nil, e.GetFramesDecoded(), e.GetFramesSampled(), e.GetFaces(), e.GetCropsPublished())
				},
				Error: env.metrics.StageErrors("ingest"),
			},
		})
		if serr := <-errc; err == nil {
			err = serr
		}
		return err
	})
}

// detectCmd runs detector workers on the shared crop consumer.
func detectCmd(ctx context.Context, args []string) error {
	return runRole(ctx, "detect", args, func(ctx context.Context, env *roleEnv) error {
		c := env.cfg.Detector
		path := c.Model
		if path == "" {
			path = scanner.DefaultModelPath()
		}
		m, err := model.Load(model.Options{Path: path, LibPath: c.ORTLib, Provider: c.Provider, MaxBatch: c.BatchSize})
		if err != nil {
			return fmt.Errorf("load model: %w", err)
		}
		defer m.Close()
		md := m.Metadata()
		env.log.Info("model loaded", zap.String("model", md.Name), zap.String("version", md.Version), zap.String("provider", m.Provider()))
		env.ops.AddReadyCheck("model", func() error { return nil })
		go env.metrics.WatchConsumer(ctx, env.js, laev1.StreamFaces, laev1.ConsumerDetector, 5*time.Second)
		mt := env.metrics
		return worker.Run(ctx, env.js, m, worker.Options{
			BatchSize: c.BatchSize, BatchTimeout: c.BatchTimeout, Workers: c.Workers, Logger: env.log,
			Hooks: worker.Hooks{
				Batch:     mt.Batch,
				Malformed: func(reason string) { mt.Error("detector", "malformed_crop") },
				Failed:    func(stage string, n int, err error) { mt.Errors.WithLabelValues("detector", stage).Add(float64(n)) },
			},
		})
	})
}

// aggregateCmd turns scores into verdicts.
func aggregateCmd(ctx context.Context, args []string) error {
	return runRole(ctx, "aggregate", args, func(ctx context.Context, env *roleEnv) error {
		c := env.cfg.Aggregator
		threshold, name := c.Threshold, ""
		if threshold < 0 {
			card := c.ModelCard
			if card == "" {
				card = model.CardPath(scanner.DefaultModelPath())
			}
			info, err := model.ReadCardInfo(card)
			if err != nil {
				return fmt.Errorf("threshold: %w", err)
			}
			threshold, name = info.Threshold, info.Name
		}
		env.log.Info("verdict threshold", zap.Float64("threshold", threshold), zap.String("rule", c.Rule))
		go env.metrics.WatchConsumer(ctx, env.js, laev1.StreamScores, laev1.ConsumerAggregator, 5*time.Second)
		return service.Run(ctx, env.js, service.Options{
			Rule: c.Rule, TopK: c.TopK, Threshold: threshold, EvidenceFrames: c.EvidenceFrames, Model: name,
			RollingEvery: c.RollingEvery, Logger: env.log,
			Hooks: service.Hooks{
				Verdict: func(v *laev1.Verdict) { env.metrics.Verdict(v.Verdict) },
				Error:   env.metrics.StageErrors("aggregator"),
			},
		})
	})
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
