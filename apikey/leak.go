package apikey

import (
	"context"
	"fmt"
	"log/slog"
)

// Leak is a token reported as exposed in public, such as by GitHub secret
// scanning (package apikey/secretscan).
type Leak struct {
	// Token is the full token as found. It is compared with the stored
	// hash and never logged or passed on.
	Token string
	// URL is where it was found; Source what kind of place that is
	// ("content", "commit", "issue", …). Both come from the reporter.
	URL    string
	Source string
	// Reporter is who reported it, passed on as the [Event.Actor] (such
	// as [ActorGitHub]); "" leaves the actor to the context.
	Reporter string
}

// LeakResult says what [LeakResponder.Respond] found and did.
type LeakResult struct {
	// Ours is true if the token is a key this store issued with this
	// secret: its current secret, or the previous one of a rolled key.
	// It is what a reporter calls a true positive.
	Ours bool
	// KeyID and UserID identify the key if Ours.
	KeyID  string
	UserID int64
	// Live is true if the token worked when it was reported: the key was
	// active (not revoked, expired or deactivated) and the token was its
	// current secret or a previous one still in its grace period.
	Live bool
	// Notified is true if this report claimed the key's leak notice (and
	// sent it); false for a redelivered or repeated report.
	Notified bool
}

// LeakOptions configures a [LeakResponder].
type LeakOptions struct {
	// Notices records the leak notices sent, so that a report delivered
	// twice, or to two instances, notifies once (required).
	Notices NoticeStore
	// Notify is called once per leaked key with a [NoticeLeaked] notice,
	// after the key was revoked: mail the owner where it was found. If it
	// fails, [LeakResponder.Respond] fails and a later delivery of the
	// report tries again.
	Notify func(ctx context.Context, n Notice) error
	// Audit, if set, is told [EventLeaked] once per leaked key, after
	// Notify succeeded, with the url, source and type in its Detail. The
	// revocation itself is reported through [ManagerOptions.Audit].
	Audit func(ctx context.Context, e Event) error
	// Logger receives failures of Audit (default: discard).
	Logger *slog.Logger
}

// A LeakResponder revokes keys reported as leaked and notifies their
// owners. It is safe for concurrent use.
type LeakResponder struct {
	m    *Manager
	opts LeakOptions
	log  *slog.Logger
}

// NewLeakResponder returns a LeakResponder that revokes keys through m (so
// that m's Verifier, its OnChange hook and its Audit hear of it). It
// panics if m or opts.Notices is nil.
func NewLeakResponder(m *Manager, opts LeakOptions) *LeakResponder {
	if m == nil || opts.Notices == nil {
		panic("apikey: NewLeakResponder needs a Manager and LeakOptions.Notices")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LeakResponder{m: m, opts: opts, log: log}
}

// Respond handles one reported token. A token that is not one of ours
// (malformed, unknown id, or a secret that is neither the key's current
// nor its previous one) changes nothing and reports Ours == false. A live
// key of ours is revoked at once; then its leak notice is claimed and, by
// the one report that claims it, sent and audited. A key that is no longer
// live (revoked, expired or its previous secret past its grace) is still
// ours: a revoked one gets the notice if it never had one, and an expired
// or deactivated one is revoked too, so that it cannot come back. Respond is idempotent: a report delivered again finds
// the key revoked and the notice claimed, and does nothing more.
//
// An error means the report could not be handled completely (the store
// failed, or Notify did); the key may have been revoked already, and
// handling the same report again finishes the job.
func (l *LeakResponder) Respond(ctx context.Context, leak Leak) (LeakResult, error) {
	t, err := Parse(leak.Token)
	if err != nil {
		return LeakResult{}, nil
	}
	k, found, err := l.m.store.Key(ctx, t.ID)
	if err != nil {
		return LeakResult{}, fmt.Errorf("apikey: reading key: %w", err)
	}
	if !found {
		return LeakResult{}, nil
	}
	now := l.m.now().UTC()
	current := l.m.hasher.Compare(k.SecretHash, t.secret)
	previous := !current && len(k.PreviousSecretHash) > 0 && l.m.hasher.Compare(k.PreviousSecretHash, t.secret)
	if !current && !previous {
		return LeakResult{}, nil
	}
	res := LeakResult{Ours: true, KeyID: k.ID, UserID: k.UserID}
	if previous && !now.Before(k.PreviousExpiresAt) {
		// A secret replaced long ago: it does not work, and the key's
		// current secret was not exposed.
		return res, nil
	}
	res.Live = k.State(now) == StateActive
	detail := map[string]string{"url": leak.URL, "source": leak.Source, "type": t.Prefix}
	if k.RevokedAt.IsZero() {
		if err := l.m.revoke(ctx, k.ID, leak.Reporter, detail); err != nil {
			return res, err
		}
	}
	claim := NoticeClaim{Kind: NoticeLeaked, KeyID: k.ID, Due: k.CreatedAt}
	won, err := l.opts.Notices.ClaimNotice(ctx, claim, now)
	if err != nil {
		return res, fmt.Errorf("apikey: claiming the leak notice: %w", err)
	}
	if !won {
		return res, nil
	}
	if err := deliver(ctx, l.opts.Notices, l.opts.Notify, Notice{NoticeClaim: claim, Key: k, URL: leak.URL, Source: leak.Source}); err != nil {
		return res, err
	}
	res.Notified = true
	emitTo(ctx, l.opts.Audit, l.log, Event{Kind: EventLeaked, KeyID: k.ID, UserID: k.UserID, At: now, Actor: leak.Reporter, Detail: detail})
	return res, nil
}
