package serve

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Authentication. With tokens configured (serve.tokens_file, LAE_SERVE_TOKENS) every route
// but /healthz, /readyz, /api/openapi.json, the page's static assets, the login form and (unless
// serve.metrics_auth) /metrics needs one:
//
//   - API clients send "Authorization: Bearer <token>"; a missing or wrong one is 401 with
//     WWW-Authenticate: Bearer.
//   - The live page cannot: EventSource sends no headers, and the page's code is the
//     front-end's. So a browser signs in once at /login (a form POST, so that the token never
//     sits in a URL, a history entry or a log line) and gets the token back as an HttpOnly,
//     SameSite=Strict session cookie (Secure when served over TLS). A cookie alone does not
//     authorize a state-changing request from another origin: those need a same-origin
//     Origin/Sec-Fetch-Site (defence in depth behind SameSite). POST /logout clears it.
//
// Tokens are compared as SHA-256 digests with subtle.ConstantTimeCompare, against every
// configured token (no early exit), so timing tells nothing of a token's prefix. Without
// tokens everything is open: lae serve allows that on loopback only (config.ValidateServe).

// cookieName is the session cookie of the live page.
const cookieName = "lae_token"

// authn checks requests against the configured tokens.
type authn struct {
	digests [][32]byte
}

func newAuthn(tokens []string) *authn {
	a := &authn{}
	for _, t := range tokens {
		a.digests = append(a.digests, sha256.Sum256([]byte(t)))
	}
	return a
}

// enabled reports whether tokens are required.
func (a *authn) enabled() bool { return len(a.digests) > 0 }

// valid reports whether tok is a configured token, in time independent of which one.
func (a *authn) valid(tok string) bool {
	if tok == "" {
		return false
	}
	d := sha256.Sum256([]byte(tok))
	ok := 0
	for i := range a.digests {
		ok |= subtle.ConstantTimeCompare(d[:], a.digests[i][:])
	}
	return ok == 1
}

// bearer is the token of an Authorization header ("" when there is none or it is not Bearer).
func bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// allowed reports whether r carries a valid token: a bearer token, or the session cookie on a
// same-origin request.
func (a *authn) allowed(r *http.Request) bool {
	if !a.enabled() {
		return true
	}
	if r.Header.Get("Authorization") != "" {
		return a.valid(bearer(r))
	}
	c, err := r.Cookie(cookieName)
	if err != nil {
		return false
	}
	tok, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || !a.valid(string(tok)) {
		return false
	}
	return !isUnsafe(r.Method) || sameOrigin(r)
}

// sameOrigin reports whether a browser says the request comes from this server's own pages.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
	}
	return true
}

// require serves h to requests with a valid token, or that open says need none.
func (a *authn) require(h http.Handler, open func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.allowed(r) || open(r) {
			h.ServeHTTP(w, r)
			return
		}
		challenge := `Bearer realm="lae"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		httpError(w, http.StatusUnauthorized, "authentication required: send Authorization: Bearer <token>")
	})
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>lae: sign in</title>
<style>body{font:16px system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}
input,button{font:inherit;padding:.4rem;width:100%;box-sizing:border-box;margin:.3rem 0}
.err{color:#b00020}</style></head><body>
<h1>lae</h1>
{{if .}}<p class="err" role="alert">{{.}}</p>{{end}}
<form method="post" action="/login">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form></body></html>
`))

func loginHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
}

func (a *authn) loginForm(w http.ResponseWriter, _ *http.Request) {
	if !a.enabled() {
		loginHeaders(w)
		w.Header().Set("Location", "/")
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	loginHeaders(w)
	_ = loginPage.Execute(w, "")
}

func (a *authn) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		httpError(w, http.StatusBadRequest, "malformed login form")
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	if a.enabled() && !a.valid(tok) {
		loginHeaders(w)
		w.WriteHeader(http.StatusUnauthorized)
		_ = loginPage.Execute(w, "That token is not valid.")
		return
	}
	if a.enabled() {
		// Encoded: a token may hold bytes a cookie value may not (";", ",", quotes).
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: base64.RawURLEncoding.EncodeToString([]byte(tok)), Path: "/", HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int((30 * 24 * time.Hour).Seconds())})
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (a *authn) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
