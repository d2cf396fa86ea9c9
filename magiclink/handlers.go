package magiclink

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/apikit/apikit/internal/emailaddr"
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
// Every handler refuses cross-origin POSTs itself (see [Service.Handler]),
// so Register adds nothing but the routes. Routers other than
// [http.ServeMux] mount [Service.Handler], or the handlers one by one.
func (s *Service) Register(mux *http.ServeMux) {
	mux.Handle("GET "+s.opts.LoginPath, s.LoginPageHandler())
	mux.Handle("POST "+s.opts.LoginPath, s.RequestHandler())
	mux.Handle("GET "+verifyPath, s.VerifyHandler())
	mux.Handle("POST "+verifyPath, s.VerifyHandler())
	mux.Handle("POST "+logoutPath, s.LogoutHandler())
}

// Handler returns an http.Handler that serves the routes [Service.Register]
// mounts (LoginPath, /login/verify and /logout), by the request's full
// path, for any router: with go-chi/chi,
//
//	r.Mount("/login", login.Handler()) // /login and /login/verify
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
	if s.opts.LoginPath != logoutPath {
		mux.Handle(logoutPath, s.LogoutHandler())
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.refuse(w, r, refusal(ErrNotFound, http.StatusNotFound, "not_found", "There is no such page."))
	}))
	return mux
}

// protect wraps h with the Service's cross-origin protection.
func (s *Service) protect(h http.HandlerFunc) http.Handler { return s.cop.Handler(h) }

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
	status := http.StatusBadRequest
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		status = http.StatusRequestEntityTooLarge
	}
	return refusal(ErrBadRequest, status, "invalid_body", "The request body is not a form or JSON object with "+field+".")
}

func (s *Service) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	s.refuse(w, r, refusal(ErrMethodNotAllowed, http.StatusMethodNotAllowed, "method_not_allowed", "Use "+strings.ReplaceAll(allow, ", ", " or ")+"."))
}

func unavailable(sentinel error, detail string) *Error {
	return refusal(sentinel, http.StatusServiceUnavailable, "unavailable", detail)
}

