// Package config is the one configuration of every lae role: a YAML file plus environment
// overrides, with documented defaults. Any field can be overridden by LAE_<SECTION>_<FIELD>
// (upper-case yaml names), e.g. LAE_NATS_URLS="nats://a:4222,nats://b:4222",
// LAE_DETECTOR_BATCH_SIZE=32, LAE_LOG_LEVEL=debug.
package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lae-screening/lae/ingest/source"
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
	// ListenHost and ListenPort are where the nats-server embedded by `lae scan` and `lae
	// serve` listens for outside clients (`lae submit`, `lae watch`): port 0 = in-process
	// only, -1 = a free port. The distributed roles connect to URLs instead.
	ListenHost string `yaml:"listen_host"`
	ListenPort int    `yaml:"listen_port"`
}

// HTTP is the operations endpoint: /metrics, /healthz, /readyz (and the API for serve).
type HTTP struct {
	// Addr is host:port; "" = no endpoint (`lae scan`), ":0" = a free port.
	Addr string `yaml:"addr"`
}

// Serve configures what `lae serve` adds over the stack: its HTTP API's limits.
type Serve struct {
	// APIOnly runs the API, the page and webhooks on the NATS of nats.urls, without any stage:
	// the deployment's ingest, detect and aggregate roles do the work. Off, lae serve runs
	// every stage itself on an embedded server.
	APIOnly bool `yaml:"api_only"`
	// AllowLocalPaths lets JSON submissions name files on the server's machine (off: an HTTP
	// caller must not make the server read its files; uploads are always accepted).
	AllowLocalPaths bool `yaml:"allow_local_paths"`
	// MaxUpload is the largest accepted upload in bytes.
	MaxUpload int64 `yaml:"max_upload"`
	// KeepUploads is how long an uploaded file stays on disk after its scan's final verdict
	// (0 = deleted at once): the verdict, evidence and report do not need it, and uploads are
	// what fills a server's disk.
	KeepUploads time.Duration `yaml:"keep_uploads"`
	// TokensFile holds the API's bearer tokens, one per line ('#' starts a comment). Tokens
	// (LAE_SERVE_TOKENS, comma-separated) adds more, for deployments that inject secrets as
	// environment variables. With none, the API is open: allowed on a loopback address only,
	// unless InsecureNoAuth says an open API elsewhere is meant.
	TokensFile string   `yaml:"tokens_file"`
	Tokens     []string `yaml:"tokens"`
	// InsecureNoAuth lets lae serve listen on a non-loopback address without tokens.
	InsecureNoAuth bool `yaml:"insecure_no_auth"`
	// MetricsAuth puts /metrics behind the tokens too (off: scrapers need no token; /healthz
	// and /readyz are always open, for probes).
	MetricsAuth bool `yaml:"metrics_auth"`
	// WebhookURL receives every final verdict (besides a submission's own webhook_url).
	WebhookURL string `yaml:"webhook_url"`
	// WebhookSecret (or the first line of WebhookSecretFile) keys the HMAC-SHA256 signature
	// of webhook deliveries; webhooks need one.
	WebhookSecret     string `yaml:"webhook_secret"`
	WebhookSecretFile string `yaml:"webhook_secret_file"`
	// WebhookAttempts bounds the tries of one delivery (retries back off exponentially).
	WebhookAttempts int `yaml:"webhook_attempts"`
	// WebhookTimeout bounds one delivery attempt.
	WebhookTimeout time.Duration `yaml:"webhook_timeout"`
}

// Sources is the source policy of submitted URLs (ingest/source.Policy): which network
// sources a caller of POST /api/scans or lae.submit may make this deployment connect to. It is
// enforced when a submission is accepted and again when ingest opens the URL (redirects and HLS
// playlist entries included). `lae scan` runs with it off: its user owns the machine.
type Sources struct {
	// Policy is "on" (lae serve, lae ingest) or "off" (lae scan: any URL, any address).
	Policy string `yaml:"policy"`
	// AllowedSchemes are the network schemes submitted URLs may use, among http, https, rtsp,
	// rtsps, rtmp, rtmps, srt, udp and tcp (raw tcp and udp are off by default). Local files
	// are not governed here (serve.allow_local_paths).
	AllowedSchemes []string `yaml:"allowed_schemes"`
	// AllowCIDRs are address ranges accepted although they are loopback, link-local, private,
	// multicast or otherwise internal (e.g. a camera network 10.20.0.0/16).
	AllowCIDRs []string `yaml:"allow_cidrs"`
}

