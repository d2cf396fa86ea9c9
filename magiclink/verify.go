package magiclink

import (
	"encoding/json"
	"net/http"
)

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
	return s.linkHandler(tmplVerify, "Confirm sign-in", invalidToken, s.verify)
}

// linkHandler serves an emailed link that only a POST acts on: GET and
// HEAD render the confirmation page with the token in its form (a
// malformed token gets invalid instead), POST calls post, and other
// methods get 405. Cross-origin POSTs are refused.
func (s *Service) linkHandler(page, title string, invalid func() *Error, post http.HandlerFunc) http.Handler {
	return s.protect(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			token := r.URL.Query().Get("token")
			if !wellFormed(token) {
				s.stats.verifyFailed.Add(1)
				s.refuse(w, r, invalid())
				return
			}
			s.page(w, http.StatusOK, page, PageData{Title: title, Token: token})
		case http.MethodPost:
			post(w, r)
		default:
			s.methodNotAllowed(w, r, "GET, HEAD, POST")
		}
	})
}

// postedToken reads the token of a confirmation POST from client. A
// client that VerifyLimiter has blocked is refused before its body is
// read, and an unreadable body or a malformed token counts as a failure
// (answered with invalid); ok is false when r has been answered.
func (s *Service) postedToken(w http.ResponseWriter, r *http.Request, client string, invalid func() *Error) (token string, ok bool) {
	if wait := s.blocks.blocked(client, s.opts.Now()); wait > 0 {
		s.stats.verifyLimited.Add(1)
		s.refuse(w, r, verifyLimited().after(wait))
		return "", false
	}
	token, err := readField(w, r, "token")
	if err != nil {
		s.verifyFailed(w, r, client, badBody(err, "a token"))
		return "", false
	}
	if !wellFormed(token) {
		s.verifyFailed(w, r, client, invalid())
		return "", false
	}
	return token, true
}

func invalidToken() *Error {
	return refusal(ErrInvalidToken,
		"The sign-in link has expired, has been used, or was replaced by a newer one. Ask for a new one.")
}

func verifyLimited() *Error {
	return refusal(ErrRateLimited,
		"Too many failed sign-in attempts. Wait a minute and try again.")
}

func (s *Service) verify(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	client := s.opts.ClientKey(r)
	token, ok := s.postedToken(w, r, client, invalidToken)
	if !ok {
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
	s.signedIn(w, r, client, email, "link", invalidToken)
}

// signedIn finishes a sign-in whose token (link or code) was spent for
// email: it confirms the address, ends the sessions that predate a first
// proof, replaces this browser's session and answers r. method ("link"
// or "code") is reported to Options.Audit.
func (s *Service) signedIn(w http.ResponseWriter, r *http.Request, client, email, method string, invalid func() *Error) {
	ctx := r.Context()
	now := s.opts.Now()
	userID, first, found, err := s.store.ConfirmEmail(ctx, email, s.opts.AllowSignup, now)
	if err != nil {
		s.stats.storeErrors.Add(1)
		s.logger.Error("magiclink: confirming the address", "err", err)
		s.refuse(w, r, unavailable(ErrUnavailable, "Signing in is not possible right now. Ask for a new link shortly."))
		return
	}
	if !found { // the account was deleted after the link was sent
		s.verifyFailed(w, r, client, invalid())
		return
	}
	detail := map[string]string{"method": method}
	if first {
		// The first proof of the address: any session that existed before
		// it was not started by the address's owner.
		n, err := s.store.DeleteUserSessions(ctx, userID)
		if err != nil {
			s.stats.storeErrors.Add(1)
			s.logger.Error("magiclink: ending sessions before the first proof", "user", userID, "err", err)
			s.refuse(w, r, unavailable(ErrUnavailable, "Signing in is not possible right now. Ask for a new link shortly."))
			return
		}
		detail["first_sign_in"], detail["sessions_ended"] = "true", itoa(n)
	}
	// Whatever session this browser had (perhaps planted by someone
	// else) is replaced, never adopted.
	if c, err := r.Cookie(s.cookie); err == nil && wellFormed(c.Value) {
		if _, err := s.store.DeleteSession(ctx, hashSecret(c.Value)); err != nil {
			s.logger.Warn("magiclink: deleting the previous session", "err", err)
		}
	}
	if err := s.signIn(ctx, w, r, userID, detail); err != nil {
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
