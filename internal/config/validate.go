package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/lae-screening/lae/aggregator/verdict"
	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/ingest/faces"
	"github.com/lae-screening/lae/ingest/source"
)

// Roles says which stages a process runs: Validate checks only what they use (an aggregator
// needs no ONNX Runtime, an ingest no model).
type Roles struct {
	Ingest, Detect, Aggregate bool
	// Embedded runs the nats-server in-process (scan, serve) instead of connecting to URLs.
	Embedded bool
}

// AllRoles is every stage on an embedded server: `lae scan` and `lae serve`.
var AllRoles = Roles{Ingest: true, Detect: true, Aggregate: true, Embedded: true}

// UsageError is a configuration or command-line mistake: the command prints it on one line
// and exits 2, before anything starts.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// Validate reports the first unusable setting as a UsageError naming its flag and config key.
// It checks values, that files exist, and that the ports the process would listen on are
// free, so that a mistake fails in a second instead of after (or instead of) starting stages.
func (c Config) Validate(r Roles) error {
	checks := []func() error{
		func() error { return logCheck(c.Log) },
		func() error { return c.checkNATS(r) },
		func() error { return checkListen("--http", "http.addr", c.HTTP.Addr) },
		func() error { return positive("--shutdown-timeout", "shutdown_timeout", c.ShutdownTimeout) },
		func() error {
			if c.Serve.KeepUploads < 0 {
				return bad("--keep-uploads", "serve.keep_uploads", c.Serve.KeepUploads, "must be >= 0")
			}
			return nil
		},
		c.Serve.check,
	}
	if r.Ingest {
		checks = append(checks, c.checkIngest, c.Sources.check)
	}
	if r.Detect {
		checks = append(checks, c.checkDetector)
	}
	if r.Aggregate {
		checks = append(checks, c.checkAggregator)
	}
	for _, f := range checks {
		if err := f(); err != nil {
			return UsageError{err}
		}
	}
	return nil
}

func bad(flag, key string, v any, why string) error {
	if flag == "" {
		return fmt.Errorf("%s %v: %s", key, v, why)
	}
	return fmt.Errorf("%s %v (config %s): %s", flag, v, key, why)
}

func logCheck(l Log) error {
	if _, err := zapcore.ParseLevel(l.Level); err != nil {
		return bad("--log-level", "log.level", l.Level, "want debug, info, warn or error")
	}
	if l.Format != "json" && l.Format != "console" {
		return bad("--log-format", "log.format", l.Format, "want json or console")
	}
	return nil
}

func (c Config) checkNATS(r Roles) error {
	if !r.Embedded {
		if len(c.NATS.URLs) == 0 {
			return bad("--nats", "nats.urls", "[]", "give at least one server URL")
		}
		return nil
	}
	p := c.NATS.ListenPort
	if p < -1 || p > 65535 {
		return bad("--nats-port", "nats.listen_port", p, "want 0 (in-process only), -1 (a free port) or 1-65535")
	}
	if p <= 0 {
		return nil
	}
	return checkListen("--nats-port", "nats.listen_port", net.JoinHostPort(c.NATS.ListenHost, strconv.Itoa(p)))
}

// checkListen tries the address: a port in use is a usage error now rather than a failure
// after the model is loaded.
func checkListen(flag, key, addr string) error {
	if addr == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(addr); err != nil {
		return bad(flag, key, addr, "want host:port")
	} else if port == "0" {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		var se *os.SyscallError
		why := err.Error()
		if errors.As(err, &se) {
			why = se.Err.Error()
		}
		return bad(flag, key, addr, "cannot listen: "+why)
	}
	return l.Close()
}

func (c Config) checkIngest() error {
	in := c.Ingest
	switch {
	case math.IsNaN(in.SampleFPS) || in.SampleFPS < 0 || in.SampleFPS > 1000:
		return bad("--fps", "ingest.sample_fps", in.SampleFPS, "want 0 (every frame) to 1000")
	case in.MaxDuration < 0:
		return bad("--max-duration", "ingest.max_duration", in.MaxDuration, "must be >= 0 (0 = whole source)")
	case math.IsNaN(in.MinEyePx) || in.MinEyePx < 0:
		return bad("--min-eye-px", "ingest.min_eye_px", in.MinEyePx, "must be >= 0 (0 = score every face)")
	case in.Concurrency < 1:
		return bad("--ingest-concurrency", "ingest.concurrency", in.Concurrency, "must be >= 1")
	}
	if err := positive("--open-timeout", "ingest.open_timeout", in.OpenTimeout); err != nil {
		return err
	}
	builtin := []string{"", faces.SpecYuNet, faces.SpecHaarAlt, faces.SpecHaar, faces.SpecLBP}
	if !slices.Contains(builtin, in.FaceModel) {
		if err := readable(in.FaceModel); err != nil {
			return bad("--face-model", "ingest.face_model", in.FaceModel, "want yunet, haar-alt, haar, lbp or a YuNet .onnx file: "+err.Error())
		}
	}
	return nil
}