// Sources.Policy's values.
const (
	PolicyOn  = "on"
	PolicyOff = "off"
)

// Enforced reports whether the source policy is on.
func (s Sources) Enforced() bool { return s.Policy == PolicyOn }

// Log configures zap.
type Log struct {
	// Level: debug, info, warn, error.
	Level string `yaml:"level"`
	// Format: json (production) or console.
	Format string `yaml:"format"`
}

// Ingest configures the ingest role.
type Ingest struct {
	// SampleFPS is the sampling rate of submissions that do not set one (0 = every frame).
	SampleFPS float64 `yaml:"sample_fps"`
	// MaxDuration caps the media time ingested per video (0 = whole source).
	MaxDuration time.Duration `yaml:"max_duration"`
	// FaceModel is the face detector: yunet (embedded), haar-alt, haar, lbp, or a YuNet .onnx file.
	FaceModel string `yaml:"face_model"`
	// MinEyePx is the tiny-face limit: faces whose eyes are closer than this many source
	// pixels are counted (verdict faces_too_small), not scored; 0 keeps every face.
	MinEyePx float64 `yaml:"min_eye_px"`
	// Concurrency is how many videos one ingest process decodes at once.
	Concurrency int `yaml:"concurrency"`
	// OpenTimeout bounds opening a source and a stalled read.
	OpenTimeout time.Duration `yaml:"open_timeout"`
}

// Detector configures the detector role.
type Detector struct {
	// Model is the LAE ONNX file; "" = the shipped model (model.DefaultPath). Its card
	// (model.CardPath) gives the calibrated threshold to every role, the aggregator included.
	Model string `yaml:"model"`
	// ORTLib is the ONNX Runtime library ("" = $LAE_ORT_LIB, then .cache/ort).
	ORTLib string `yaml:"ort_lib"`
	// Provider is the execution provider: cpu, cuda or tensorrt.
	Provider string `yaml:"provider"`
	// BatchSize is the most crops per inference (0 = the provider's, model.BatchSize);
	// BatchTimeout how long a partial batch waits.
	BatchSize    int           `yaml:"batch_size"`
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	// Workers is how many batches one process scores at once.
	Workers int `yaml:"workers"`
	// NoArena turns ONNX Runtime's memory pool off (model.Options.NoArena): flat memory at
	// some speed, for leak tests and memory-tight hosts.
	NoArena bool `yaml:"no_arena"`
}

// Aggregator configures the aggregator role.
type Aggregator struct {
	// Rule is a verdict rule (aggregator/verdict.Rules); "" = verdict.DefaultRule.
	Rule string `yaml:"rule"`
	// TopK is k of the topk_mean rule; 0 = the rule's default.
	TopK int `yaml:"topk"`
	// Threshold is the decision threshold on the video score; 0 = unset, the model card's
	// calibrated threshold (model.ResolveCard).
	Threshold float64 `yaml:"threshold"`
	// EvidenceFrames is how many top frames get evidence images.
	EvidenceFrames int `yaml:"evidence_frames"`
	// RollingEvery publishes a rolling verdict (final=false) at most this often for a video
	// still being ingested (live streams): the rule over every score so far. 0 = off.
	RollingEvery time.Duration `yaml:"rolling_every"`
}