// RequestHandler handles POST /login: it reads "email" from a form or a
// JSON body, normalises and validates it (a clear 400 if it is not an
// address), applies SendClientLimiter per client and SendLimiter per
// address (429), and queues the login email, at most QueuePerClient at a
// time per client. The account is looked up off the request path, by the
// mail worker, so the response — its status, body, headers and timing — is
// the same whether or not the account exists, and a full queue answers 503
// for every address alike. Browsers get the "check your email" page; JSON
// clients get 202 and {"status":"sent"}.
func (s *Service) RequestHandler() http.Handler {
	return s.protect(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			s.methodNotAllowed(w, r, http.MethodPost)
			return
		}
		raw, err := readField(w, r, "email")
		if err != nil {
			s.stats.linksInvalid.Add(1)
			s.refuse(w, r, badBody(err, "an email"))
			return
		}
		email, err := normalize(raw)
		if err != nil {
			s.stats.linksInvalid.Add(1)
			s.refuse(w, r, err.(*Error))
			return
		}
		client := s.opts.ClientKey(r)
		allowed, err := s.opts.SendClientLimiter.Allow(r.Context(), client)
		if err != nil {
			s.logger.Warn("magiclink: per-client send limiter failed; refusing", "err", err)
		}
		if !allowed {
			s.stats.clientLimited.Add(1)
			s.refuse(w, r, refusal(ErrRateLimited, http.StatusTooManyRequests, "rate_limited",
				"Too many sign-in links were requested from your network. Try again later.").after(10*time.Minute))
			return
		}
		if e := s.sendLink(r.Context(), email, client); e != nil {
			s.refuse(w, r, e)
			return
		}
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

// normalize returns the normalised address, or an *Error wrapping
// ErrInvalidEmail that says why it is not one.
func normalize(raw string) (string, error) {
	email, err := emailaddr.Normalize(raw)
	if err != nil {
		reason := "This is not an email address."
		var e *emailaddr.Error
		if errors.As(err, &e) {
			reason = "This is not an email address: " + e.Reason + "."
		}
		ref := refusal(ErrInvalidEmail, http.StatusBadRequest, "invalid_email", reason)
		ref.email = raw
		return "", ref
	}
	return email, nil
}

// SendLink emails a sign-in link to the address, as POST /login does: it
// applies SendLimiter to the address and queues the email for the mail
// workers, and returns once it is queued. Billing's success page calls it
// after a paid Checkout ("we sent a sign-in link to a•••@example.org").
//
// It returns an [*Error] wrapping [ErrInvalidEmail] if email is not an
// address, one wrapping [ErrRateLimited] if the address has had its share
// of links, and one wrapping [ErrQueueFull] or [ErrClosed] if the email
// cannot be queued; the caller can say so. As for POST /login, the account
// is looked up by the mail worker: without [Options.AllowSignup] an address
// with no account gets no email, and SendLink does not tell.
func (s *Service) SendLink(ctx context.Context, email string) error {
	email, err := normalize(email)
	if err != nil {
		s.stats.linksInvalid.Add(1)
		return err
	}
	if e := s.sendLink(ctx, email, ""); e != nil {
		return e
	}
	return nil
}

// sendLink applies SendLimiter to the (normalised) address and queues the
// email, charging it to client's share of the queue unless client is "".
func (s *Service) sendLink(ctx context.Context, email, client string) *Error {
	allowed, err := s.opts.SendLimiter.Allow(ctx, email)
	if err != nil {
		s.logger.Warn("magiclink: send limiter failed; refusing", "to", RedactEmail(email), "err", err)
	}
	if !allowed {
		s.stats.linksLimited.Add(1)
		return refusal(ErrRateLimited, http.StatusTooManyRequests, "rate_limited",
			"Too many sign-in links were requested for this address. Use the latest one, or try again later.").after(time.Hour)
	}
	switch err := s.enqueue(mailJob{email: email, client: client}); {
	case errors.Is(err, errClientQueueFull):
		return refusal(ErrRateLimited, http.StatusTooManyRequests, "rate_limited",
			"Too many sign-in links were requested from your network. Try again in a minute.").after(time.Minute)
	case err != nil:
		s.logger.Error("magiclink: login request refused", "err", err)
		return unavailable(err, "Sign-in emails cannot be sent right now. Try again shortly.").after(30 * time.Second)
	}
	s.stats.linksRequested.Add(1)
	return nil
}

// VerifyHandler handles /login/verify. GET renders a confirmation page
// with a button that posts the token back (served with Referrer-Policy:
// no-referrer, and without scripts), so that mail scanners that fetch
// links, even ones that run JavaScript, do not spend the token. POST
// spends the token, starts a session ([Service.SignIn]) and redirects to
// AfterLoginPath with 303; a JSON client gets 200 and the user instead. An
// unknown, used or expired token gets a page (or 400 problem) saying so,
// with a link to ask for a new one.
//
// Failed attempts are limited per client (see [Options.VerifyLimiter]): a
// client over its budget of failures gets 429 with Retry-After, before its
// token is looked up, while other clients, even behind the same proxy
// with other keys, are not affected; successful sign-ins spend nothing.
func (s *Service) VerifyHandler() http.Handler {
	return s.protect(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			token := r.URL.Query().Get("token")
			if !wellFormed(token) {
				s.stats.verifyFailed.Add(1)
				s.refuse(w, r, invalidToken())
				return
			}
			s.page(w, http.StatusOK, tmplVerify, PageData{Title: "Confirm sign-in", Token: token})
		case http.MethodPost:
			s.verify(w, r)
		default:
			s.methodNotAllowed(w, r, "GET, HEAD, POST")
		}
	})
}

func invalidToken() *Error {
	return refusal(ErrInvalidToken, http.StatusBadRequest, "invalid_token",
		"The sign-in link has expired, has been used, or was replaced by a newer one. Ask for a new one.")
}

func verifyLimited() *Error {
	return refusal(ErrRateLimited, http.StatusTooManyRequests, "rate_limited",
		"Too many failed sign-in attempts. Wait a minute and try again.")
}

