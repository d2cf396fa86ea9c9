package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is what happened. The key kinds have the values of package apikey's
// event kinds (apikey.EventIssued is "key.issued"), so that its events
// convert with Kind(e.Kind).
type Kind string

// Event kinds.
const (
	KeyIssued      Kind = "key.issued"
	KeyRolled      Kind = "key.rolled"
	KeyRevoked     Kind = "key.revoked"
	KeyDeactivated Kind = "key.deactivated"
	KeyActivated   Kind = "key.activated"
	KeyExpired     Kind = "key.expired"
	KeyLeaked      Kind = "key.leaked"

	SignInLinkRequested Kind = "session.link_requested"
	SignIn              Kind = "session.signed_in"
	SignOut             Kind = "session.signed_out"
	SignOutEverywhere   Kind = "session.signed_out_everywhere"

	SubscriptionChanged Kind = "billing.subscription_changed"
	PlanChanged         Kind = "billing.plan_changed"
	// CheckoutCompleted: a Checkout for the user was completed (package
	// billing's EventCheckoutCompleted).
	CheckoutCompleted Kind = "billing.checkout_completed"
	// PlanChangeRequested: the user asked for another plan and was sent
	// to Stripe, where the change is made (package billing's
	// EventPlanChangeRequested); the change itself is a PlanChanged.
	PlanChangeRequested Kind = "billing.plan_change_requested"

	// EmailChangeRequested: a link to confirm a new address was sent
	// (package magiclink's EventEmailChangeRequested); following it is an
	// EmailChanged.
	EmailChangeRequested Kind = "account.email_change_requested"
	EmailChanged         Kind = "account.email_changed"
	AccountDeleted       Kind = "account.deleted"
)

// ActorKind is who acted. The values match package apikey's actors.
type ActorKind string

// Actor kinds.
const (
	// ActorUser is the account holder, signed in (Actor.ID is the user
	// id, in decimal).
	ActorUser ActorKind = "user"
	// ActorOperator is an operator, through the command line (Actor.ID
	// names them, such as their login).
	ActorOperator ActorKind = "operator"
	// ActorGitHub is GitHub, reporting a leaked key.
	ActorGitHub ActorKind = "github"
	// ActorStripe is Stripe, through a webhook.
	ActorStripe ActorKind = "stripe"
	// ActorSystem is the application itself, such as a key expiring.
	ActorSystem ActorKind = "system"
)

// Actor is who caused an event.
type Actor struct {
	Kind ActorKind `json:"kind"`
	ID   string    `json:"id,omitempty"`
}

// Limits on an event, enforced by [Log.Append].
const (
	MaxDetails      = 16  // entries in Detail
	MaxDetailKeyLen = 32  // bytes of a Detail key
	MaxDetailLen    = 512 // bytes of a Detail value; longer ones are cut
	MaxUserAgentLen = 256 // bytes of UserAgent; longer ones are cut
	maxNameLen      = 64  // bytes of a Kind, an Actor's kind or ID, a key id
)

