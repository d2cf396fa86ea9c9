package magiclink

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/apikit/apikit/internal/emailaddr"
	"github.com/apikit/apikit/internal/problem"
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
//	POST /logout         LogoutHandler
//
// The POST routes are wrapped with [http.CrossOriginProtection], so other
// sites cannot post to them (a 403 for a cross-origin browser request).
func (s *Service) Register(mux *http.ServeMux) {
	cop := http.NewCrossOriginProtection()
	mux.Handle("GET "+s.opts.LoginPath, s.LoginPageHandler())
	mux.Handle("POST "+s.opts.LoginPath, cop.Handler(s.RequestHandler()))
	mux.Handle("GET "+verifyPath, s.VerifyHandler())
	mux.Handle("POST "+verifyPath, cop.Handler(s.VerifyHandler()))
	mux.Handle("POST "+logoutPath, cop.Handler(s.LogoutHandler()))
}

// LoginPageHandler serves the login form (GET /login).
func (s *Service) LoginPageHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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

// bodyStatus is the status for a body that could not be read.
func bodyStatus(err error) int {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// fail answers a refused request as a problem (JSON clients) or a page.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	if wantsJSON(r) {
		problem.Write(w, problem.New(status, code, detail))
		return
	}
	s.page(w, status, tmplError, PageData{Title: http.StatusText(status), Error: detail})
}

