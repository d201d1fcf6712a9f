package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/webhook"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// testToken is the API token of the servers started withToken.
const testToken = "test-token-0123456789abcdef"

func withToken(o *Options) { o.Config.Serve.Tokens = []string{testToken} }

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// send makes one request with an optional bearer token and headers.
func send(t testing.TB, method, u, tok string, body io.Reader, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b, resp.Header
}

// requireOneLineError checks a JSON error answer: {"error": "<one line>"}.
func requireOneLineError(t testing.TB, code, want int, body []byte, hdr http.Header) string {
	t.Helper()
	require.Equal(t, want, code, "%s", body)
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	var e map[string]string
	require.NoError(t, json.Unmarshal(body, &e), "%s", body)
	require.Len(t, e, 1, "%s", body)
	require.NotEmpty(t, e["error"])
	require.NotContains(t, e["error"], "\n")
	return e["error"]
}

// putVerdict stores a verdict as the aggregator would.
func putVerdict(t testing.TB, s *Server, v laev1.Verdict) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	_, err = s.kv.Put(t.Context(), v.VideoID, b)
	require.NoError(t, err)
}

// finalVerdict is a final verdict of id with one evidence image, stored in the evidence store.
func finalVerdict(t testing.TB, s *Server, id, verdict string, at time.Time) laev1.Verdict {
	t.Helper()
	var img bytes.Buffer
	require.NoError(t, jpeg.Encode(&img, image.NewGray(image.Rect(0, 0, 8, 8)), nil))
	name := id + "/r0/0.jpg"
	_, err := s.obj.PutBytes(t.Context(), name, img.Bytes())
	require.NoError(t, err)
	return laev1.Verdict{VideoID: id, Input: "https://videos.test/" + id + ".mp4", Verdict: verdict, Score: 0.7,
		Threshold: 0.5, Final: true, Complete: true, CreatedAt: at.UTC(),
		Evidence: []laev1.Evidence{{Image: name, Score: 0.7}}}
}

// checkRefs requires every "$ref" under v to name something in doc.
func checkRefs(t *testing.T, doc, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			require.True(t, strings.HasPrefix(ref, "#/"), "external $ref %s", ref)
			cur := doc
			for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
				m, ok := cur.(map[string]any)
				require.True(t, ok, "$ref %s: %s is not an object", ref, part)
				cur, ok = m[part]
				require.True(t, ok, "$ref %s does not resolve", ref)
			}
		}
		for _, e := range x {
			checkRefs(t, doc, e)
		}
	case []any:
		for _, e := range x {
			checkRefs(t, doc, e)
		}
	}
}

// resolve follows a "$ref" (the refs were checked by checkRefs).
func resolve(t *testing.T, doc, v any) any {
	t.Helper()
	for {
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return v
		}
		v = doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			v = v.(map[string]any)[part]
		}
	}
}

// conforms checks v against an OpenAPI 3.0 schema: the subset the document uses ($ref,
// type, nullable, required, properties, items, enum, allOf, oneOf).
func conforms(doc, schema, v any, at string) error {
	sc, _ := schema.(map[string]any)
	if ref, ok := sc["$ref"].(string); ok {
		target := doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			target = target.(map[string]any)[part]
		}
		return conforms(doc, target, v, at)
	}
	if all, ok := sc["allOf"].([]any); ok {
		for _, sub := range all {
			if err := conforms(doc, sub, v, at); err != nil {
				return err
			}
		}
	}
	if one, ok := sc["oneOf"].([]any); ok {
		var errs []string
		for _, sub := range one {
			err := conforms(doc, sub, v, at)
			if err == nil {
				errs = nil
				break
			}
			errs = append(errs, err.Error())
		}
		if errs != nil {
			return fmt.Errorf("%s matches no oneOf: %s", at, strings.Join(errs, "; "))
		}
	}
	if v == nil {
		if sc["nullable"] == true || sc["type"] == nil {
			return nil
		}
		return fmt.Errorf("%s is null", at)
	}
	if enum, ok := sc["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
	}
	switch sc["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not an object", at)
		}
		req, _ := sc["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				return fmt.Errorf("%s lacks required %s", at, r)
			}
		}
		props, _ := sc["properties"].(map[string]any)
		for k, pv := range m {
			if ps, ok := props[k]; ok {
				if err := conforms(doc, ps, pv, at+"."+k); err != nil {
					return err
				}
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s is not an array", at)
		}
		for i, e := range a {
			if err := conforms(doc, sc["items"], e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s is not a string", at)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			return fmt.Errorf("%s is not a number", at)
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			return fmt.Errorf("%s is not an integer", at)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s is not a boolean", at)
		}
	}
	return nil
}

var httpMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true}

// TestOpenAPIDocumentsEveryRoute holds /api/openapi.json to the handlers: it is served without
// a token, every $ref resolves, every registered route is documented and every documented one
// is registered, each answers a request with a status its operation documents, and the
// routes it says are open answer without a token while the others refuse with 401; JSON
// answers conform to their documented schemas.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	s := startServer(t, withToken)
	code, body, hdr := send(t, http.MethodGet, baseURL(s)+"/api/openapi.json", "", nil, nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	var doc map[string]any
	require.NoError(t, json.Unmarshal(body, &doc))
	require.True(t, strings.HasPrefix(fmt.Sprint(doc["openapi"]), "3."), "openapi %v", doc["openapi"])
	checkRefs(t, doc, doc)

	ops := map[string]map[string]any{}
	for p, item := range doc["paths"].(map[string]any) {
		for m, op := range item.(map[string]any) {
			if httpMethods[m] {
				ops[strings.ToUpper(m)+" "+p] = op.(map[string]any)
			}
		}
	}
	registered := []string{"GET /healthz", "GET /readyz", "GET /metrics"}
	for _, rt := range s.apiRoutes() {
		registered = append(registered, rt.Method+" "+rt.Path)
	}
	documented := make([]string, 0, len(ops))
	for k := range ops {
		documented = append(documented, k)
	}
	require.ElementsMatch(t, registered, documented, "registered routes vs the document's")

	const id = "openapi-probe"
	putVerdict(t, s, finalVerdict(t, s, id, laev1.VerdictFake, time.Now()))
	// An upload still kept, for the media route.
	_, err := s.uploads.PutBytes(t.Context(), id, []byte("not really a video"))
	require.NoError(t, err)
	// Deleting last: the other routes read the scan.
	sort.Slice(documented, func(i, j int) bool {
		di, dj := strings.HasPrefix(documented[i], "DELETE"), strings.HasPrefix(documented[j], "DELETE")
		if di != dj {
			return dj
		}
		return documented[i] < documented[j]
	})
	for _, key := range documented {
		t.Run(key, func(t *testing.T) {
			op := ops[key]
			method, path, _ := strings.Cut(key, " ")
			u := baseURL(s) + strings.NewReplacer("{id}", id, "{n}", "0").Replace(path)
			var reqBody []byte
			hdr := map[string]string{}
			want := http.StatusOK
			switch key {
			case "POST /api/scans":
				// A refused source: the handler answers, nothing is scanned.
				reqBody, want = []byte(`{"url":"http://10.1.2.3/a.mp4"}`), http.StatusBadRequest
				hdr["Content-Type"] = "application/json"
			case "DELETE /api/scans/{id}":
				want = http.StatusNoContent
			}
			probe := func(tok string) (int, []byte) {
				if key == "GET /api/events" {
					return probeStream(t, u, tok)
				}
				code, b, _ := send(t, method, u, tok, bytes.NewReader(reqBody), hdr)
				return code, b
			}
			sec, hasSec := op["security"].([]any)
			open := hasSec && len(sec) == 0
			if !open && !(hasSec && slices.ContainsFunc(sec, func(e any) bool { m, _ := e.(map[string]any); return len(m) == 0 })) {
				code, b := probe("")
				require.Equal(t, http.StatusUnauthorized, code, "without a token: %s", b)
			}
			tok := testToken
			if open {
				tok = ""
			}
			code, b := probe(tok)
			require.Equal(t, want, code, "%s", b)
			require.Contains(t, op["responses"], strconv.Itoa(code), "status %d is not documented", code)
			resp := resolve(t, doc, op["responses"].(map[string]any)[strconv.Itoa(code)])
			content, _ := resp.(map[string]any)["content"].(map[string]any)
			if media, ok := content["application/json"].(map[string]any); ok && len(b) > 0 {
				var got any
				require.NoError(t, json.Unmarshal(b, &got), "%s", b)
				require.NoError(t, conforms(doc, media["schema"], got, "body"), "%s", b)
			}
		})
	}
}

// probeStream opens an event stream and closes it once the headers are in.
func probeStream(t *testing.T, u, tok string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(t, err)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	return resp.StatusCode, nil
}

