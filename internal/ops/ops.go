// Package ops is what every lae role shares for operation: the zap logger, the NATS
// connection from config, and the HTTP endpoint with Prometheus metrics, liveness and readiness.
package ops

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/memstat"
	"github.com/lae-screening/lae/internal/metrics"
)

// NewLogger builds the role's logger from config (JSON for machines, console for people).
func NewLogger(c config.Log) (*zap.Logger, error) {
	var zc zap.Config
	if c.Format == "console" {
		zc = zap.NewDevelopmentConfig()
		// Development configs add a stack trace to every warning (FFmpeg warns often).
		zc.DisableStacktrace = true
	} else {
		zc = zap.NewProductionConfig()
	}
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.Level, err)
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	return zc.Build()
}

// Connect opens the role's NATS connection with the configured credentials and TLS, and
// reconnects forever: a restarted server must not take the role down.
func Connect(c config.NATS, name string, log *zap.Logger) (*nats.Conn, error) {
	if len(c.URLs) == 0 {
		return nil, errors.New("nats: no server URLs configured")
	}
	if c.Name != "" {
		name = c.Name
	}
	opts := []nats.Option{
		nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", zap.Error(err)) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", zap.String("url", nc.ConnectedUrlRedacted())) }),
	}
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("nats nkey %s: %w", c.NKey, err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	nc, err := nats.Connect(joinURLs(c.URLs), opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", joinURLs(c.URLs), err)
	}
	return nc, nil
}

func joinURLs(u []string) string {
	s := ""
	for i, x := range u {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s
}

// Server is the role's operations HTTP server.
type Server struct {
	Registry *prometheus.Registry
	// Metrics holds the lae_* collectors, registered on Registry; the endpoint's own routes
	// are counted in its HTTP request metrics.
	Metrics *metrics.Metrics
	Mux     *http.ServeMux
	mu      sync.Mutex
	checks  map[string]func() error
	srv     *http.Server
	ln      net.Listener
	// metricsTokens are the SHA-256 sums of the bearer tokens /metrics accepts; nil = open.
	metricsTokens atomic.Pointer[[][sha256.Size]byte]
}

// NewServer creates the mux with /metrics, /healthz (the process runs) and /readyz (every
// registered readiness check passes, e.g. NATS connected and the model loaded).
func NewServer() *Server {
	reg := prometheus.NewRegistry()
	s := &Server{Registry: reg, Mux: http.NewServeMux(), checks: map[string]func() error{}}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		// RSS also counts what malloc keeps after a free; the live C heap (FFmpeg, OpenCV, ONNX
		// Runtime) is what a leak grows, so operators and the soak test watch this instead.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lae_c_heap_inuse_bytes",
			Help: "Bytes the C allocator has handed out and not had back (FFmpeg, OpenCV, ONNX Runtime)."},
			func() float64 { return float64(memstat.CHeapInUse()) }),
		// Readiness as a metric, so an alert sees a process that is up but not ready for
		// longer than a probe's restart would take (the probe only restarts or unroutes it).
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lae_ready",
			Help: "1 when every readiness check passes (/readyz answers 200), else 0."},
			func() float64 {
				if s.notReady() != nil {
					return 0
				}
				return 1
			}))
	s.Metrics = metrics.New(reg)
	s.Mux.Handle("/metrics", s.Metrics.HTTPMiddleware("/metrics", s.protect(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))))
	s.Mux.Handle("/healthz", s.Metrics.HTTPMiddleware("/healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })))
	s.Mux.Handle("/readyz", s.Metrics.HTTPMiddleware("/readyz", http.HandlerFunc(s.ready)))
	return s
}

// RequireMetricsToken makes /metrics answer only requests with "Authorization: Bearer
// <token>" for one of tokens (serve.metrics_auth on a role's endpoint); /healthz and /readyz
// stay open for probes. No tokens leaves /metrics open.
func (s *Server) RequireMetricsToken(tokens []string) {
	if len(tokens) == 0 {
		s.metricsTokens.Store(nil)
		return
	}
	sums := make([][sha256.Size]byte, len(tokens))
	for i, t := range tokens {
		sums[i] = sha256.Sum256([]byte(t))
	}
	s.metricsTokens.Store(&sums)
}

// protect checks the bearer token of /metrics when RequireMetricsToken set tokens.
func (s *Server) protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sums := s.metricsTokens.Load(); sums != nil && !bearerIn(r, *sums) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lae metrics"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearerIn reports whether r carries one of the tokens whose sums are given. Comparing
// fixed-size sums in constant time tells a caller nothing of a token's length or prefix.
func bearerIn(r *http.Request, sums [][sha256.Size]byte) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	match := 0
	for _, want := range sums {
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return match == 1
}

// AddReadyCheck registers a readiness condition.
func (s *Server) AddReadyCheck(name string, f func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = f
}

// NATSReady is a readiness check on a NATS connection.
func NATSReady(nc *nats.Conn) func() error {
	return func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("nats %s", nc.Status())
		}
		return nil
	}
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if err := s.notReady(); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// notReady is the first failing readiness check ("name: error"), nil when all pass.
func (s *Server) notReady() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, f := range s.checks {
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// Start listens on addr ("" disables the server; ":0" picks a free port).
func (s *Server) Start(addr string) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return nil
}

// Addr is the address the server listens on ("" when not started).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops the server gracefully.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}
