package magiclink

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// SignIn starts a new session for the user and sets its cookie on w. It is
// what a followed login link does. Call it yourself only after this browser
// has proven the account's address some other way (a code you sent to it):
// never because someone paid, knows an id, or holds a link to a page —
// that is how accounts are taken over (see SECURITY.md). It fails with
// [ErrUnknownUser] if there is no such user.
//
// The session records the User-Agent and client address
// ([Options.ClientKey]) of the request, for [Service.Sessions], when ctx
// is (or derives from) the context of a request that passed through one
// of the Service's handlers or its RequireUser or LoadUser middleware;
// otherwise they are empty. [Options.Audit] hears of it (EventSignedIn,
// without a method).
func (s *Service) SignIn(ctx context.Context, w http.ResponseWriter, userID int64) error {
	return s.signIn(ctx, w, nil, userID, nil)
}

// clientKey carries a request's client details in its context.
type clientKey struct{}

type clientDetails struct{ userAgent, ip string }

// withClient returns r with its User-Agent and ClientKey in its context,
// unless they are there already.
func (s *Service) withClient(r *http.Request) *http.Request {
	if _, ok := r.Context().Value(clientKey{}).(clientDetails); ok {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), clientKey{}, clientDetails{r.UserAgent(), s.opts.ClientKey(r)}))
}

// signIn is SignIn; the client details are taken from r if it is not
// nil, and else from ctx. detail goes to Options.Audit's EventSignedIn.
func (s *Service) signIn(ctx context.Context, w http.ResponseWriter, r *http.Request, userID int64, detail map[string]string) error {
	if r != nil {
		ctx = s.withClient(r).Context()
	}
	client, _ := ctx.Value(clientKey{}).(clientDetails)
	if _, found, err := s.store.UserEmail(ctx, userID); err != nil {
		s.stats.storeErrors.Add(1)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	} else if !found {
		return ErrUnknownUser
	}
	id, hash := newSecret()
	now := s.opts.Now()
	se := Session{Hash: hash, UserID: userID, CreatedAt: now, ExpiresAt: now.Add(s.opts.SessionTTL), LastSeenAt: now,
		UserAgent: capDetail(client.userAgent), IP: capDetail(client.ip)}
	if err := s.store.CreateSession(ctx, se); err != nil {
		s.stats.storeErrors.Add(1)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.stats.sessionsCreated.Add(1)
	http.SetCookie(w, s.sessionCookie(id, s.opts.SessionTTL))
	s.audit(ctx, AuditEvent{Kind: EventSignedIn, UserID: userID, At: now, Actor: ActorUser, Detail: detail})
	return nil
}

// RevokeSessions signs the user out everywhere: every session of the user
// is deleted, and their cookies stop working at once. [Options.Audit]
// hears of it (EventSignedOutEverywhere, with no actor: ctx says who
// acted, the user on a dashboard or an operator in a command-line tool),
// even when the user had no session.
func (s *Service) RevokeSessions(ctx context.Context, userID int64) error {
	n, err := s.store.DeleteUserSessions(ctx, userID)
	if err != nil {
		s.stats.storeErrors.Add(1)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.stats.sessionsRevoked.Add(n)
	s.audit(ctx, AuditEvent{Kind: EventSignedOutEverywhere, UserID: userID, Detail: map[string]string{"sessions": itoa(n)}})
	return nil
}

// sessionCookie is the cookie for a new session. Its lifetime is given as
// Max-Age alone, relative to the browser's clock, so that a skewed clock on
// either side cannot make it expire early.
func (s *Service) sessionCookie(value string, ttl time.Duration) *http.Cookie {
	return &http.Cookie{
		Name:     s.cookie,
		Value:    value,
		Path:     "/",
		MaxAge:   int(ttl / time.Second),
		Secure:   !s.opts.InsecureCookies,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// ClearSessionCookie tells the browser to drop the session cookie, with
// the name and attributes the Service set it with. Use it after ending a
// browser's session yourself (RevokeSessions, DeleteUser), as Logout does.
func (s *Service) ClearSessionCookie(w http.ResponseWriter) { s.clearCookie(w) }

func (s *Service) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookie, Value: "", Path: "/", MaxAge: -1,
		Secure: !s.opts.InsecureCookies, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// errNoSession means the request has no valid session.
var errNoSession = errors.New("magiclink: no session")

// user authenticates r by its session cookie. It returns errNoSession for
// a missing, unknown, expired or idle session (stale reports whether a
// cookie should be cleared), and an ErrUnavailable error if the store
// failed.
func (s *Service) user(r *http.Request) (u User, stale bool, err error) {
	if s.checked(r.Context()) { // LoadUser ran already: no second lookup
		if u, ok := UserFrom(r.Context()); ok {
			return u, false, nil
		}
		return User{}, false, errNoSession
	}
	c, err := r.Cookie(s.cookie)
	if err != nil {
		return User{}, false, errNoSession
	}
	if !wellFormed(c.Value) {
		s.stats.sessionsRejected.Add(1)
		return User{}, true, errNoSession
	}
	hash := hashSecret(c.Value)
	ctx := r.Context()
	se, found, err := s.store.Session(ctx, hash)
	if err != nil {
		s.stats.storeErrors.Add(1)
		return User{}, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !found {
		s.stats.sessionsRejected.Add(1)
		return User{}, true, errNoSession
	}
	now := s.opts.Now()
	idle := s.opts.IdleTimeout
	if !now.Before(se.ExpiresAt) || (idle > 0 && now.Sub(se.LastSeenAt) >= idle) {
		s.stats.sessionsRejected.Add(1)
		if _, err := s.store.DeleteSession(ctx, hash); err != nil {
			s.logger.Warn("magiclink: deleting an expired session", "user", se.UserID, "err", err)
		}
		return User{}, true, errNoSession
	}
	if idle > 0 && now.Sub(se.LastSeenAt) >= min(time.Minute, idle/10) {
		if err := s.store.TouchSession(ctx, hash, now); err != nil {
			s.stats.storeErrors.Add(1)
			s.logger.Warn("magiclink: recording session activity", "user", se.UserID, "err", err)
		}
	}
	s.stats.sessionsLoaded.Add(1)
	return User{ID: se.UserID, Email: se.Email, SessionExpiresAt: se.ExpiresAt, SignedInAt: se.CreatedAt}, false, nil
}
