// Package scanner runs the whole pipeline on one machine: an embedded nats-server with the
// production stream configs, detector workers and the aggregator as goroutines, and ingest
// per input. `lae scan` is a thin CLI over it; tests use it for the end-to-end path.
package scanner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/aggregator/service"
	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/detector/worker"
	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/ingest/source"
	"github.com/lae-screening/lae/internal/natsembed"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Options configures a Scanner. Zero values take the documented defaults.
type Options struct {
	// Model is the LAE ONNX file (default: the shipped detector/models/lae-v2.onnx).
	Model string
	// ORTLib is the ONNX Runtime shared library (default: LAE_ORT_LIB, then .cache/ort).
	ORTLib string
	// Provider is the execution provider: cpu (default), cuda or tensorrt.
	Provider string
	// SampleFPS is the sampling rate; 0 means every frame. Default 5 when unset (use
	// SampleFPSSet to ask for 0).
	SampleFPS    float64
	SampleFPSSet bool
	MaxDuration  time.Duration
	// FaceModel is a faces.Open spec: yunet, haar-alt, haar, lbp, or a YuNet .onnx path ("" = yunet).
	FaceModel string
	// MinEyePx is the tiny-face limit (pipeline.Options.MinEyePx): faces whose eyes are closer
	// than this many source pixels are counted in the verdict's faces_too_small, not scored.
	// Default pipeline.DefaultMinEyePx (16) when unset (use MinEyePxSet to ask for 0, every
	// face scored).
	MinEyePx    float64
	MinEyePxSet bool
	// Rule, TopK and Threshold configure the verdict; Threshold < 0 uses the model card's.
	Rule      string
	TopK      int
	Threshold float64
	// EvidenceFrames is how many top frames get evidence (default 3).
	EvidenceFrames int
	// BatchSize and BatchTimeout configure the detector's batching.
	BatchSize    int
	BatchTimeout time.Duration
	// OpenTimeout bounds opening a source (network URLs); default 15 s.
	OpenTimeout time.Duration
	// VerdictTimeout bounds the wait for a verdict after ingest ended (default 2 min).
	VerdictTimeout time.Duration
	// StoreDir is the JetStream store ("" = a temporary directory removed on Close).
	StoreDir string
	Logger   *zap.Logger
}

// Progress is what a scan has done so far, for progress displays.
type Progress = pipeline.Progress

// Scanner owns the embedded server and the detector and aggregator goroutines.
type Scanner struct {
	o      Options
	srv    *natsembed.Server
	model  *model.Model
	kv     jetstream.KeyValue
	obj    jetstream.ObjectStore
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	bgErr  error
}

// DefaultModelPath finds the shipped model: relative to the working directory or the
// executable, walking up to the repository root.
func DefaultModelPath() string {
	const rel = "detector/models/lae-v2.onnx"
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			p := filepath.Join(d, rel)
			if _, err := os.Stat(p); err == nil {
				return p
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return rel
}

// New loads the model, starts the embedded server, the detector workers and the aggregator.
func New(ctx context.Context, o Options) (*Scanner, error) {
	if o.Model == "" {
		o.Model = DefaultModelPath()
	}
	if !o.SampleFPSSet && o.SampleFPS == 0 {
		o.SampleFPS = 5
	}
	if !o.MinEyePxSet && o.MinEyePx == 0 {
		o.MinEyePx = pipeline.DefaultMinEyePx
	}
	if o.VerdictTimeout == 0 {
		o.VerdictTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	m, err := model.Load(model.Options{Path: o.Model, LibPath: o.ORTLib, Provider: o.Provider, MaxBatch: o.BatchSize})
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	md := m.Metadata()
	if o.Threshold < 0 || (o.Threshold == 0 && md.Threshold > 0) {
		o.Threshold = md.Threshold
	}
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: o.StoreDir})
	if err != nil {
		_ = m.Close()
		return nil, err
	}
	s := &Scanner{o: o, srv: srv, model: m}
	if s.kv, err = srv.JS.KeyValue(ctx, laev1.BucketVerdicts); err != nil {
		s.Close()
		return nil, fmt.Errorf("open verdicts bucket: %w", err)
	}
	if s.obj, err = srv.JS.ObjectStore(ctx, laev1.BucketEvidence); err != nil {
		s.Close()
		return nil, fmt.Errorf("open evidence store: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.goRun("detector", func() error {
		return worker.Run(runCtx, srv.JS, m, worker.Options{
			BatchSize: o.BatchSize, BatchTimeout: o.BatchTimeout, Logger: o.Logger.Named("detector"),
		})
	})
	s.goRun("aggregator", func() error {
		return service.Run(runCtx, srv.JS, service.Options{
			Rule: o.Rule, TopK: o.TopK, Threshold: o.Threshold, EvidenceFrames: o.EvidenceFrames,
			Model: md.Name, Logger: o.Logger.Named("aggregator"),
		})
	})
	return s, nil
}

