package apikey

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// Kinds of [Event]. Their values are those of the matching kinds of package
// audit (audit.KeyIssued is "key.issued", …), so that an audit hook can
// pass them on as they are.
const (
	EventIssued      = "key.issued"
	EventRolled      = "key.rolled"
	EventRevoked     = "key.revoked"
	EventDeactivated = "key.deactivated"
	EventActivated   = "key.activated"
	EventExpired     = "key.expired"
	EventLeaked      = "key.leaked"
)

// Actors an [Event] may name when the component that made the change knows
// who it acted for. Their values are those of package audit's actor kinds.
const (
	// ActorSystem is apikit itself, such as the [ExpiryNotifier].
	ActorSystem = "system"
	// ActorGitHub is GitHub's secret scanning, reporting a leaked key.
	ActorGitHub = "github"
)

// Event is a change to a key, reported to [ManagerOptions.Audit],
// [ExpiryOptions.Audit] and [LeakOptions.Audit]. It never holds a secret
// or a hash: only the key's id, its owner, and a few details.
type Event struct {
	// Kind is one of EventIssued, EventRolled, … .
	Kind   string
	KeyID  string
	UserID int64
	// At is when the change was made (for EventExpired: when the key
	// expired).
	At time.Time
	// Actor is who made the change when the component knows it:
	// [ActorSystem] for expiry, [ActorGitHub] for a leak report. It is
	// empty for changes made through the Manager for a caller, whose
	// identity, address and user agent the audit hook finds in the
	// context it is given.
	Actor string
	// Detail holds a few facts about the change, such as the key's name
	// and environment (issued), the grace period (rolled), or where a
	// leaked key was found (leaked: url, source, type). Never a secret.
	Detail map[string]string
}

// emit reports e to the audit hook, if any; a failure is logged.
func (m *Manager) emit(ctx context.Context, e Event) { emitTo(ctx, m.audit, m.logger, e) }

// emitTo reports e to hook, if set, and logs its failure: the audit hooks
// of the Manager, the ExpiryNotifier and the LeakResponder.
func emitTo(ctx context.Context, hook func(context.Context, Event) error, log *slog.Logger, e Event) {
	if hook == nil {
		return
	}
	if err := hook(ctx, e); err != nil {
		log.LogAttrs(ctx, slog.LevelError, "apikey: audit hook failed",
			slog.String("event", e.Kind), slog.String("key_id", e.KeyID), slog.Any("error", err))
	}
}

func issueDetail(k Key) map[string]string {
	d := map[string]string{"name": k.Name, "prefix": k.Prefix}
	if env := k.Environment(); env != "" {
		d["environment"] = env
	}
	if len(k.Scopes) > 0 {
		d["scopes"] = strings.Join(k.Scopes, " ")
	}
	if !k.ExpiresAt.IsZero() {
		d["expires_at"] = k.ExpiresAt.Format(time.RFC3339)
	}
	if len(k.AllowedCIDRs) > 0 {
		s := make([]string, len(k.AllowedCIDRs))
		for i, c := range k.AllowedCIDRs {
			s[i] = c.String()
		}
		d["allowed_cidrs"] = strings.Join(s, " ")
	}
	return d
}