// Retention bounds the streams (the crop archive that rescoring replays in particular); zero
// values take laev1.DefaultRetention, the contract's defaults.
type Retention struct {
	FacesMaxAge    time.Duration `yaml:"faces_max_age"`
	FacesMaxBytes  int64         `yaml:"faces_max_bytes"`
	FramesMaxAge   time.Duration `yaml:"frames_max_age"`
	FramesMaxBytes int64         `yaml:"frames_max_bytes"`
	// UploadsMaxAge and UploadsMaxBytes bound the object store of uploads (lae serve deletes
	// each serve.keep_uploads after its verdict; these catch what it never got to).
	UploadsMaxAge   time.Duration `yaml:"uploads_max_age"`
	UploadsMaxBytes int64         `yaml:"uploads_max_bytes"`
	Replicas        int           `yaml:"replicas"`
	// Memory keeps the streams in memory instead of on disk (tests, throw-away scans).
	Memory bool `yaml:"memory"`
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
	Serve      Serve      `yaml:"serve"`
	Sources    Sources    `yaml:"sources"`
	// Store is the directory of the embedded JetStream and of uploads (`lae scan`, `lae
	// serve`); "" = a temporary directory removed on exit.
	Store string `yaml:"store"`
	// ShutdownTimeout bounds the drain of in-flight work on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Default is the configuration a distributed role runs with when nothing is set; it is the
// one source of defaults (ForCommand adjusts the few that differ per command).
func Default() Config {
	return Config{
		NATS:       NATS{URLs: []string{"nats://127.0.0.1:4222"}, ListenHost: "127.0.0.1"},
		HTTP:       HTTP{Addr: ":9090"},
		Log:        Log{Level: "info", Format: "json"},
		Ingest:     Ingest{SampleFPS: 5, MinEyePx: 16, Concurrency: 2, OpenTimeout: 15 * time.Second},
		Detector:   Detector{Provider: "cpu", BatchSize: 0, BatchTimeout: 20 * time.Millisecond, Workers: 1},
		Aggregator: Aggregator{EvidenceFrames: 3, RollingEvery: 10 * time.Second},
		// Uploads stay a day after the verdict: the page's player plays them beside the evidence.
		Serve:           Serve{MaxUpload: 2 << 30, KeepUploads: 24 * time.Hour, WebhookAttempts: 5, WebhookTimeout: 10 * time.Second},
		Sources:         Sources{Policy: PolicyOn, AllowedSchemes: slices.Clone(source.DefaultSchemes), AllowCIDRs: []string{}},
		ShutdownTimeout: 30 * time.Second,
	}
}

// ForCommand is Default with the settings that differ for a command: `lae scan` has no
// operations endpoint, keeps NATS in-process, publishes rolling verdicts often (they are
// its partial result when interrupted) and opens any source (its user owns the machine, so
// the source policy is off); the clients serve no endpoint; `lae serve` listens for NATS
// clients, serves its page on loopback and logs for people.
func ForCommand(cmd string) Config {
	c := Default()
	switch cmd {
	case "scan":
		c.HTTP.Addr = ""
		c.Log = Log{Level: "error", Format: "console"}
		c.Aggregator.RollingEvery = time.Second
		c.Sources.Policy = PolicyOff
	case "submit", "watch", "rescore", "provision", "version":
		c.HTTP.Addr = "" // clients serve no endpoint
	case "serve":
		c.HTTP.Addr = "127.0.0.1:8080"
		c.NATS.ListenPort = 4222
		c.Log.Format = "console"
		c.Aggregator.RollingEvery = 2 * time.Second
	}
	return c
}

// Load reads the defaults, then the YAML file (when path is not empty), then the environment.
func Load(path string) (Config, error) { return LoadOver(Default(), path) }

// LoadOver is Load starting from c instead of Default.
func LoadOver(c Config, path string) (Config, error) {
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
	if err := ApplyEnv(&c, os.LookupEnv); err != nil {
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

// ApplyEnv sets on c the LAE_<SECTION>_<FIELD> variables that lookup finds, as every lae
// command does with its environment (deploy checks use it on a manifest's env).
func ApplyEnv(c *Config, lookup func(string) (string, bool)) error {
	return applyEnv(reflect.ValueOf(c).Elem(), "LAE", lookup)
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
		fv.Set(reflect.ValueOf(SplitList(s)))
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
