// Package config is the one configuration of every lae role: a YAML file plus environment
// overrides, with documented defaults. Any field can be overridden by LAE_<SECTION>_<FIELD>
// (upper-case yaml names), e.g. LAE_NATS_URLS="nats://a:4222,nats://b:4222",
// LAE_DETECTOR_BATCH_SIZE=32, LAE_LOG_LEVEL=debug.
package config

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// NATS says how to reach the NATS deployment.
type NATS struct {
	// URLs of the servers (a cluster's seed list).
	URLs []string `yaml:"urls"`
	// Creds is a NATS credentials file (JWT + nkey seed), for operator/account deployments.
	Creds string `yaml:"creds"`
	// NKey is an nkey seed file.
	NKey     string `yaml:"nkey"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	// TLS: CA to verify the servers, and a client certificate for mutual TLS.
	TLSCA   string `yaml:"tls_ca"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Name is the connection name shown by the server (default: the role).
	Name string `yaml:"name"`
}

// HTTP is the operations endpoint: /metrics, /healthz, /readyz (and the API for serve).
type HTTP struct {
	Addr string `yaml:"addr"`
}

// Log configures zap.
type Log struct {
	// Level: debug, info, warn, error.
	Level string `yaml:"level"`
	// Format: json (production) or console.
	Format string `yaml:"format"`
}

// Ingest configures the ingest role.
type Ingest struct {
	SampleFPS   float64       `yaml:"sample_fps"`
	MaxDuration time.Duration `yaml:"max_duration"`
	FaceModel   string        `yaml:"face_model"`
	// MinEyePx is the tiny-face limit: faces whose eyes are closer than this many source
	// pixels are counted (verdict faces_too_small), not scored; 0 keeps every face. Default
	// 16 (pipeline.DefaultMinEyePx; not imported here to keep config free of OpenCV).
	MinEyePx float64 `yaml:"min_eye_px"`
	// Concurrency is how many videos one ingest process decodes at once.
	Concurrency int           `yaml:"concurrency"`
	OpenTimeout time.Duration `yaml:"open_timeout"`
}

// Detector configures the detector role.
type Detector struct {
	Model        string        `yaml:"model"`
	ORTLib       string        `yaml:"ort_lib"`
	Provider     string        `yaml:"provider"`
	BatchSize    int           `yaml:"batch_size"`
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	Workers      int           `yaml:"workers"`
}

// Aggregator configures the aggregator role.
type Aggregator struct {
	Rule string `yaml:"rule"`
	TopK int    `yaml:"topk"`
	// Threshold < 0 takes the model card's calibrated threshold.
	Threshold      float64 `yaml:"threshold"`
	EvidenceFrames int     `yaml:"evidence_frames"`
	// ModelCard is read for the threshold when Threshold < 0.
	ModelCard string `yaml:"model_card"`
	// RollingEvery publishes a rolling verdict (final=false) at most this often for a video
	// still being ingested (live streams): the rule over every score so far. 0 = off.
	RollingEvery time.Duration `yaml:"rolling_every"`
}

// Retention bounds the streams (the crop archive that rescoring replays in particular).
type Retention struct {
	FacesMaxAge    time.Duration `yaml:"faces_max_age"`
	FacesMaxBytes  int64         `yaml:"faces_max_bytes"`
	FramesMaxAge   time.Duration `yaml:"frames_max_age"`
	FramesMaxBytes int64         `yaml:"frames_max_bytes"`
	Replicas       int           `yaml:"replicas"`
}

// Config is the whole configuration.
type Config struct {
	NATS       NATS       `yaml:"nats"`
	HTTP       HTTP       `yaml:"http"`
	Log        Log        `yaml:"log"`
	Ingest     Ingest     `yaml:"ingest"`
	Detector   Detector   `yaml:"detector"`
	Aggregator Aggregator `yaml:"aggregator"`
	Retention  Retention  `yaml:"retention"`
	// ShutdownTimeout bounds the drain of in-flight work on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Default is the configuration a role runs with when nothing is set.
func Default() Config {
	return Config{
		NATS:            NATS{URLs: []string{"nats://127.0.0.1:4222"}},
		HTTP:            HTTP{Addr: ":9090"},
		Log:             Log{Level: "info", Format: "json"},
		Ingest:          Ingest{SampleFPS: 5, MinEyePx: 16, Concurrency: 2, OpenTimeout: 15 * time.Second},
		Detector:        Detector{Provider: "cpu", BatchSize: 16, BatchTimeout: 20 * time.Millisecond, Workers: 1},
		Aggregator:      Aggregator{Rule: "", Threshold: -1, EvidenceFrames: 3, RollingEvery: 10 * time.Second},
		ShutdownTimeout: 30 * time.Second,
	}
}

// Load reads the defaults, then the YAML file (when path is not empty), then the environment.
func Load(path string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config %s: %w", path, err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && err.Error() != "EOF" {
			return c, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	if err := applyEnv(reflect.ValueOf(&c).Elem(), "LAE", os.LookupEnv); err != nil {
		return c, err
	}
	return c, nil
}

// EnvNames lists every environment variable Load honours (for documentation and --help).
func EnvNames() []string {
	var names []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := prefix + "_" + strings.ToUpper(strings.Split(f.Tag.Get("yaml"), ",")[0])
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, name)
				continue
			}
			names = append(names, name)
		}
	}
	walk(reflect.TypeOf(Config{}), "LAE")
	return names
}

func applyEnv(v reflect.Value, prefix string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := prefix + "_" + strings.ToUpper(strings.Split(f.Tag.Get("yaml"), ",")[0])
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := applyEnv(fv, name, lookup); err != nil {
				return err
			}
			continue
		}
		s, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setValue(fv, s); err != nil {
			return fmt.Errorf("environment %s=%q: %w", name, s, err)
		}
	}
	return nil
}

func setValue(fv reflect.Value, s string) error {
	switch fv.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	case []string:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		fv.Set(reflect.ValueOf(parts))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		fv.SetFloat(x)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	default:
		return fmt.Errorf("unsupported field kind %s", fv.Kind())
	}
	return nil
}
