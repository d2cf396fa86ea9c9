package magiclink

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// SessionInfo describes one of a user's sessions, for an account page
// that lists them ([Service.Sessions]).
type SessionInfo struct {
	// Ref names the session to [Service.EndSession]. It is derived from
	// the stored hash (hex of the first 16 bytes of its SHA-256), so it
	// can be shown in a page, and it is never the session id: knowing it
	// signs nobody in.
	Ref string
	// CreatedAt is when the session started (the sign-in); LastSeenAt is
	// when it was last used, coarsely: activity is recorded at most once
	// a minute (or a tenth of IdleTimeout).
	CreatedAt, LastSeenAt time.Time
	// UserAgent and IP are the client that started the session: its
	// User-Agent header and [Options.ClientKey], at most 256 characters.
	// Both are what the client said; show them, do not trust them.
	UserAgent, IP string
	// Current marks the session of the request that asked.
	Current bool
}

// sessionRef is a session's public name: hex of the first 16 bytes of
// SHA-256 of its stored hash.
func sessionRef(hash []byte) string {
	h := sha256.Sum256(hash)
	return hex.EncodeToString(h[:16])
}

// capDetail trims a session detail and caps it at 256 characters.
func capDetail(s string) string {
	s = strings.TrimSpace(strings.ToValidUTF8(s, ""))
	if r := []rune(s); len(r) > 256 {
		s = strings.TrimSpace(string(r[:256]))
	}
	return s
}

// currentHash returns the stored hash of r's session cookie, or nil.
func (s *Service) currentHash(r *http.Request) []byte {
	if r == nil {
		return nil
	}
	if c, err := r.Cookie(s.cookie); err == nil && wellFormed(c.Value) {
		return hashSecret(c.Value)
	}
	return nil
}

// Sessions returns the user's active sessions (neither expired nor idle),
// newest first; Current marks r's own session (r may be nil). The caller
// is the signed-in user: pass [UserFrom]'s ID, never an id from the
// request. It returns an error wrapping [ErrUnavailable] if the store
// fails.
func (s *Service) Sessions(ctx context.Context, r *http.Request, userID int64) ([]SessionInfo, error) {
	all, err := s.store.UserSessions(ctx, userID)
	if err != nil {
		s.stats.storeErrors.Add(1)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	current := s.currentHash(r)
	now := s.opts.Now()
	idle := s.opts.IdleTimeout
	out := make([]SessionInfo, 0, len(all))
	for _, se := range all {
		if !now.Before(se.ExpiresAt) || (idle > 0 && now.Sub(se.LastSeenAt) >= idle) {
			continue
		}
		out = append(out, SessionInfo{
			Ref: sessionRef(se.Hash), CreatedAt: se.CreatedAt, LastSeenAt: se.LastSeenAt,
			UserAgent: se.UserAgent, IP: se.IP,
			Current: current != nil && subtle.ConstantTimeCompare(current, se.Hash) == 1,
		})
	}
	return out, nil
}

// EndSession ends the user's session named by ref (a [SessionInfo].Ref):
// its cookie stops working at once. Only the user's own sessions are
// found; found is false for an unknown ref or another user's session.
// Ending the caller's own session signs it out (clear nothing: its next
// request finds no session). [Options.Audit] hears of it
// (EventSignedOut, with the ref's first 8 characters).
func (s *Service) EndSession(ctx context.Context, userID int64, ref string) (found bool, err error) {
	if len(ref) != 32 {
		return false, nil
	}
	all, err := s.store.UserSessions(ctx, userID)
	if err != nil {
		s.stats.storeErrors.Add(1)
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, se := range all {
		if subtle.ConstantTimeCompare([]byte(sessionRef(se.Hash)), []byte(ref)) != 1 {
			continue
		}
		found, err := s.store.DeleteUserSession(ctx, userID, se.Hash)
		if err != nil {
			s.stats.storeErrors.Add(1)
			return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if found {
			s.stats.sessionsRevoked.Add(1)
			s.audit(ctx, AuditEvent{Kind: EventSignedOut, UserID: userID, Actor: ActorUser,
				Detail: map[string]string{"session_ref": ref[:8]}})
		}
		return found, nil
	}
	return false, nil
}

// EndOtherSessions ends every session of the user except r's own, and
// returns how many it ended. If r carries no session of the user, it ends
// them all (as [Service.RevokeSessions]). [Options.Audit] hears of it
// (EventSignedOutEverywhere, with "kept": "current" when r's session was
// kept), even when there was nothing to end: the user asked.
func (s *Service) EndOtherSessions(ctx context.Context, r *http.Request, userID int64) (n int64, err error) {
	keep := s.currentHash(r)
	detail := map[string]string{}
	if keep == nil {
		n, err = s.store.DeleteUserSessions(ctx, userID)
	} else {
		n, err = s.store.DeleteUserSessionsExcept(ctx, userID, keep)
		detail["kept"] = "current"
	}
	if err != nil {
		s.stats.storeErrors.Add(1)
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.stats.sessionsRevoked.Add(n)
	detail["sessions"] = itoa(n)
	s.audit(ctx, AuditEvent{Kind: EventSignedOutEverywhere, UserID: userID, Actor: ActorUser, Detail: detail})
	return n, nil
}
