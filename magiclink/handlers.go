package magiclink

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
)

const (
	verifyPath = "/login/verify"
	logoutPath = "/logout"
	// maxBody caps login and verification request bodies.
	maxBody = 8 << 10
)

// Register mounts the handlers on mux:
//
//	GET  /login          the login form (at LoginPath, if set)
//	POST /login          RequestHandler (at LoginPath, if set)
//	GET  /login/verify   VerifyHandler's confirmation page
//	POST /login/verify   VerifyHandler
//	GET  /login/email/verify   EmailChangeHandler's confirmation page
//	POST /login/email/verify   EmailChangeHandler
//	POST /logout         LogoutHandler
//	POST /login/code     CodeHandler (other methods: 405)
//
// Every handler refuses cross-origin POSTs itself (see [Service.Handler]),
// so Register adds nothing but the routes. Routers other than
// [http.ServeMux] mount [Service.Handler], or the handlers one by one.
func (s *Service) Register(mux *http.ServeMux) {
	mux.Handle("GET "+s.opts.LoginPath, s.LoginPageHandler())
	mux.Handle("POST "+s.opts.LoginPath, s.RequestHandler())
	mux.Handle("GET "+verifyPath, s.VerifyHandler())
	mux.Handle("POST "+verifyPath, s.VerifyHandler())
	mux.Handle("GET "+emailChangePath, s.EmailChangeHandler())
	mux.Handle("POST "+emailChangePath, s.EmailChangeHandler())
	mux.Handle("POST "+logoutPath, s.LogoutHandler())
	mux.Handle(codePath, s.CodeHandler())
}

// Handler returns an http.Handler that serves the routes [Service.Register]
// mounts (LoginPath, /login/verify, /login/code, /login/email/verify and /logout), by
// the request's full path, for any router: with go-chi/chi,
//
//	r.Mount("/login", login.Handler()) // /login, /login/verify, /login/code, /login/email/verify
//	r.Handle("/logout", login.Handler())
//
// It answers other paths with [ErrNotFound], and methods a route does not
// serve with [ErrMethodNotAllowed], through [Options.ErrorHandler].
//
// Like every handler of the Service, it refuses cross-origin browser
// POSTs itself, with [http.CrossOriginProtection] (403, [ErrCrossOrigin]),
// whatever router mounts it and whatever middleware it is behind;
// [Options.TrustedOrigins] names other origins whose pages may post to it.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	page, request := s.LoginPageHandler(), s.RequestHandler()
	mux.Handle(s.opts.LoginPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			page.ServeHTTP(w, r)
		default:
			request.ServeHTTP(w, r) // POST, or 405 listing POST
		}
	}))
	if s.opts.LoginPath != verifyPath {
		mux.Handle(verifyPath, s.VerifyHandler())
	}
	if s.opts.LoginPath != emailChangePath {
		mux.Handle(emailChangePath, s.EmailChangeHandler())
	}
	if s.opts.LoginPath != codePath {
		mux.Handle(codePath, s.CodeHandler())
	}
	if s.opts.LoginPath != logoutPath {
		mux.Handle(logoutPath, s.LogoutHandler())
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.refuse(w, r, refusal(ErrNotFound, ""))
	}))
	return mux
}

// protect wraps h with the Service's cross-origin protection.
// and records r's client for the sessions it may start ([Service.SignIn]).
func (s *Service) protect(h http.HandlerFunc) http.Handler {
	return s.cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(w, s.withClient(r))
	}))
}

// LoginPageHandler serves the login form (GET /login).
func (s *Service) LoginPageHandler() http.Handler {
	return s.protect(func(w http.ResponseWriter, r *http.Request) {
		s.page(w, http.StatusOK, tmplLogin, PageData{Title: "Sign in"})
	})
}

// wantsJSON reports whether the client speaks JSON rather than HTML: a
// JSON request body, or an Accept header that prefers JSON.
func wantsJSON(r *http.Request) bool {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		return true
	}
	accept := r.Header.Get("Accept")
	return (strings.Contains(accept, "application/json") || strings.Contains(accept, "application/problem+json")) &&
		!strings.Contains(accept, "text/html")
}

// readField reads one field from a form or JSON body.
func readField(w http.ResponseWriter, r *http.Request, name string) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return "", err
		}
		v, _ := body[name].(string)
		return v, nil
	}
	if err := r.ParseForm(); err != nil {
		return "", err
	}
	return r.PostForm.Get(name), nil
}

// badBody is the refusal of a body that could not be read.
func badBody(err error, field string) *Error {
	sentinel := ErrBadRequest
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		sentinel = errBodyTooLarge
	}
	return refusal(sentinel, "The request body is not a form or JSON object with "+field+".")
}

func (s *Service) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	s.refuse(w, r, refusal(ErrMethodNotAllowed, "Use "+strings.ReplaceAll(allow, ", ", " or ")+"."))
}

func unavailable(sentinel error, detail string) *Error {
	return refusal(sentinel, detail)
}

// LogoutHandler handles POST /logout: it deletes the session in the store,
// so the cookie stops working everywhere at once, clears the cookie, and
// redirects to AfterLogoutPath with 303 (JSON clients get 204). Signing
// out without a session is not an error. Ending a session is reported to
// [Options.Audit] (EventSignedOut; the session is read first, for its
// user, only when Audit is set).
func (s *Service) LogoutHandler() http.Handler {
	return s.protect(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			s.methodNotAllowed(w, r, http.MethodPost)
			return
		}
		if c, err := r.Cookie(s.cookie); err == nil && wellFormed(c.Value) {
			hash := hashSecret(c.Value)
			var userID int64 // the session's user, read only for the audit
			if s.opts.Audit != nil {
				se, found, err := s.store.Session(r.Context(), hash)
				if err != nil {
					s.stats.storeErrors.Add(1)
					s.logger.Warn("magiclink: reading a session at logout for the audit log", "err", err)
				} else if found {
					userID = se.UserID
				}
			}
			found, err := s.store.DeleteSession(r.Context(), hash)
			if err != nil {
				s.stats.storeErrors.Add(1)
				s.logger.Error("magiclink: deleting a session at logout", "err", err)
				s.refuse(w, r, unavailable(ErrUnavailable, "Signing out is not possible right now. Try again shortly."))
				return
			}
			if found {
				s.stats.sessionsRevoked.Add(1)
				if userID != 0 {
					s.audit(r.Context(), AuditEvent{Kind: EventSignedOut, UserID: userID, Actor: ActorUser})
				}
			}
		}
		s.clearCookie(w)
		w.Header().Set("Cache-Control", "no-store")
		if wantsJSON(r) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.Redirect(w, r, s.opts.AfterLogoutPath, http.StatusSeeOther)
	})
}