// TestAuthentication: with tokens configured the API needs a bearer token, the probes never
// do, /metrics follows serve.metrics_auth, and the live page signs in with a form and then
// works on its cookie (same-origin only for changes).
func TestAuthentication(t *testing.T) {
	s := startServer(t, withToken)
	base := baseURL(s)
	for _, c := range []struct {
		name, method, path, tok string
		hdr                     map[string]string
		want                    int
		challenge               string
	}{
		{name: "healthz open", method: http.MethodGet, path: "/healthz", want: http.StatusOK},
		{name: "readyz open", method: http.MethodGet, path: "/readyz", want: http.StatusOK},
		{name: "metrics open by default", method: http.MethodGet, path: "/metrics", want: http.StatusOK},
		{name: "openapi open", method: http.MethodGet, path: "/api/openapi.json", want: http.StatusOK},
		{name: "page assets open", method: http.MethodGet, path: "/assets/app.js", want: http.StatusOK},
		{name: "no token", method: http.MethodGet, path: "/api/scans", want: http.StatusUnauthorized, challenge: `Bearer realm="lae"`},
		{name: "wrong token", method: http.MethodGet, path: "/api/scans", tok: "wrong-token-0123456789abcdef", want: http.StatusUnauthorized,
			challenge: `Bearer realm="lae", error="invalid_token"`},
		{name: "basic scheme", method: http.MethodGet, path: "/api/scans", hdr: map[string]string{"Authorization": "Basic " + testToken},
			want: http.StatusUnauthorized, challenge: `Bearer realm="lae", error="invalid_token"`},
		{name: "token", method: http.MethodGet, path: "/api/scans", tok: testToken, want: http.StatusOK},
		{name: "unknown route hidden without a token", method: http.MethodGet, path: "/api/nothing", want: http.StatusUnauthorized,
			challenge: `Bearer realm="lae"`},
		{name: "unknown route with a token", method: http.MethodGet, path: "/api/nothing", tok: testToken, want: http.StatusNotFound},
		{name: "unknown method with a token", method: http.MethodPut, path: "/api/scans", tok: testToken, want: http.StatusMethodNotAllowed},
		{name: "delete needs a token", method: http.MethodDelete, path: "/api/scans/abc", want: http.StatusUnauthorized, challenge: `Bearer realm="lae"`},
		{name: "page redirects to the login", method: http.MethodGet, path: "/", want: http.StatusSeeOther},
		{name: "login form", method: http.MethodGet, path: "/login", want: http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body, hdr := send(t, c.method, base+c.path, c.tok, nil, c.hdr)
			switch c.want {
			case http.StatusUnauthorized:
				requireOneLineError(t, code, c.want, body, hdr)
				require.Equal(t, c.challenge, hdr.Get("WWW-Authenticate"))
				return
			case http.StatusNotFound:
				requireOneLineError(t, code, c.want, body, hdr)
				return
			case http.StatusMethodNotAllowed:
				requireOneLineError(t, code, c.want, body, hdr)
				require.Equal(t, "GET, HEAD, POST", hdr.Get("Allow"))
				return
			}
			require.Equal(t, c.want, code, "%s", body)
		})
	}

	t.Run("page session", func(t *testing.T) {
		form := url.Values{"token": {"wrong-token-0123456789abcdef"}}.Encode()
		code, _, _ := send(t, http.MethodPost, base+"/login", "", strings.NewReader(form),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		require.Equal(t, http.StatusUnauthorized, code)

		form = url.Values{"token": {testToken}}.Encode()
		code, _, hdr := send(t, http.MethodPost, base+"/login", "", strings.NewReader(form),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		require.Equal(t, http.StatusSeeOther, code)
		var cookie *http.Cookie
		for _, ck := range (&http.Response{Header: hdr}).Cookies() {
			if ck.Name == cookieName {
				cookie = ck
			}
		}
		require.NotNil(t, cookie, "session cookie")
		require.True(t, cookie.HttpOnly)
		require.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
		withCookie := map[string]string{"Cookie": cookieName + "=" + cookie.Value}
		code, _, _ = send(t, http.MethodGet, base+"/", "", nil, withCookie)
		require.Equal(t, http.StatusOK, code, "the page with the session")
		code, _, _ = send(t, http.MethodGet, base+"/api/scans", "", nil, withCookie)
		require.Equal(t, http.StatusOK, code, "the page's API calls")
		crossSite := map[string]string{"Cookie": withCookie["Cookie"], "Origin": "http://evil.test", "Content-Type": "application/json"}
		code, body, hdr := send(t, http.MethodPost, base+"/api/scans", "", strings.NewReader(`{"url":"https://videos.test/a.mp4"}`), crossSite)
		requireOneLineError(t, code, http.StatusUnauthorized, body, hdr)
	})

	t.Run("request metrics by route pattern", func(t *testing.T) {
		_, body, _ := send(t, http.MethodGet, base+"/metrics", "", nil, nil)
		require.Contains(t, string(body), `lae_http_requests_total{code="200",route="/api/scans"}`)
		require.NotContains(t, string(body), `route="/api/scans/abc"`, "paths never become labels")
	})

	t.Run("metrics_auth", func(t *testing.T) {
		s := startServer(t, func(o *Options) { withToken(o); o.Config.Serve.MetricsAuth = true })
		code, body, hdr := send(t, http.MethodGet, baseURL(s)+"/metrics", "", nil, nil)
		requireOneLineError(t, code, http.StatusUnauthorized, body, hdr)
		code, _, _ = send(t, http.MethodGet, baseURL(s)+"/metrics", testToken, nil, nil)
		require.Equal(t, http.StatusOK, code)
		code, _, _ = send(t, http.MethodGet, baseURL(s)+"/healthz", "", nil, nil)
		require.Equal(t, http.StatusOK, code, "probes stay open")
	})
}

// TestScanListPagesFiltersAndDelete pages the scan list with cursors (every scan once, newest
// first), filters it by state and verdict, refuses bad queries with one-line errors, and
// deletes a scan with its verdicts and evidence.
func TestScanListPagesFiltersAndDelete(t *testing.T) {
	s := startServer(t, nil)
	base := baseURL(s)
	t0 := time.Now().Add(-time.Hour)
	var ids []string
	for i := range 5 {
		id := fmt.Sprintf("list-%d", i)
		verdict := laev1.VerdictReal
		if i%2 == 0 {
			verdict = laev1.VerdictFake
		}
		putVerdict(t, s, finalVerdict(t, s, id, verdict, t0.Add(time.Duration(i)*time.Minute)))
		ids = append(ids, id)
	}
	list := func(query string) scanPage {
		t.Helper()
		code, body, _ := get(t, base+"/api/scans?"+query)
		require.Equal(t, http.StatusOK, code, "%s", body)
		var p scanPage
		require.NoError(t, json.Unmarshal(body, &p))
		return p
	}
	require.Eventually(t, func() bool { return len(list("").Scans) == 5 }, 30*time.Second, 20*time.Millisecond)

	var seen []Scan
	query, pages := "limit=2", 0
	for {
		p := list(query)
		pages++
		seen = append(seen, p.Scans...)
		if p.NextCursor == "" {
			break
		}
		require.Len(t, p.Scans, 2)
		query = strings.TrimPrefix(p.Next, "/api/scans?")
		require.Contains(t, p.Next, "cursor="+url.QueryEscape(p.NextCursor))
	}
	require.Equal(t, 3, pages)
	got := make([]string, 0, len(seen))
	for i, sc := range seen {
		got = append(got, sc.VideoID)
		if i > 0 {
			require.False(t, sortKey(sc).After(sortKey(seen[i-1])), "newest first")
		}
	}
	require.ElementsMatch(t, ids, got, "every scan exactly once")

	for _, c := range []struct {
		query string
		want  []string
	}{
		{"verdict=fake", []string{"list-0", "list-2", "list-4"}},
		{"verdict=real&limit=1000", []string{"list-1", "list-3"}},
		{"state=done&verdict=real", []string{"list-1", "list-3"}},
		{"state=pending", nil},
		{"q=LIST-3", []string{"list-3"}},
	} {
		t.Run(c.query, func(t *testing.T) {
			var got []string
			for _, sc := range list(c.query).Scans {
				got = append(got, sc.VideoID)
			}
			require.ElementsMatch(t, c.want, got)
		})
	}

	for _, c := range []struct{ method, path, contentType, body string }{
		{http.MethodGet, "/api/scans?limit=0", "", ""},
		{http.MethodGet, "/api/scans?limit=abc", "", ""},
		{http.MethodGet, "/api/scans?limit=5000", "", ""},
		{http.MethodGet, "/api/scans?cursor=bm90IGEgY3Vyc29y", "", ""},
		{http.MethodGet, "/api/scans?state=running", "", ""},
		{http.MethodGet, "/api/scans?verdict=maybe", "", ""},
		{http.MethodGet, "/api/scans/bad.id", "", ""},
		{http.MethodGet, "/api/scans/list-0/evidence/-1", "", ""},
		{http.MethodGet, "/api/scans/list-0?revision=x", "", ""},
		{http.MethodDelete, "/api/scans/bad.id", "", ""},
		{http.MethodPost, "/api/scans", "application/json", `{"url": `},
		{http.MethodPost, "/api/scans", "application/json", `{"url":"https://videos.test/a.mp4","sample_fps":"fast"}`},
		{http.MethodPost, "/api/scans", "application/json", `{"url":"/etc/passwd"}`},
	} {
		t.Run("bad "+c.method+" "+c.path+" "+c.body, func(t *testing.T) {
			hdr := map[string]string{}
			if c.contentType != "" {
				hdr["Content-Type"] = c.contentType
			}
			code, body, h := send(t, c.method, base+c.path, "", strings.NewReader(c.body), hdr)
			requireOneLineError(t, code, http.StatusBadRequest, body, h)
		})
	}
	code, body, hdr := send(t, http.MethodPost, base+"/api/scans", "", strings.NewReader("x"), map[string]string{"Content-Type": "text/plain"})
	requireOneLineError(t, code, http.StatusUnsupportedMediaType, body, hdr)

	t.Run("delete", func(t *testing.T) {
		events, _ := subscribeEventsFrom(t, s, "")
		code, body, _ := send(t, http.MethodDelete, base+"/api/scans/list-2", "", nil, nil)
		require.Equal(t, http.StatusNoContent, code, "%s", body)
		code, body, hdr := send(t, http.MethodGet, base+"/api/scans/list-2", "", nil, nil)
		requireOneLineError(t, code, http.StatusNotFound, body, hdr)
		_, err := s.obj.GetBytes(t.Context(), "list-2/r0/0.jpg")
		require.ErrorIs(t, err, jetstream.ErrObjectNotFound, "evidence deleted")
		_, err = s.kv.Get(t.Context(), "list-2")
		require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "verdicts deleted")
		for _, sc := range list("").Scans {
			require.NotEqual(t, "list-2", sc.VideoID)
		}
		code, body, hdr = send(t, http.MethodDelete, base+"/api/scans/list-2", "", nil, nil)
		requireOneLineError(t, code, http.StatusNotFound, body, hdr)
		code, body, hdr = send(t, http.MethodDelete, base+"/api/scans/never-was", "", nil, nil)
		requireOneLineError(t, code, http.StatusNotFound, body, hdr)
		waitEvent(t, events, func(e sseEvent) bool { return e.Name == "deleted" && strings.Contains(e.Data, `"list-2"`) })

		s.tracker.submitted(laev1.SubmitRequest{VideoID: "busy-1", URL: "https://videos.test/busy.mp4"}, "")
		code, body, hdr = send(t, http.MethodDelete, base+"/api/scans/busy-1", "", nil, nil)
		requireOneLineError(t, code, http.StatusConflict, body, hdr)
	})
}

