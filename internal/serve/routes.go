package serve

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// route is one route of the HTTP API. The table (apiRoutes) is the one list that the mux is
// built from; the OpenAPI document (openapi.yaml) is tested against it route by route.
type route struct {
	Method, Path string
	handler      http.HandlerFunc
	// Open routes need no token (the API's description).
	Open bool
}

// apiRoutes is every /api route.
func (s *Server) apiRoutes() []route {
	return []route{
		{Method: http.MethodPost, Path: "/api/scans", handler: s.handleSubmit},
		{Method: http.MethodGet, Path: "/api/scans", handler: s.handleList},
		{Method: http.MethodGet, Path: "/api/scans/{id}", handler: s.handleVerdict},
		{Method: http.MethodDelete, Path: "/api/scans/{id}", handler: s.handleDelete},
		{Method: http.MethodGet, Path: "/api/scans/{id}/history", handler: s.handleHistory},
		{Method: http.MethodGet, Path: "/api/scans/{id}/evidence/{n}", handler: s.handleEvidence},
		{Method: http.MethodGet, Path: "/api/scans/{id}/report", handler: s.handleReport},
		{Method: http.MethodGet, Path: "/api/scans/{id}/webhooks", handler: s.handleWebhookLog},
		{Method: http.MethodGet, Path: "/api/scans/{id}/media", handler: s.handleMedia},
		{Method: http.MethodGet, Path: "/api/events", handler: s.handleEvents},
		{Method: http.MethodGet, Path: "/api/openapi.json", handler: handleOpenAPI, Open: true},
	}
}

// mux builds the server's handler around the operations endpoint's mux (ops): the API behind
// the tokens, the live page (login with a token when tokens are configured), and ops's own
// routes with /healthz and /readyz always open and /metrics open unless serve.metrics_auth.
func (s *Server) mux(ops *http.ServeMux) *http.ServeMux {
	api := http.NewServeMux()
	open := map[string]bool{}
	for _, rt := range s.apiRoutes() {
		// Labelled by pattern, never by path: the metric's label values stay few.
		api.Handle(rt.Method+" "+rt.Path, s.stack.Metrics.HTTPMiddleware(rt.Path, rt.handler))
		if rt.Open {
			open[rt.Path] = true
		}
	}
	mux := http.NewServeMux()
	// One handler for the whole /api/ tree: unknown paths and methods get the API mux's 404
	// and 405, after the token check (an unauthenticated caller learns nothing of the routes).
	mux.Handle("/api/", s.auth.require(jsonMisses(api), func(r *http.Request) bool { return open[r.URL.Path] }))
	s.pageRoutes(mux)
	mux.Handle("/", s.auth.require(ops, func(r *http.Request) bool {
		switch r.URL.Path {
		case "/healthz", "/readyz":
			return true // probes carry no tokens
		case "/metrics":
			return !s.o.Config.Serve.MetricsAuth
		}
		return false
	}))
	return mux
}

// jsonMisses serves mux, answering requests that match no route (404) or none for their
// method (405, with Allow) with the API's one-line JSON errors instead of ServeMux's text.
func jsonMisses(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var miss headerCapture
		h.ServeHTTP(&miss, r)
		switch miss.code {
		case http.StatusNotFound:
			httpError(w, http.StatusNotFound, "no API route "+r.URL.Path+" (see /api/openapi.json)")
		case http.StatusMethodNotAllowed:
			allow := miss.Header().Get("Allow")
			w.Header().Set("Allow", allow)
			httpError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		default:
			mux.ServeHTTP(w, r) // a redirect to the clean path
		}
	})
}

// headerCapture records what a handler answers, discarding the body.
type headerCapture struct {
	h    http.Header
	code int
}

func (c *headerCapture) Header() http.Header {
	if c.h == nil {
		c.h = http.Header{}
	}
	return c.h
}

func (c *headerCapture) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

func (c *headerCapture) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return len(b), nil
}

// pageRoutes adds the live page: its HTML at / (a redirect to the login form when tokens are
// configured and the browser has no session cookie), its static assets (code, no data: open),
// and the login form.
func (s *Server) pageRoutes(mux *http.ServeMux) {
	assets, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(assets)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		if s.auth.enabled() && !s.auth.allowed(r) {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		pageHeaders(w)
		http.ServeFileFS(w, r, assets, "index.html")
	})
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w)
		files.ServeHTTP(w, r)
	})))
	mux.HandleFunc("GET /login", s.auth.loginForm)
	mux.HandleFunc("POST /login", s.auth.login)
	mux.HandleFunc("POST /logout", s.auth.logout)
}

// startTime is the openapi document's Last-Modified (it is built into the binary).
var startTime = time.Now()

//go:embed openapi.yaml
var openapiYAML []byte

// openapiJSON is the OpenAPI document as served: openapi.yaml (YAML is what people edit)
// converted once.
var openapiJSON = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("parse openapi.yaml: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode openapi.json: %w", err)
	}
	return buf.Bytes(), nil
})

func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	b, err := openapiJSON()
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "openapi.json", startTime, bytes.NewReader(b))
}

// isUnsafe reports whether a method changes state (the ones a cross-site form could send).
func isUnsafe(method string) bool {
	return !strings.EqualFold(method, http.MethodGet) && !strings.EqualFold(method, http.MethodHead) &&
		!strings.EqualFold(method, http.MethodOptions)
}
