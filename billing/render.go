package billing

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"mime"
	"net/http"
	"strings"

	"github.com/apikit/apikit/problem"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// protect wraps a browser-facing handler in the service's cross-origin
// protection, whose refusals go through fail (ErrCrossOrigin, 403), so
// that the handler protects itself on any router.
func (s *Service) protect(h http.HandlerFunc) http.Handler { return s.cop.Handler(h) }

// allow applies Options.Limiter to the request's client; when it refuses
// (or fails: fail closed) it answers 429 and returns false.
func (s *Service) allow(w http.ResponseWriter, r *http.Request, scope string) bool {
	ok, err := s.opts.Limiter.Allow(r.Context(), scope+s.opts.ClientKey(r))
	if err != nil {
		s.opts.Logger.Warn("billing: limiter failed; refusing", "scope", strings.TrimSuffix(scope, ":"), "err", err)
		ok = false
	}
	if !ok {
		s.stats.limited.Add(1)
		w.Header().Set("Retry-After", "60")
		s.fail(w, r, http.StatusTooManyRequests, ErrRateLimited)
	}
	return ok
}

// redirect answers 303 See Other to target, or {"url": target} to JSON
// clients.
func (s *Service) redirect(w http.ResponseWriter, r *http.Request, target string) {
	w.Header().Set("Cache-Control", "no-store")
	if isJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"url": target})
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// fail writes an error response through Options.ErrorHandler, or as an
// HTML page for browsers and a problem document for everyone else.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if s.opts.ErrorHandler != nil {
		s.opts.ErrorHandler(w, r, status, err)
		return
	}
	if !isJSON(r) && acceptsHTML(r) {
		s.render(w, status, "error", map[string]any{
			"Title": http.StatusText(status), "Message": PublicMessage(err), "HomeURL": s.opts.CancelURL,
		})
		return
	}
	problem.Write(w, problem.New(status, ErrorCode(err), PublicMessage(err)))
}

func (s *Service) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.opts.Logger.Error("billing: rendering a page", "page", name, "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func isJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json" || (strings.Contains(r.Header.Get("Accept"), "application/json") && !acceptsHTML(r))
}

func acceptsHTML(r *http.Request) bool { return strings.Contains(r.Header.Get("Accept"), "text/html") }

// method answers 405 with Allow unless r uses one of the methods.
func (s *Service) method(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	s.fail(w, r, http.StatusMethodNotAllowed, ErrBadRequest)
	return false
}

// signedIn returns the signed-in user ([Options.CurrentUser]); without one
// it sends browsers to [Options.SignInURL], answers JSON clients 401, and
// reports false.
func (s *Service) signedIn(w http.ResponseWriter, r *http.Request) (int64, bool) {
	uid, ok := s.opts.CurrentUser(r.Context())
	if ok {
		return uid, true
	}
	if isJSON(r) || !acceptsHTML(r) {
		s.fail(w, r, http.StatusUnauthorized, ErrNotSignedIn)
	} else {
		s.redirect(w, r, s.opts.SignInURL)
	}
	return 0, false
}
