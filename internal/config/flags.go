package config

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Command describes a command's command line for Parse.
type Command struct {
	// Name is the subcommand ("scan", "serve", "ingest", ...): it picks ForCommand's defaults.
	Name string
	// Synopsis is the usage line after "usage: lae ", e.g. "scan [flags] <file|dir|url|->...".
	Synopsis string
	// Doc is the paragraph printed under the usage line.
	Doc string
	// Bind registers the command's flags on fs, bound to c's fields (the Stack, Serve and Role
	// binders) and to the command's own variables.
	Bind func(fs *flag.FlagSet, c *Config)
}

// Parse builds a command's configuration in one order: ForCommand defaults, the --config file
// (or $LAE_CONFIG), LAE_* environment variables, then flags, which may come before or after
// the arguments (`lae scan clip.mp4 --json`); "--" ends the flags. -h/--help prints the usage
// with every default to stdout and returns flag.ErrHelp; any mistake is a UsageError. The
// caller runs Validate.
func Parse(cmd Command, args []string) (Config, []string, error) {
	path := configPath(args)
	c, err := LoadOver(ForCommand(cmd.Name), path)
	if err != nil {
		return c, nil, UsageError{err}
	}
	fs := flag.NewFlagSet(cmd.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("config", path, "configuration file (YAML; env LAE_CONFIG); LAE_<SECTION>_<FIELD> variables override it, flags override both")
	if cmd.Bind != nil {
		cmd.Bind(fs, &c)
	}
	fs.Usage = func() {}
	pos, err := parseInterspersed(fs, args)
	if err == flag.ErrHelp {
		PrintUsage(os.Stdout, cmd, fs)
		return c, nil, err
	}
	if err != nil {
		return c, nil, UsageError{err}
	}
	return c, pos, nil
}

// configPath finds --config before the flags are bound: the file's values become the
// defaults that the other flags override (and that --help shows).
func configPath(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasVal {
			return val
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return os.Getenv("LAE_CONFIG")
}

// parseInterspersed is flag.Parse that lets flags follow arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// PrintUsage writes the command's help: usage line, doc and every flag with its default.
func PrintUsage(w io.Writer, cmd Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: lae %s\n\n", cmd.Synopsis)
	if cmd.Doc != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(cmd.Doc))
	}
	fmt.Fprintln(w, "flags:")
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		if typ != "" {
			typ = " " + typ
		}
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%s%s\n        %s (default %s)\n", f.Name, typ, usage, def)
	})
}

// StackFlags binds the flags of the whole stack run in one process (`lae scan`, `lae serve`).
func StackFlags(fs *flag.FlagSet, c *Config) {
	DetectorFlags(fs, c)
	fs.Float64Var(&c.Ingest.SampleFPS, "fps", c.Ingest.SampleFPS, "frames sampled per second of media time (0 = every frame)")
	fs.DurationVar(&c.Ingest.MaxDuration, "max-duration", c.Ingest.MaxDuration, "stop each input after this much media time (0 = whole source)")
	fs.StringVar(&c.Ingest.FaceModel, "face-model", c.Ingest.FaceModel, "face detector: yunet (embedded), haar-alt, haar, lbp, or a YuNet .onnx file (\"\" = yunet)")
	fs.Float64Var(&c.Ingest.MinEyePx, "min-eye-px", c.Ingest.MinEyePx, "faces whose eyes are closer than this many source pixels are too small to judge: counted (faces_too_small), not scored (0 = score every face)")
	fs.DurationVar(&c.Ingest.OpenTimeout, "open-timeout", c.Ingest.OpenTimeout, "bound on opening a source and on a stalled read")
	fs.IntVar(&c.Ingest.Concurrency, "ingest-concurrency", c.Ingest.Concurrency, "videos ingested at once")
	fs.StringVar(&c.Aggregator.Rule, "rule", c.Aggregator.Rule, "verdict rule: mean, topk_mean or max_face_mean (\"\" = max_face_mean)")
	fs.IntVar(&c.Aggregator.TopK, "topk", c.Aggregator.TopK, "k of the topk_mean rule (0 = max(3, 10% of the scored crops))")
	fs.Float64Var(&c.Aggregator.Threshold, "threshold", c.Aggregator.Threshold, "decision threshold on the video score, in (0,1] (0 = the model card's calibrated threshold)")
	fs.IntVar(&c.Aggregator.EvidenceFrames, "evidence-frames", c.Aggregator.EvidenceFrames, "top frames kept as evidence")
	fs.DurationVar(&c.Aggregator.RollingEvery, "rolling", c.Aggregator.RollingEvery, "interval of rolling verdicts (final: false) of videos in progress (0 = none)")
	fs.StringVar(&c.NATS.ListenHost, "nats-host", c.NATS.ListenHost, "address the embedded NATS server listens on (with --nats-port)")
	fs.IntVar(&c.NATS.ListenPort, "nats-port", c.NATS.ListenPort, "port on which the embedded NATS server accepts lae submit / lae watch clients (0 = in-process only, -1 = a free port)")
	fs.StringVar(&c.Store, "store", c.Store, "directory for JetStream data and uploads (\"\" = a temporary directory removed on exit)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "on SIGTERM, how long videos in hand may run and the pipeline may drain")
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "log level: debug, info, warn, error")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "log format: console or json")
}

