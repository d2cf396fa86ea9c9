package magiclink

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/apikit/apikit/internal/emailaddr"
)

// RequestHandler handles POST /login: it reads "email" from a form or a
// JSON body, normalises and validates it (a clear 400 if it is not an
// address), applies SendClientLimiter per client and SendLimiter per
// address (429), and queues the login email, at most QueuePerClient at a
// time per client. The account is looked up off the request path, by the
// mail worker, so the response — its status, body, headers and timing — is
// the same whether or not the account exists, and a full queue answers 503
// for every address alike. Browsers get the "check your email" page; JSON
// clients get 202 and {"status":"sent"}.
//
// Both also get a short-lived cookie (__Host-login, HttpOnly, for
// TokenTTL) holding a random nonce, and the email carries, beside the
// link, an 8-digit code that [Service.CodeHandler] accepts only from a
// request with that cookie: the browser that asked.
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
			s.refuse(w, r, refusal(ErrRateLimited,
				"Too many sign-in links were requested from your network. Try again later.").after(10*time.Minute))
			return
		}
		// The asking browser gets a nonce in a cookie; the email's code
		// works only beside it. The cookie is set whether or not the
		// address has an account, so the answer does not tell.
		nonce, nonceHash := newSecret()
		if e := s.sendLink(r.Context(), email, client, nonceHash); e != nil {
			s.refuse(w, r, e)
			return
		}
		http.SetCookie(w, s.loginCookie(nonce, s.opts.TokenTTL))
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
		ref := refusal(ErrInvalidEmail, reason)
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
	if e := s.sendLink(ctx, email, "", nil); e != nil {
		return e
	}
	return nil
}

// sendLink applies SendLimiter to the (normalised) address and queues the
// email, charging it to client's share of the queue unless client is "".
// With a nonceHash the email carries a sign-in code bound to it.
func (s *Service) sendLink(ctx context.Context, email, client string, nonceHash []byte) *Error {
	allowed, err := s.opts.SendLimiter.Allow(ctx, email)
	if err != nil {
		s.logger.Warn("magiclink: send limiter failed; refusing", "to", RedactEmail(email), "err", err)
	}
	if !allowed {
		s.stats.linksLimited.Add(1)
		return refusal(ErrRateLimited,
			"Too many sign-in links were requested for this address. Use the latest one, or try again later.").after(time.Hour)
	}
	switch err := s.enqueue(mailJob{email: email, client: client, nonceHash: nonceHash, reqCtx: s.requestContext(ctx)}); {
	case errors.Is(err, errClientQueueFull):
		return refusal(ErrRateLimited,
			"Too many sign-in links were requested from your network. Try again in a minute.").after(time.Minute)
	case err != nil:
		s.logger.Error("magiclink: login request refused", "err", err)
		return unavailable(err, "Sign-in emails cannot be sent right now. Try again shortly.").after(30 * time.Second)
	}
	s.stats.linksRequested.Add(1)
	return nil
}