// RequestHandler handles POST /login: it reads "email" from a form or a
// JSON body, normalises and validates it (a clear 400 if it is not an
// address), applies SendLimiter (429), and queues the login email. The
// account is looked up off the request path, by the mail worker, so the
// response — its status, body, headers and timing — is the same whether or
// not the account exists. Browsers get the "check your email" page; JSON
// clients get 202 and {"status":"sent"}.
func (s *Service) RequestHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			s.fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "Use POST.")
			return
		}
		raw, err := readField(w, r, "email")
		if err != nil {
			s.stats.linksInvalid.Add(1)
			s.fail(w, r, bodyStatus(err), "invalid_body", "The request body is not a form or JSON object with an email.")
			return
		}
		email, err := emailaddr.Normalize(raw)
		if err != nil {
			s.stats.linksInvalid.Add(1)
			reason := "This is not an email address."
			var e *emailaddr.Error
			if errors.As(err, &e) {
				reason = "This is not an email address: " + e.Reason + "."
			}
			if wantsJSON(r) {
				p := problem.New(http.StatusBadRequest, "invalid_email", reason)
				p.InvalidParams = []problem.InvalidParam{{Name: "email", Reason: reason}}
				problem.Write(w, p)
				return
			}
			shown := raw
			if len(shown) > emailaddr.MaxLen || strings.ContainsAny(shown, "\r\n") {
				shown = ""
			}
			s.page(w, http.StatusBadRequest, tmplLogin, PageData{Title: "Sign in", Error: reason, Email: shown})
			return
		}
		allowed, err := s.opts.SendLimiter.Allow(r.Context(), email)
		if err != nil {
			s.logger.Warn("magiclink: send limiter failed; refusing", "to", RedactEmail(email), "err", err)
		}
		if !allowed {
			s.stats.linksLimited.Add(1)
			w.Header().Set("Retry-After", "3600")
			s.fail(w, r, http.StatusTooManyRequests, "rate_limited",
				"Too many sign-in links were requested for this address. Use the latest one, or try again later.")
			return
		}
		if err := s.enqueue(mailJob{email: email}); err != nil {
			s.logger.Error("magiclink: login request refused", "err", err)
			w.Header().Set("Retry-After", "30")
			s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "Sign-in emails cannot be sent right now. Try again shortly.")
			return
		}
		s.stats.linksRequested.Add(1)
		if wantsJSON(r) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"status":"sent","detail":"If the address belongs to an account, a sign-in link is on its way."}` + "\n"))
			return
		}
		s.page(w, http.StatusOK, tmplSent, PageData{Title: "Check your email", Email: email})
	})
}

// VerifyHandler handles /login/verify. GET renders a confirmation page
// with a button that posts the token back (served with Referrer-Policy:
// no-referrer, and without scripts), so that mail scanners that fetch
// links, even ones that run JavaScript, do not spend the token. POST
// applies VerifyLimiter per client (429), spends the token, starts a
// session ([Service.SignIn]) and redirects to AfterLoginPath with 303; a
// JSON client gets 200 and the user instead. An unknown, used or expired
// token gets a page (or 400 problem) saying so, with a link to ask for a
// new one.
func (s *Service) VerifyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			token := r.URL.Query().Get("token")
			if !wellFormed(token) {
				s.stats.verifyFailed.Add(1)
				s.page(w, http.StatusBadRequest, tmplInvalid, PageData{Title: "Link not valid"})
				return
			}
			s.page(w, http.StatusOK, tmplVerify, PageData{Title: "Confirm sign-in", Token: token})
		case http.MethodPost:
			s.verify(w, r)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			s.fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "Use GET or POST.")
		}
	})
}

func (s *Service) verify(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	allowed, err := s.opts.VerifyLimiter.Allow(ctx, s.opts.ClientKey(r))
	if err != nil {
		s.logger.Warn("magiclink: verify limiter failed; refusing", "err", err)
	}
	if !allowed {
		s.stats.verifyLimited.Add(1)
		w.Header().Set("Retry-After", "60")
		s.fail(w, r, http.StatusTooManyRequests, "rate_limited", "Too many sign-in attempts. Wait a minute and try again.")
		return
	}
	token, err := readField(w, r, "token")
	if err != nil {
		s.fail(w, r, bodyStatus(err), "invalid_body", "The request body is not a form or JSON object with a token.")
		return
	}
	if !wellFormed(token) {
		s.invalidLink(w, r)
		return
	}
	now := s.opts.Now()
	email, ok, err := s.store.ConsumeLoginToken(ctx, hashSecret(token), now)
	if err != nil {
		s.stats.storeErrors.Add(1)
		s.logger.Error("magiclink: consuming a login token", "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "Signing in is not possible right now. Try again shortly.")
		return
	}
	if !ok {
		s.invalidLink(w, r)
		return
	}
	userID, first, found, err := s.store.ConfirmEmail(ctx, email, s.opts.AllowSignup, now)
	if err != nil {
		s.stats.storeErrors.Add(1)
		s.logger.Error("magiclink: confirming the address", "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "Signing in is not possible right now. Ask for a new link shortly.")
		return
	}
	if !found { // the account was deleted after the link was sent
		s.invalidLink(w, r)
		return
	}
	if first {
		// The first proof of the address: any session that existed before
		// it was not started by the address's owner.
		if _, err := s.store.DeleteUserSessions(ctx, userID); err != nil {
			s.stats.storeErrors.Add(1)
			s.logger.Error("magiclink: ending sessions before the first proof", "user", userID, "err", err)
			s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "Signing in is not possible right now. Ask for a new link shortly.")
			return
		}
	}
	// Whatever session this browser had (perhaps planted by someone
	// else) is replaced, never adopted.
	if c, err := r.Cookie(s.cookie); err == nil && wellFormed(c.Value) {
		if _, err := s.store.DeleteSession(ctx, hashSecret(c.Value)); err != nil {
			s.logger.Warn("magiclink: deleting the previous session", "err", err)
		}
	}
	if err := s.SignIn(ctx, w, userID); err != nil {
		s.logger.Error("magiclink: starting a session", "user", userID, "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "Signing in is not possible right now. Ask for a new link shortly.")
		return
	}
	s.stats.verifySucceeded.Add(1)
	s.logger.Info("magiclink: signed in", "user", userID)
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"user_id": userID, "email": email})
		return
	}
	http.Redirect(w, r, s.opts.AfterLoginPath, http.StatusSeeOther)
}

func (s *Service) invalidLink(w http.ResponseWriter, r *http.Request) {
	s.stats.verifyFailed.Add(1)
	if wantsJSON(r) {
		problem.Write(w, problem.New(http.StatusBadRequest, "invalid_token",
			"The sign-in link has expired, has been used, or was replaced by a newer one. Ask for a new one."))
		return
	}
	s.page(w, http.StatusBadRequest, tmplInvalid, PageData{Title: "Link not valid"})
}

// LogoutHandler handles POST /logout: it deletes the session in the store,
// so the cookie stops working everywhere at once, clears the cookie, and
// redirects to AfterLogoutPath with 303 (JSON clients get 204). Signing
// out without a session is not an error.
func (s *Service) LogoutHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			s.fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "Use POST.")
			return
		}
		if c, err := r.Cookie(s.cookie); err == nil && wellFormed(c.Value) {
			found, err := s.store.DeleteSession(r.Context(), hashSecret(c.Value))
			if err != nil {
				s.stats.storeErrors.Add(1)
				s.logger.Error("magiclink: deleting a session at logout", "err", err)
				s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "Signing out is not possible right now. Try again shortly.")
				return
			}
			if found {
				s.stats.sessionsRevoked.Add(1)
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

type ctxKey struct{}

// checkedKey marks a context whose request this Service has authenticated
// (with or without a user), so that RequireUser inside LoadUser does not
// look the session up twice.
type checkedKey struct{}

func (s *Service) checked(ctx context.Context) bool {
	v, _ := ctx.Value(checkedKey{}).(*Service)
	return v == s
}

// NewContext returns a context carrying u, for [UserFrom]; handlers' tests
// use it to act as a signed-in user.
func NewContext(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, ctxKey{}, u)
}

// UserFrom returns the signed-in user that [Service.RequireUser] or
// [Service.LoadUser] found for the request.
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(ctxKey{}).(User)
	return u, ok
}

// RequireUser lets only signed-in users through to next, with the user in
// the context ([UserFrom]). Others are sent to LoginPath with 303, or get
// 401 and a problem document if they asked for JSON (Accept:
// application/json). A cookie naming no valid session is cleared. If the
// store fails it answers 503 (fail closed).
func (s *Service) RequireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, stale, err := s.user(r)
		if stale {
			s.clearCookie(w)
		}
		switch {
		case err == nil:
			w.Header().Add("Vary", "Cookie")
			w.Header().Set("Cache-Control", "private, no-store")
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), u)))
		case errors.Is(err, errNoSession):
			if wantsJSON(r) {
				problem.Write(w, problem.New(http.StatusUnauthorized, "unauthenticated", "Sign in first."))
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, s.opts.LoginPath, http.StatusSeeOther)
		default:
			s.logger.Error("magiclink: loading a session", "err", err)
			w.Header().Set("Retry-After", "5")
			s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "Your session cannot be checked right now. Try again shortly.")
		}
	})
}

// LoadUser puts the signed-in user, if any, in the context ([UserFrom])
// and always calls next: for pages that show more to signed-in users. If
// the store fails, the request proceeds as signed out (the failure is
// logged).
func (s *Service) LoadUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, stale, err := s.user(r)
		if stale {
			s.clearCookie(w)
		}
		ctx := r.Context()
		switch {
		case err == nil:
			w.Header().Add("Vary", "Cookie")
			ctx = context.WithValue(NewContext(ctx, u), checkedKey{}, s)
		case errors.Is(err, errNoSession):
			ctx = context.WithValue(ctx, checkedKey{}, s)
		default:
			s.logger.Error("magiclink: loading a session", "err", err)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