func (s *Service) verify(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	client := s.opts.ClientKey(r)
	if wait := s.blocks.blocked(client, s.opts.Now()); wait > 0 {
		s.stats.verifyLimited.Add(1)
		s.refuse(w, r, verifyLimited().after(wait))
		return
	}
	token, err := readField(w, r, "token")
	if err != nil {
		s.verifyFailed(w, r, client, badBody(err, "a token"))
		return
	}
	if !wellFormed(token) {
		s.verifyFailed(w, r, client, invalidToken())
		return
	}
	now := s.opts.Now()
	email, ok, err := s.store.ConsumeLoginToken(ctx, hashSecret(token), now)
	if err != nil {
		s.stats.storeErrors.Add(1)
		s.logger.Error("magiclink: consuming a login token", "err", err)
		s.refuse(w, r, unavailable(ErrUnavailable, "Signing in is not possible right now. Try again shortly."))
		return
	}
	if !ok {
		s.verifyFailed(w, r, client, invalidToken())
		return
	}
	userID, first, found, err := s.store.ConfirmEmail(ctx, email, s.opts.AllowSignup, now)
	if err != nil {
		s.stats.storeErrors.Add(1)
		s.logger.Error("magiclink: confirming the address", "err", err)
		s.refuse(w, r, unavailable(ErrUnavailable, "Signing in is not possible right now. Ask for a new link shortly."))
		return
	}
	if !found { // the account was deleted after the link was sent
		s.verifyFailed(w, r, client, invalidToken())
		return
	}
	if first {
		// The first proof of the address: any session that existed before
		// it was not started by the address's owner.
		if _, err := s.store.DeleteUserSessions(ctx, userID); err != nil {
			s.stats.storeErrors.Add(1)
			s.logger.Error("magiclink: ending sessions before the first proof", "user", userID, "err", err)
			s.refuse(w, r, unavailable(ErrUnavailable, "Signing in is not possible right now. Ask for a new link shortly."))
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
		s.refuse(w, r, unavailable(ErrUnavailable, "Signing in is not possible right now. Ask for a new link shortly."))
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

// verifyFailed counts a failed sign-in attempt against the client's budget
// and answers it: with e, or with 429 if that failure was one too many,
// after which the client is blocked for VerifyBlock.
func (s *Service) verifyFailed(w http.ResponseWriter, r *http.Request, client string, e *Error) {
	s.stats.verifyFailed.Add(1)
	allowed, err := s.opts.VerifyLimiter.Allow(r.Context(), client)
	if err != nil {
		s.logger.Warn("magiclink: verify limiter failed; blocking the client", "err", err)
	}
	if !allowed {
		now := s.opts.Now()
		if !s.blocks.block(client, now, now.Add(s.opts.VerifyBlock)) {
			s.logger.Warn("magiclink: too many clients blocked at once; this one's next attempts reach the store")
		}
		s.stats.verifyLimited.Add(1)
		s.refuse(w, r, verifyLimited().after(s.opts.VerifyBlock))
		return
	}
	s.refuse(w, r, e)
}

// LogoutHandler handles POST /logout: it deletes the session in the store,
// so the cookie stops working everywhere at once, clears the cookie, and
// redirects to AfterLogoutPath with 303 (JSON clients get 204). Signing
// out without a session is not an error.
func (s *Service) LogoutHandler() http.Handler {
	return s.protect(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			s.methodNotAllowed(w, r, http.MethodPost)
			return
		}
		if c, err := r.Cookie(s.cookie); err == nil && wellFormed(c.Value) {
			found, err := s.store.DeleteSession(r.Context(), hashSecret(c.Value))
			if err != nil {
				s.stats.storeErrors.Add(1)
				s.logger.Error("magiclink: deleting a session at logout", "err", err)
				s.refuse(w, r, unavailable(ErrUnavailable, "Signing out is not possible right now. Try again shortly."))
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
// the context ([UserFrom]). Others are refused with [ErrUnauthenticated]
// through [Options.ErrorHandler]; by default they are sent to LoginPath
// with 303, or get 401 and a problem document if they asked for JSON
// (Accept: application/json). A cookie naming no valid session is cleared.
// If the store fails it answers 503 (fail closed).
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
			s.refuse(w, r, refusal(ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated", "Sign in first."))
		default:
			s.logger.Error("magiclink: loading a session", "err", err)
			s.refuse(w, r, unavailable(ErrUnavailable, "Your session cannot be checked right now. Try again shortly.").after(5*time.Second))
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
