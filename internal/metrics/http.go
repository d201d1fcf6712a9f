package metrics

import (
	"net/http"
	"strconv"
	"time"
)

// HTTPMiddleware counts and times the requests h answers under one route label. route must
// be the route's pattern ("/api/scans/{id}"), never the request's path: the label's values
// must stay few. A nil *Metrics returns h unchanged.
func (m *Metrics) HTTPMiddleware(route string, h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	requests, took := m.HTTPRequests.MustCurryWith(map[string]string{"route": route}), m.HTTPDuration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			// A handler that panics before writing still counts, as the 500 net/http
			// answers with; the panic goes on to net/http.
			p := recover()
			code := rec.code
			switch {
			case code == 0 && p != nil:
				code = http.StatusInternalServerError
			case code == 0:
				code = http.StatusOK
			}
			requests.WithLabelValues(strconv.Itoa(code)).Inc()
			took.Observe(time.Since(start).Seconds())
			if p != nil {
				panic(p)
			}
		}()
		h.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the status code a handler wrote. Unwrap lets
// http.ResponseController reach the connection's Flush, deadlines and Hijack (server-sent
// events need them); Flush serves handlers that assert http.Flusher.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush sends buffered data to the client (SSE), as http.Flusher.
func (s *statusRecorder) Flush() {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
