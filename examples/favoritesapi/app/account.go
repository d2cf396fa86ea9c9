package app

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/ratelimit"
)

// accountPage is what /app/account shows: the user's address, the form
// to change it, and the form that deletes the account.
type accountPage struct {
	Email    string
	Sessions []magiclink.SessionInfo
	// Fresh: the user signed in within FreshSignIn, so the account may be
	// deleted; otherwise the page asks them to sign in again first.
	Fresh       bool
	Subscribed  bool
	AtPeriodEnd bool // ACCOUNT_DELETE_AT_PERIOD_END
	Notice      string
	Error       string
}

func (s *Server) account(r *http.Request) (accountPage, error) {
	ctx := r.Context()
	u, _ := magiclink.UserFrom(ctx)
	p := accountPage{Email: u.Email, Fresh: s.fresh(u), AtPeriodEnd: s.cfg.AccountDeleteAtPeriodEnd}
	var err error
	if p.Sessions, err = s.login.Sessions(ctx, r, u.ID); err != nil {
		return p, err
	}
	sub, ok, err := s.billing.Subscription(ctx, u.ID)
	if err != nil {
		return p, err
	}
	p.Subscribed = ok && sub.Status != "canceled"
	return p, nil
}

func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, status int, notice, msg string) {
	p, err := s.account(r)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	p.Notice, p.Error = notice, msg
	s.render(w, r, status, "account", "Your FavoritesAPI account settings", p)
}

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) {
	s.renderAccount(w, r, http.StatusOK, "", "")
}

// readForm parses a small form body, answering 400 or 413 itself.
func (s *Server) readAccountForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		status := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		s.renderAccount(w, r, status, "", "That form could not be read.")
		return false
	}
	return true
}

// handleChangeEmail sends a link to the new address; only following it
// changes the account's address. The answer is the same whether or not
// the address belongs to another account.
func (s *Server) handleChangeEmail(w http.ResponseWriter, r *http.Request) {
	if !s.readAccountForm(w, r) {
		return
	}
	u, _ := magiclink.UserFrom(r.Context())
	email := strings.TrimSpace(r.PostForm.Get("email"))
	err := s.login.RequestEmailChange(r.Context(), u.ID, email)
	switch {
	case err == nil:
		s.renderAccount(w, r, http.StatusOK,
			"We sent a link to "+email+". Your address changes when you follow it; until then, sign in with your current one.", "")
	case magiclink.StatusCode(err) >= 500 || magiclink.StatusCode(err) == 0:
		s.pageError(w, r, err)
	default:
		// An invalid address, the same address, too many requests.
		s.renderAccount(w, r, magiclink.StatusCode(err), "", magiclink.PublicMessage(err))
	}
}

// accountActionsPerHour bounds the account page's POSTs (email changes,
// ending sessions, deletion) per client.
const accountActionsPerHour = 30

// keyActionsPerHour bounds the dashboard's key forms (create, revoke,
// roll) per client: each writes the database, the security log and, for
// revoke and roll, a message to every instance; a free account costs a
// stranger only an email address.
const keyActionsPerHour = 100

// limitAccount refuses a client's account actions past
// accountActionsPerHour (429 with Retry-After), failing closed.
func (s *Server) limitAccount(next http.HandlerFunc) http.HandlerFunc {
	allow := s.abuseLimiter("account", ratelimit.PerHour(accountActionsPerHour))
	return s.limitClient("account", allow, time.Hour, next, func(w http.ResponseWriter, r *http.Request) {
		s.renderAccount(w, r, http.StatusTooManyRequests, "", "Too many account changes from your network. Try again later.")
	})
}

// limitKeys refuses a client's key actions past keyActionsPerHour (429
// with Retry-After), failing closed.
func (s *Server) limitKeys(next http.HandlerFunc) http.HandlerFunc {
	allow := s.abuseLimiter("keys", ratelimit.PerHour(keyActionsPerHour))
	return s.limitClient("keys", allow, time.Hour, next, func(w http.ResponseWriter, r *http.Request) {
		s.dashboardError(w, r, http.StatusTooManyRequests, "Too many key changes from your network. Try again later.")
	})
}

// limitClient lets a client's requests through to next while allow, a
// per-client limit (named name in the log), allows them; past it, refuse
// answers, after a Retry-After header of retryAfter. A limiter that fails
// refuses.
func (s *Server) limitClient(name string, allow magiclink.LimiterFunc, retryAfter time.Duration, next, refuse http.HandlerFunc) http.HandlerFunc {
	retry := strconv.Itoa(int(retryAfter / time.Second))
	return func(w http.ResponseWriter, r *http.Request) {
		ok, err := allow(r.Context(), s.clientKey(r))
		if err != nil {
			s.logger.Warn("per-client limiter failed; refusing", "limit", name, "error", err)
		}
		if !ok {
			w.Header().Set("Retry-After", retry)
			refuse(w, r)
			return
		}
		next(w, r)
	}
}

// emailChanged is magiclink's OnEmailChanged: Stripe's customer gets the
// new address. A failure is logged (the change itself is done; billing's
// update is idempotent, so the operator, or the next change, retries it).
// A client that leaves does not cut the call short.
func (s *Server) emailChanged(ctx context.Context, userID int64, _, newEmail string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.billing.UpdateCustomerEmail(ctx, userID, newEmail); err != nil {
		s.logger.Error("email change: updating the Stripe customer", "user", userID, "error", err)
	}
}