// check validates the source policy: on or off, known network schemes, CIDRs that parse.
func (s Sources) check() error {
	if s.Policy != PolicyOn && s.Policy != PolicyOff {
		return bad("", "sources.policy", s.Policy, "want on or off")
	}
	for _, sc := range s.AllowedSchemes {
		if !slices.Contains(source.NetworkSchemes, strings.ToLower(sc)) {
			return bad("", "sources.allowed_schemes", sc, "want any of "+strings.Join(source.NetworkSchemes, ", ")+
				" (local files are governed by serve.allow_local_paths)")
		}
	}
	if _, err := s.Prefixes(); err != nil {
		return err
	}
	return nil
}

// Prefixes parses AllowCIDRs; a bare address stands for itself (/32, /128). The error names
// the key and the bad entry.
func (s Sources) Prefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(s.AllowCIDRs))
	for _, v := range s.AllowCIDRs {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil || a.Zone() != "" {
				return nil, bad("", "sources.allow_cidrs", v, "not a CIDR (want e.g. 10.20.0.0/16 or 127.0.0.0/8)")
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c Config) checkDetector() error {
	d := c.Detector
	if !slices.Contains([]string{model.ProviderCPU, model.ProviderCUDA, model.ProviderTensorRT}, d.Provider) {
		return bad("--provider", "detector.provider", d.Provider, "want cpu, cuda or tensorrt")
	}
	switch {
	case d.BatchSize < 0:
		return bad("--batch-size", "detector.batch_size", d.BatchSize, "must be >= 0 (0 = by provider)")
	case d.BatchTimeout < 0:
		return bad("--batch-timeout", "detector.batch_timeout", d.BatchTimeout, "must be >= 0")
	case d.Workers < 1:
		return bad("", "detector.workers", d.Workers, "must be >= 1")
	}
	if err := readable(model.PathOrDefault(d.Model)); err != nil {
		return bad("--model", "detector.model", model.PathOrDefault(d.Model), err.Error())
	}
	if d.ORTLib != "" {
		if err := readable(d.ORTLib); err != nil {
			return bad("--ort-lib", "detector.ort_lib", d.ORTLib, err.Error())
		}
	}
	return nil
}

// ValidateDetector checks the detector settings alone (`lae rescore` loads the model without
// a stack), as a UsageError.
func (c Config) ValidateDetector() error {
	if err := c.checkDetector(); err != nil {
		return UsageError{err}
	}
	return nil
}

func (c Config) checkAggregator() error {
	a := c.Aggregator
	if a.Rule != "" && !slices.Contains(verdict.Rules(), a.Rule) {
		return bad("--rule", "aggregator.rule", a.Rule, "want one of "+strings.Join(verdict.Rules(), ", "))
	}
	switch {
	case a.TopK < 0:
		return bad("--topk", "aggregator.topk", a.TopK, "must be >= 0 (0 = the rule's default)")
	case math.IsNaN(a.Threshold) || a.Threshold < 0 || a.Threshold > 1:
		return bad("--threshold", "aggregator.threshold", a.Threshold, "want a score in (0,1], or 0 for the model card's calibrated threshold")
	case a.EvidenceFrames < 0:
		return bad("--evidence-frames", "aggregator.evidence_frames", a.EvidenceFrames, "must be >= 0")
	case a.RollingEvery < 0:
		return bad("--rolling", "aggregator.rolling_every", a.RollingEvery, "must be >= 0 (0 = no rolling verdicts)")
	}
	if _, err := model.ResolveCard(c.Detector.Model, a.Threshold); err != nil {
		return bad("--model", "detector.model", model.PathOrDefault(c.Detector.Model), err.Error())
	}
	return nil
}

func positive(flag, key string, d time.Duration) error {
	if d <= 0 {
		return bad(flag, key, d, "must be > 0")
	}
	return nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}

// ServeRoles is what `lae serve` runs: every stage on an embedded server, or with
// serve.api_only none, on the NATS of nats.urls.
func (c Config) ServeRoles() Roles {
	if c.Serve.APIOnly {
		return Roles{}
	}
	return AllRoles
}