// waitEvent reads events until one matches.
func waitEvent(t *testing.T, events <-chan sseEvent, match func(sseEvent) bool) sseEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-events:
			require.True(t, ok, "event stream ended")
			if match(e) {
				return e
			}
		case <-timeout:
			t.Fatal("no matching event")
		}
	}
}

// TestEventsResume: events carry ids, and a client that reconnects with Last-Event-ID gets
// what it missed, in order; an id the server cannot resume from gets a reset event.
func TestEventsResume(t *testing.T) {
	s := startServer(t, nil)
	events, stop := subscribeEventsFrom(t, s, "")
	for i := range 3 {
		s.hub.publish("test", map[string]int{"n": i})
	}
	var last sseEvent
	for i := range 3 {
		last = waitEvent(t, events, func(e sseEvent) bool { return e.Name == "test" })
		require.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i), last.Data)
		require.NotEmpty(t, last.ID)
	}
	stop()
	for i := 3; i < 6; i++ {
		s.hub.publish("test", map[string]int{"n": i})
	}
	resumed, _ := subscribeEventsFrom(t, s, last.ID)
	for i := 3; i < 6; i++ {
		e := waitEvent(t, resumed, func(e sseEvent) bool { return e.Name == "test" })
		require.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i), e.Data, "missed events replayed in order")
	}
	// The query parameter, for clients that cannot set headers.
	s.hub.publish("test", map[string]int{"n": 6})
	code, body := probeQueryResume(t, baseURL(s)+"/api/events?last_event_id="+url.QueryEscape(last.ID))
	require.Equal(t, http.StatusOK, code)
	for i := 3; i < 7; i++ {
		require.Contains(t, body, fmt.Sprintf(`data: {"n":%d}`, i))
	}
	for _, id := range []string{"0000-1", "garbage", last.ID + "0000"} {
		t.Run(id, func(t *testing.T) {
			ch, _ := subscribeEventsFrom(t, s, id)
			e := waitEvent(t, ch, func(sseEvent) bool { return true })
			require.Equal(t, eventReset, e.Name)
		})
	}
}