func (s *Scanner) goRun(name string, f func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(); err != nil && !errors.Is(err, context.Canceled) {
			s.o.Logger.Error("stage stopped", zap.String("stage", name), zap.Error(err))
			s.errMu.Lock()
			s.bgErr = fmt.Errorf("%s: %w", name, err)
			s.errMu.Unlock()
		}
	}()
}

func (s *Scanner) stageErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.bgErr
}

// ModelInfo describes the loaded model.
func (s *Scanner) ModelInfo() model.Metadata { return s.model.Metadata() }

// Threshold is the decision threshold in use.
func (s *Scanner) Threshold() float64 { return s.o.Threshold }

// Scan ingests one input and waits for its verdict. A source that cannot be read yields a
// verdict "error" (with the reason), not a Go error: Go errors mean the scanner itself failed.
func (s *Scanner) Scan(ctx context.Context, input string, progress func(Progress)) (laev1.Verdict, error) {
	videoID := laev1.NewVideoID()
	watcher, err := s.kv.Watch(ctx, videoID, jetstream.UpdatesOnly())
	if err != nil {
		return laev1.Verdict{}, fmt.Errorf("watch verdict %s: %w", videoID, err)
	}
	defer func() { _ = watcher.Stop() }()

	_, ingestErr := pipeline.Run(ctx, s.srv.JS, videoID, input, pipeline.Options{
		SampleFPS: s.o.SampleFPS, MaxDuration: s.o.MaxDuration, FaceModel: s.o.FaceModel, MinEyePx: s.o.MinEyePx,
		Progress: progress, Logger: s.o.Logger.Named("ingest"),
		Source: sourceOptions(s.o),
	})
	if ingestErr != nil && ctx.Err() != nil {
		return laev1.Verdict{}, ctx.Err()
	}
	timer := time.NewTimer(s.o.VerdictTimeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return laev1.Verdict{}, ctx.Err()
		case <-timer.C:
			if err := s.stageErr(); err != nil {
				return laev1.Verdict{}, err
			}
			return laev1.Verdict{}, fmt.Errorf("no verdict for %s (%s) within %s", input, videoID, s.o.VerdictTimeout)
		case e, ok := <-watcher.Updates():
			if !ok {
				return laev1.Verdict{}, fmt.Errorf("verdict watch for %s closed", videoID)
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var v laev1.Verdict
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				return laev1.Verdict{}, fmt.Errorf("decode verdict %s: %w", videoID, err)
			}
			if !v.Final {
				continue
			}
			v.Input = input
			return v, nil
		}
	}
}

// EvidenceImages fetches the verdict's evidence images (JPEG) by name.
func (s *Scanner) EvidenceImages(ctx context.Context, v laev1.Verdict) (map[string][]byte, error) {
	images := map[string][]byte{}
	for _, ev := range v.Evidence {
		if ev.Image == "" {
			continue
		}
		b, err := s.obj.GetBytes(ctx, ev.Image)
		if err != nil {
			return images, fmt.Errorf("fetch evidence %s: %w", ev.Image, err)
		}
		images[ev.Image] = b
	}
	return images, nil
}

// WriteEvidence copies the verdict's evidence images into dir and returns the file paths, in
// evidence order.
func (s *Scanner) WriteEvidence(ctx context.Context, v laev1.Verdict, dir string) ([]string, error) {
	images, err := s.EvidenceImages(ctx, v)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("evidence dir %s: %w", dir, err)
	}
	var paths []string
	for _, ev := range v.Evidence {
		b, ok := images[ev.Image]
		if !ok {
			continue
		}
		p := filepath.Join(dir, strings.ReplaceAll(ev.Image, "/", "_"))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return paths, fmt.Errorf("write evidence %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// Settings describes how the scanner samples and detects, for reports.
func (s *Scanner) Settings() (sampleFPS float64, faceModel, modelPath string) {
	return s.o.SampleFPS, s.o.FaceModel, s.o.Model
}

// JetStream exposes the embedded server's JetStream context (tests inspect streams).
func (s *Scanner) JetStream() jetstream.JetStream { return s.srv.JS }

// Close stops the stages (they finish in-flight work), then the server.
func (s *Scanner) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.srv != nil {
		s.srv.Close()
	}
	if s.model != nil {
		_ = s.model.Close()
	}
}

func sourceOptions(o Options) source.Options {
	return source.Options{SampleFPS: o.SampleFPS, MaxDuration: o.MaxDuration, OpenTimeout: o.OpenTimeout, ReadTimeout: o.OpenTimeout}
}