// Event is one entry of the log. It has no field for a secret; see the
// package documentation.
type Event struct {
	// ID is assigned by the store: increasing in the order of appends.
	ID int64 `json:"id"`
	// Time is when it happened (default: when it was appended), UTC.
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`
	// UserID is the account the event concerns; 0 for none.
	UserID int64 `json:"user_id,omitempty"`
	Actor  Actor `json:"actor"`
	// IP is the client's address, if the event came from a request.
	IP        netip.Addr `json:"ip,omitzero"`
	UserAgent string     `json:"user_agent,omitempty"`
	// KeyID is the public id of the API key concerned, if any.
	KeyID string `json:"key_id,omitempty"`
	// Detail holds a few short facts: at most MaxDetails entries, keys of
	// lowercase letters, digits and '_', values of at most MaxDetailLen
	// bytes. Never secrets.
	Detail map[string]string `json:"detail,omitempty"`
}

// ErrInvalidEvent means [Log.Append] refused an event: no kind, or a kind,
// actor or detail key outside the allowed characters or sizes.
var ErrInvalidEvent = errors.New("audit: invalid event")

// Options configures a [Log]. The zero value keeps events for a year, uses
// time.Now and logs nothing.
type Options struct {
	// Retention is how long events are kept by [Log.Prune] (default 365
	// days).
	Retention time.Duration
	// IsSecret, if set, is asked about every word (maximal run of ASCII
	// letters, digits and '_') of every Detail value and of the user
	// agent; words it recognises are stored as "[redacted]". Pass one
	// that recognises your API keys:
	//
	//	IsSecret: func(w string) bool { _, err := apikey.Parse(w); return err == nil }
	IsSecret func(word string) bool
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// Logger receives failed appends (default: discard). Events are
	// logged without their details.
	Logger *slog.Logger
}

// Log appends events to a [Store] and reads them back. It is safe for
// concurrent use.
type Log struct {
	store Store
	opts  Options
	log   *slog.Logger
}

// New returns a Log over store.
func New(store Store, opts Options) *Log {
	if store == nil {
		panic("audit: New with a nil Store")
	}
	if opts.Retention <= 0 {
		opts.Retention = 365 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Log{store: store, opts: opts, log: log}
}

// Append checks e, fills in what it lacks from ctx's [Source] (the actor,
// address and user agent, each only if e's is empty) and the time, redacts
// secrets ([Options.IsSecret]) and writes it to the store before
// returning. It returns the event as stored, with its ID.
func (l *Log) Append(ctx context.Context, e Event) (Event, error) {
	src := SourceFrom(ctx)
	if e.Actor.Kind == "" {
		e.Actor = src.Actor
	}
	if !e.IP.IsValid() {
		e.IP = src.IP
	}
	if e.UserAgent == "" {
		e.UserAgent = src.UserAgent
	}
	if e.Actor.Kind == "" {
		e.Actor.Kind = ActorSystem
	}
	if e.Time.IsZero() {
		e.Time = l.opts.Now()
	}
	e.Time = e.Time.UTC()
	e.ID = 0
	e.IP = e.IP.Unmap().WithZone("")
	if err := l.clean(&e); err != nil {
		return Event{}, err
	}
	id, err := l.store.AppendAuditEvent(ctx, e)
	if err != nil {
		l.log.LogAttrs(ctx, slog.LevelError, "audit: append failed",
			slog.String("kind", string(e.Kind)), slog.Int64("user_id", e.UserID), slog.Any("error", err))
		return Event{}, fmt.Errorf("audit: appending %s: %w", e.Kind, err)
	}
	e.ID = id
	return e, nil
}

// clean validates e and bounds and redacts its free-form fields.
func (l *Log) clean(e *Event) error {
	if !validName(string(e.Kind), false) {
		return fmt.Errorf("%w: kind %.80q", ErrInvalidEvent, e.Kind)
	}
	if !validName(string(e.Actor.Kind), false) || len(e.Actor.ID) > maxNameLen || !utf8.ValidString(e.Actor.ID) {
		return fmt.Errorf("%w: actor %.80q %.80q", ErrInvalidEvent, e.Actor.Kind, e.Actor.ID)
	}
	if len(e.KeyID) > maxNameLen || !validName(e.KeyID, true) {
		return fmt.Errorf("%w: key id %.80q", ErrInvalidEvent, e.KeyID)
	}
	if len(e.Detail) > MaxDetails {
		return fmt.Errorf("%w: more than %d details", ErrInvalidEvent, MaxDetails)
	}
	// Redact before cutting: a secret across the cut would no longer be
	// recognised, and its first part would be stored.
	e.UserAgent = truncate(l.redact(e.UserAgent), MaxUserAgentLen)
	if len(e.Detail) > 0 {
		d := make(map[string]string, len(e.Detail))
		for k, v := range e.Detail {
			if !validDetailKey(k) {
				return fmt.Errorf("%w: detail key %.80q", ErrInvalidEvent, k)
			}
			d[k] = truncate(l.redact(v), MaxDetailLen)
		}
		e.Detail = d
	} else {
		e.Detail = nil
	}
	return nil
}

// validName reports whether s is 1 to maxNameLen bytes of ASCII letters,
// digits and "._-:" (or empty, if empty is allowed).
func validName(s string, empty bool) bool {
	if s == "" {
		return empty
	}
	if len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isWordByte(c) && strings.IndexByte(".-:", c) < 0 {
			return false
		}
	}
	return true
}

func validDetailKey(k string) bool {
	if k == "" || len(k) > MaxDetailKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// truncate cuts s to at most n bytes on a rune boundary, and replaces
// invalid UTF-8 and control characters.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// redact replaces each word of s that IsSecret recognises.
func (l *Log) redact(s string) string {
	if l.opts.IsSecret == nil || s == "" {
		return s
	}
	var b strings.Builder
	changed := false
	for i := 0; i < len(s); {
		if !isWordByte(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && isWordByte(s[j]) {
			j++
		}
		if w := s[i:j]; l.opts.IsSecret(w) {
			b.WriteString("[redacted]")
			changed = true
		} else {
			b.WriteString(w)
		}
		i = j
	}
	if !changed {
		return s
	}
	return b.String()
}