// probeQueryResume opens an event stream and reads what it sends at once (the replay),
// until the stream has been quiet for a moment.
func probeQueryResume(t *testing.T, u string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var got strings.Builder
	buf := make([]byte, 64<<10)
	for !strings.Contains(got.String(), `data: {"n":6}`) {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, got.String()
}

// TestHubRing: the replay buffer is bounded; a client further behind than it is reset.
func TestHubRing(t *testing.T) {
	h := newHub()
	var ids []string
	c := h.subscribe()
	for i := range ringSize + 10 {
		h.publish("n", i)
		if i < clientBuffer {
			ids = append(ids, (<-c).ID)
		}
	}
	_, replay, reset := h.subscribeFrom(ids[0])
	require.True(t, reset, "older than the ring")
	require.Empty(t, replay)
	_, replay, reset = h.subscribeFrom(h.epoch + "-" + strconv.Itoa(ringSize+7))
	require.False(t, reset)
	require.Len(t, replay, 3)
	require.Equal(t, strconv.Itoa(ringSize+9), string(replay[2].Data), "the newest last")
	_, _, reset = h.subscribeFrom(h.epoch + "-0")
	require.True(t, reset, "malformed")
}

// TestUploadDeduplication: the same bytes uploaded again return the earlier scan (one learnt
// from a stored verdict's source digest, or an earlier upload), unless a rescore is asked or
// the earlier scan failed.
func TestUploadDeduplication(t *testing.T) {
	s := startServer(t, nil)
	content, err := os.ReadFile(faceVideo(t, t.TempDir(), "clip.mp4", 15))
	require.NoError(t, err)
	learn := func(id, verdict string, b []byte) {
		t.Helper()
		sum := sha256.Sum256(b)
		v := finalVerdict(t, s, id, verdict, time.Now())
		v.Source = &laev1.SourceFacts{SHA256: hex.EncodeToString(sum[:])}
		putVerdict(t, s, v)
		require.Eventually(t, func() bool {
			s.dedupe.mu.Lock()
			defer s.dedupe.mu.Unlock()
			return s.dedupe.bySum[hex.EncodeToString(sum[:])] == id
		}, 30*time.Second, 20*time.Millisecond, "the verdict's digest is learnt")
	}
	learn("dedupe-src", laev1.VerdictReal, content)

	post := func(fields map[string]string, query string) submitted {
		t.Helper()
		code, body := upload(t, baseURL(s)+"/api/scans"+query, "same.mp4", bytes.NewReader(content), fields)
		var sub submitted
		require.NoError(t, json.Unmarshal(body, &sub), "%s", body)
		if sub.DuplicateOf != "" {
			require.Equal(t, http.StatusOK, code, "%s", body)
		} else {
			require.Equal(t, http.StatusAccepted, code, "%s", body)
		}
		return sub
	}
	dup := post(nil, "")
	require.Equal(t, submitted{VideoID: "dedupe-src", DuplicateOf: "dedupe-src", State: StateDone}, dup)
	fresh := post(map[string]string{"rescore": "true"}, "")
	require.Empty(t, fresh.DuplicateOf, "rescore asked")
	require.NotEqual(t, "dedupe-src", fresh.VideoID)
	again := post(nil, "")
	require.Equal(t, fresh.VideoID, again.DuplicateOf, "the newest scan of the bytes")
	viaQuery := post(nil, "?rescore=1")
	require.Empty(t, viaQuery.DuplicateOf)

	code, body := upload(t, baseURL(s)+"/api/scans", "same.mp4", bytes.NewReader(content), map[string]string{"rescore": "perhaps"})
	require.Equal(t, http.StatusBadRequest, code, "%s", body)

	broken := []byte("bytes whose scan failed")
	learn("dedupe-failed", laev1.VerdictError, broken)
	code, body = upload(t, baseURL(s)+"/api/scans", "broken.mp4", bytes.NewReader(broken), nil)
	require.Equal(t, http.StatusAccepted, code, "a failed scan is not a verdict to return: %s", body)
	var retried submitted
	require.NoError(t, json.Unmarshal(body, &retried))
	for _, name := range uploadObjects(t, s.uploads) {
		require.Contains(t, []string{fresh.VideoID, viaQuery.VideoID, retried.VideoID}, name, "only scanned uploads are kept")
	}
}

// fakeResolver answers from a map and records the names asked: no DNS query leaves the test.
type fakeResolver struct {
	mu    sync.Mutex
	names map[string][]netip.Addr
	asked []string
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, host)
	if a, ok := r.names[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// delivery is one webhook POST a receiver got.
type delivery struct {
	path string
	hdr  http.Header
	body []byte
}

// TestVerdictWebhooks scans an upload with its own webhook URL and a global one configured:
// a loopback receiver gets the final verdict at both, signed, and the delivery log says so.
// Webhook URLs aimed at internal addresses (by name, through the injected resolver, or
// literally) are refused at submission with a one-line error, and nothing is connected.
func TestVerdictWebhooks(t *testing.T) {
	got := make(chan delivery, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{path: r.URL.Path, hdr: r.Header.Clone(), body: b}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)
	_, port, err := net.SplitHostPort(recv.Listener.Addr().String())
	require.NoError(t, err)
	res := &fakeResolver{names: map[string][]netip.Addr{
		"hooks.test":    {netip.MustParseAddr("127.0.0.1")},
		"intranet.test": {netip.MustParseAddr("10.20.30.40")},
		"mixed.test":    {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.168.1.9")},
	}}
	secret := "webhook-secret-0123456789"
	hooks := "http://hooks.test:" + port
	s := startServer(t, func(o *Options) {
		o.Config.Serve.WebhookSecret, o.Config.Serve.WebhookURL = secret, hooks+"/global"
		// The receiver is on loopback, which the policy refuses unless allowed (a lab setup).
		o.Config.Sources.AllowCIDRs = []string{"127.0.0.0/8"}
		o.Resolver = res
	})

	for _, c := range []struct{ name, url string }{
		{"private by name", "http://intranet.test/hook"},
		{"one private address among others", "http://mixed.test:" + port + "/hook"},
		{"private literal", "http://10.0.0.7/hook"},
		{"cloud metadata", "http://169.254.169.254/latest/meta-data/"},
		{"ipv6 unique local", "http://[fd00::1]/hook"},
		{"unknown name", "http://nowhere.test/hook"},
		{"not http", "ftp://hooks.test/hook"},
		{"credentials", "http://user:pass@hooks.test:" + port + "/hook"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(submission{SubmitRequest: laev1.SubmitRequest{URL: "https://videos.test/a.mp4"}, WebhookURL: c.url})
			require.NoError(t, err)
			code, body, hdr := send(t, http.MethodPost, baseURL(s)+"/api/scans", "", bytes.NewReader(b),
				map[string]string{"Content-Type": "application/json"})
			msg := requireOneLineError(t, code, http.StatusBadRequest, body, hdr)
			require.True(t, strings.HasPrefix(msg, "webhook_url: webhook URL refused"), msg)
		})
	}
	_, body, _ := get(t, baseURL(s)+"/api/scans")
	require.JSONEq(t, `{"scans":[]}`, string(body), "nothing refused was queued")
	require.Empty(t, got, "nothing was delivered")

	video := faceVideo(t, t.TempDir(), "clip.mp4", 15)
	f, err := os.Open(video)
	require.NoError(t, err)
	defer f.Close()
	code, body := upload(t, baseURL(s)+"/api/scans", "clip.mp4", f, map[string]string{"webhook_url": hooks + "/own"})
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var sub submitted
	require.NoError(t, json.Unmarshal(body, &sub))

	paths := map[string]bool{}
	for len(paths) < 2 {
		select {
		case d := <-got:
			paths[d.path] = true
			require.Equal(t, "verdict", d.hdr.Get(webhook.HeaderEvent))
			require.NotEmpty(t, d.hdr.Get(webhook.HeaderDelivery))
			require.NoError(t, webhook.Verify([]byte(secret), d.hdr.Get(webhook.HeaderTimestamp), d.hdr.Get(webhook.HeaderSignature),
				d.body, time.Now(), 5*time.Minute), "signed")
			require.Error(t, webhook.Verify([]byte("another-secret-0123456789"), d.hdr.Get(webhook.HeaderTimestamp),
				d.hdr.Get(webhook.HeaderSignature), d.body, time.Now(), 5*time.Minute))
			var v laev1.Verdict
			require.NoError(t, json.Unmarshal(d.body, &v))
			require.Equal(t, sub.VideoID, v.VideoID)
			require.True(t, v.Final)
		case <-time.After(3 * time.Minute):
			t.Fatalf("webhooks delivered: %v", paths)
		}
	}
	require.Equal(t, map[string]bool{"/global": true, "/own": true}, paths)
	require.Eventually(t, func() bool {
		code, body, _ := get(t, baseURL(s)+"/api/scans/"+sub.VideoID+"/webhooks")
		var log webhookLog
		if code != http.StatusOK || json.Unmarshal(body, &log) != nil || len(log.Deliveries) != 2 {
			return false
		}
		for _, d := range log.Deliveries {
			if d.State != webhook.StateDelivered || len(d.Attempts) != 1 || d.Attempts[0].StatusCode != http.StatusNoContent {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "the delivery log")
	res.mu.Lock()
	require.Contains(t, res.asked, "hooks.test", "deliveries resolve through the injected resolver")
	res.mu.Unlock()
}

// TestWebhookURLNeedsASecret: without a signing secret a submission's webhook_url is refused
// rather than silently never called.
func TestWebhookURLNeedsASecret(t *testing.T) {
	s := startServer(t, nil)
	b, err := json.Marshal(submission{SubmitRequest: laev1.SubmitRequest{URL: "https://videos.test/a.mp4"}, WebhookURL: "https://hooks.test/x"})
	require.NoError(t, err)
	code, body, hdr := send(t, http.MethodPost, baseURL(s)+"/api/scans", "", bytes.NewReader(b), map[string]string{"Content-Type": "application/json"})
	msg := requireOneLineError(t, code, http.StatusBadRequest, body, hdr)
	require.Contains(t, msg, "no webhook secret")
}

// TestGlobalWebhookURL: serve.webhook_url must be an http(s) URL without credentials, or the
// server does not start.
func TestGlobalWebhookURL(t *testing.T) {
	for _, u := range []string{"ftp://hooks.test/x", "http://user:pw@hooks.test/x", "hooks.test/x"} {
		t.Run(u, func(t *testing.T) {
			c := startServerConfig(t)
			c.Serve.WebhookSecret, c.Serve.WebhookURL = "webhook-secret-0123456789", u
			s, err := Start(t.Context(), Options{Config: c, Resolver: &fakeResolver{}})
			if s != nil {
				s.Shutdown(t.Context())
			}
			require.ErrorContains(t, err, "serve.webhook_url")
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

// TestWebhookURLSurvivesRestart: a submission's webhook URL is kept on disk (owner-only) until
// its final verdict, so a server restarted meanwhile still calls it; the verdict consumes it.
func TestWebhookURLSurvivesRestart(t *testing.T) {
	got := make(chan delivery, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{path: r.URL.Path, hdr: r.Header.Clone(), body: b}
	}))
	t.Cleanup(recv.Close)
	store := t.TempDir()
	secret := "webhook-secret-0123456789"
	opts := func(o *Options) {
		o.Config.Store, o.Config.Serve.WebhookSecret = store, secret
		o.Config.Sources.AllowCIDRs = []string{"127.0.0.0/8"}
		o.Resolver = &fakeResolver{}
	}
	first := startServer(t, opts)
	first.setHook("kept-1", recv.URL+"/kept")
	kept := filepath.Join(store, "webhooks", "kept-1")
	fi, err := os.Stat(kept)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	first.Shutdown(t.Context())

	s := startServer(t, opts)
	putVerdict(t, s, finalVerdict(t, s, "kept-1", laev1.VerdictReal, time.Now()))
	select {
	case d := <-got:
		require.Equal(t, "/kept", d.path)
		require.NoError(t, webhook.Verify([]byte(secret), d.hdr.Get(webhook.HeaderTimestamp), d.hdr.Get(webhook.HeaderSignature),
			d.body, time.Now(), 5*time.Minute))
	case <-time.After(time.Minute):
		t.Fatal("the kept webhook URL was not called after the restart")
	}
	_, err = os.Stat(kept)
	require.ErrorIs(t, err, os.ErrNotExist, "consumed by the final verdict")
}
