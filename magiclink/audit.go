package magiclink

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/apikit/apikit/internal/emailaddr"
)

// Kinds of [AuditEvent]. They have the values of package audit's kinds
// (audit.SignIn is "session.signed_in", audit.EmailChangeRequested
// "account.email_change_requested", …), so that an audit hook can pass
// them on as they are.
const (
	// EventLinkRequested: a sign-in email (link, and code for POST
	// /login) was stored for sending to an address.
	EventLinkRequested = "session.link_requested"
	// EventSignedIn: a session was started, by a link, a code or
	// [Service.SignIn].
	EventSignedIn = "session.signed_in"
	// EventSignedOut: one session was ended, by POST /logout or
	// [Service.EndSession].
	EventSignedOut = "session.signed_out"
	// EventSignedOutEverywhere: several sessions of the user were ended at
	// once, by [Service.RevokeSessions] or [Service.EndOtherSessions].
	EventSignedOutEverywhere = "session.signed_out_everywhere"
	// EventEmailChangeRequested: [Service.RequestEmailChange] sent a link
	// to a new address.
	EventEmailChangeRequested = "account.email_change_requested"
	// EventEmailChanged: a followed link replaced the user's address.
	EventEmailChanged = "account.email_changed"
)

// ActorUser is the [AuditEvent.Actor] of events the user themselves
// caused, proven by a link, a code or their session. Its value is that of
// audit.ActorUser.
const ActorUser = "user"

// AuditEvent is a security event reported to [Options.Audit]. It never
// holds a token, a code, a session id or a full email address.
type AuditEvent struct {
	// Kind is one of EventSignedIn, EventSignedOut, … .
	Kind string
	// UserID is the account concerned; never 0.
	UserID int64
	// At is when it happened.
	At time.Time
	// Actor is [ActorUser] when the user proved who they are by a link,
	// a code or their session: sign-ins, sign-outs, email changes, and
	// [Service.EndSession] and [Service.EndOtherSessions], which act for
	// the signed-in user. It is empty when the caller's context says who
	// acted ([Service.RevokeSessions], which an operator may call too),
	// and for EventLinkRequested, which anyone who knows the address can
	// cause: its address and user agent, from the context, say who asked.
	Actor string
	// Detail holds a few facts, keyed by lowercase words:
	//   - "method": "link" or "code" (EventSignedIn through a handler),
	//     "link" or "link_and_code" (EventLinkRequested);
	//   - "first_sign_in": "true" when the sign-in first proved the
	//     address, and "sessions_ended": how many older sessions that
	//     ended (EventSignedIn);
	//   - "sessions": how many sessions were ended, and "kept": "current"
	//     when the caller's own was kept (EventSignedOutEverywhere);
	//   - "session_ref": the first 8 characters of the ended session's
	//     [SessionInfo].Ref (EventSignedOut by EndSession);
	//   - "email": the address concerned, masked ("a•••@example.org"):
	//     the new one (EventLinkRequested, EventEmailChangeRequested);
	//     "from" and "to" (EventEmailChanged).
	Detail map[string]string
}

// audit reports e to Options.Audit, if set. A failure is logged and
// changes nothing: the event has happened and its response stands.
func (s *Service) audit(ctx context.Context, e AuditEvent) {
	if s.opts.Audit == nil {
		return
	}
	if e.At.IsZero() {
		e.At = s.opts.Now()
	}
	if err := s.opts.Audit(ctx, e); err != nil {
		s.stats.auditErrors.Add(1)
		s.logger.LogAttrs(ctx, slog.LevelError, "magiclink: audit hook failed",
			slog.String("event", e.Kind), slog.Int64("user", e.UserID), slog.Any("err", err))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mask(email string) string { return emailaddr.Mask(email) }