// DetectorFlags binds the model flags (the stack's, and `lae rescore`'s).
func DetectorFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Detector.Model, "model", c.Detector.Model, "LAE ONNX model; its card (*.card.json) gives the calibrated threshold (\"\" = the shipped detector/models/lae-v2.onnx)")
	fs.StringVar(&c.Detector.ORTLib, "ort-lib", c.Detector.ORTLib, "ONNX Runtime shared library (\"\" = $LAE_ORT_LIB, then .cache/ort/libonnxruntime.so.1)")
	fs.StringVar(&c.Detector.Provider, "provider", c.Detector.Provider, "ONNX Runtime execution provider: cpu, cuda or tensorrt")
	fs.IntVar(&c.Detector.BatchSize, "batch-size", c.Detector.BatchSize, "most face crops per inference batch (0 = by provider: 16 on cpu, 64 on cuda/tensorrt)")
}

// ServeFlags binds what `lae serve` adds: the HTTP API and its limits.
func ServeFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.HTTP.Addr, "http", c.HTTP.Addr, "HTTP address of the API, the live page and /metrics, /healthz, /readyz")
	fs.BoolVar(&c.Serve.APIOnly, "api-only", c.Serve.APIOnly, "run only the API, the page and webhooks, on the NATS of --nats (a deployment's ingest, detect and aggregate roles do the work) instead of every stage on an embedded server")
	fs.Var((*listValue)(&c.NATS.URLs), "nats", "NATS server URLs, comma-separated (with --api-only)")
	fs.BoolVar(&c.Serve.AllowLocalPaths, "allow-local-paths", c.Serve.AllowLocalPaths, "accept local file paths in HTTP submissions (uploads are always accepted)")
	fs.Int64Var(&c.Serve.MaxUpload, "max-upload", c.Serve.MaxUpload, "largest accepted upload, in bytes")
	fs.DurationVar(&c.Serve.KeepUploads, "keep-uploads", c.Serve.KeepUploads, "how long an uploaded file is kept after its scan's final verdict, for the page's player and GET /api/scans/{id}/media (0 = deleted at once)")
	fs.StringVar(&c.Serve.TokensFile, "tokens-file", c.Serve.TokensFile, "file of API bearer tokens, one per line, # comments (env LAE_SERVE_TOKENS adds comma-separated ones); none = open API, loopback only")
	fs.BoolVar(&c.Serve.InsecureNoAuth, "insecure-no-auth", c.Serve.InsecureNoAuth, "serve the API without tokens on a non-loopback address")
	fs.BoolVar(&c.Serve.MetricsAuth, "metrics-auth", c.Serve.MetricsAuth, "require a token for /metrics too (/healthz and /readyz stay open)")
	fs.StringVar(&c.Serve.WebhookURL, "webhook-url", c.Serve.WebhookURL, "URL that receives every final verdict as a signed POST (held to the source policy)")
	fs.StringVar(&c.Serve.WebhookSecretFile, "webhook-secret-file", c.Serve.WebhookSecretFile, "file whose first line is the webhooks' HMAC-SHA256 key (env LAE_SERVE_WEBHOOK_SECRET instead)")
	fs.IntVar(&c.Serve.WebhookAttempts, "webhook-attempts", c.Serve.WebhookAttempts, "most tries of one webhook delivery (exponential backoff with jitter between them)")
}

// RoleFlags binds the flags of the distributed roles: where NATS is and the operations
// endpoint (everything else comes from the config file and LAE_* variables).
func RoleFlags(fs *flag.FlagSet, c *Config) {
	ClientFlags(fs, c)
	fs.StringVar(&c.HTTP.Addr, "http", c.HTTP.Addr, "operations endpoint address for /metrics, /healthz, /readyz (\"\" = none)")
}

// ClientFlags binds where NATS is, for the clients (submit, watch, rescore); credentials and
// TLS come from the config file and LAE_NATS_* variables.
func ClientFlags(fs *flag.FlagSet, c *Config) {
	fs.Var((*listValue)(&c.NATS.URLs), "nats", "NATS server URLs, comma-separated")
}

// listValue is a comma-separated []string flag.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
	*l = SplitList(s)
	return nil
}

// SplitList splits a comma-separated list, trimming blanks and dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
