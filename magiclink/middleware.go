package magiclink

import (
	"context"
	"errors"
	"net/http"
	"time"
)

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
			next.ServeHTTP(w, r.WithContext(NewContext(s.withClient(r).Context(), u)))
		case errors.Is(err, errNoSession):
			s.refuse(w, r, refusal(ErrUnauthenticated, ""))
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
		ctx := s.withClient(r).Context()
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

// User is the signed-in user of a request, from [UserFrom].
type User struct {
	ID    int64
	Email string
	// SessionExpiresAt is when the session ends at the latest.
	SessionExpiresAt time.Time
	// SignedInAt is when the session started: when its user last proved
	// the address (by link or code) in this browser. An application can
	// ask for a recent sign-in before a grave step, such as deleting the
	// account: time.Since(u.SignedInAt) < 10*time.Minute.
	SignedInAt time.Time
}
