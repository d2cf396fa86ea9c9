package apikey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ExpiryStore is what an [ExpiryNotifier] needs of a key store: the keys
// whose expiry or grace period falls in a window, and a [NoticeStore].
//
// Both queries return keys that are not revoked, ordered by the time
// named (ExpiresAt or PreviousExpiresAt) then by ID, after the position
// (from, afterID) and before to: time > from, or time == from and ID >
// afterID (afterID "" starts at from inclusive), and time < to. At most
// limit keys are returned; the notifier asks again from the last one.
// apikeytest.TestExpiryStore checks an implementation.
type ExpiryStore interface {
	NoticeStore
	// KeysExpiring returns keys with a non-zero ExpiresAt in the window.
	KeysExpiring(ctx context.Context, from time.Time, afterID string, to time.Time, limit int) ([]Key, error)
	// KeysGraceEnding returns keys with a PreviousSecretHash whose
	// PreviousExpiresAt is in the window.
	KeysGraceEnding(ctx context.Context, from time.Time, afterID string, to time.Time, limit int) ([]Key, error)
}

// ExpiryOptions configures an [ExpiryNotifier]. The zero value checks
// every hour and notifies nobody (only Audit, if set, hears of expired
// keys).
type ExpiryOptions struct {
	// Notify is called once for each notice: [NoticeExpiresSoon],
	// [NoticeExpiresTomorrow], [NoticeExpired] and [NoticeGraceEnded].
	// Mail the key's owner from it (return nil to ignore a kind). If it
	// fails, the notice is released and tried again at the next run. A
	// notice is claimed before Notify is called, so a crash between the
	// two loses it: notices are sent at most once.
	Notify func(ctx context.Context, n Notice) error

	// Audit, if set, is told of each key that expired ([EventExpired],
	// actor [ActorSystem]), once, after Notify succeeded.
	Audit func(ctx context.Context, e Event) error

	// Interval is how often [ExpiryNotifier.Run] checks (default 1
	// hour). Notices go out up to Interval late.
	Interval time.Duration

	// Lookback is how far back a run looks for keys that expired or whose
	// grace ended (default 7 days): after a longer outage, older ones are
	// not notified.
	Lookback time.Duration

	// KeepClaims is how long claims are kept before a store that
	// implements [NoticePruner] forgets them (default 90 days, at least
	// Lookback + 8 days). A key reported leaked again after that is
	// notified again.
	KeepClaims time.Duration

	// BatchSize bounds the keys read per query (default 500).
	BatchSize int

	// Now returns the current time (default time.Now).
	Now func() time.Time

	// Logger receives failures (default: discard).
	Logger *slog.Logger
}

// An ExpiryNotifier finds keys about to expire, keys that expired and
// rolled keys whose grace period ended, and notifies each once. Run it on
// every instance: the claims in the [ExpiryStore] make each notice go out
// once however many instances look, and across restarts. It is safe for
// concurrent use.
type ExpiryNotifier struct {
	store ExpiryStore
	opts  ExpiryOptions
	log   *slog.Logger
}

// NewExpiryNotifier returns an ExpiryNotifier over store.
func NewExpiryNotifier(store ExpiryStore, opts ExpiryOptions) *ExpiryNotifier {
	if store == nil {
		panic("apikey: NewExpiryNotifier with a nil ExpiryStore")
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Hour
	}
	if opts.Lookback <= 0 {
		opts.Lookback = 7 * 24 * time.Hour
	}
	if opts.KeepClaims <= 0 {
		opts.KeepClaims = 90 * 24 * time.Hour
	}
	opts.KeepClaims = max(opts.KeepClaims, opts.Lookback+8*24*time.Hour)
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ExpiryNotifier{store: store, opts: opts, log: log}
}

// Run checks at once, then every Interval, until ctx is done; it returns
// ctx's error. Failures are logged and retried at the next check.
func (n *ExpiryNotifier) Run(ctx context.Context) error {
	t := time.NewTicker(n.opts.Interval)
	defer t.Stop()
	for {
		if _, err := n.RunOnce(ctx); err != nil && ctx.Err() == nil {
			n.log.LogAttrs(ctx, slog.LevelWarn, "apikey: expiry check failed", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

const day = 24 * time.Hour

// RunOnce checks now and returns how many notices it sent (claimed and
// notified). An error means some notices may remain; they are tried again
// at the next run.
func (n *ExpiryNotifier) RunOnce(ctx context.Context) (int, error) {
	now := n.opts.Now().UTC()
	sent := 0
	var errs []error
	// Windows are (start, end], as [start+1ns, end+1ns): a key expiring
	// in exactly 7 days is warned now.
	windows := []struct {
		kind     string
		from, to time.Time
		query    func(context.Context, time.Time, string, time.Time, int) ([]Key, error)
		due      func(Key) time.Time
		skip     func(Key) bool
	}{
		{NoticeExpired, now.Add(-n.opts.Lookback), now.Add(1), n.store.KeysExpiring, expiresAt, nil},
		{NoticeExpiresTomorrow, now.Add(1), now.Add(day + 1), n.store.KeysExpiring, expiresAt,
			func(k Key) bool { return k.ExpiresAt.Sub(k.CreatedAt) <= day }},
		{NoticeExpiresSoon, now.Add(day + 1), now.Add(7*day + 1), n.store.KeysExpiring, expiresAt,
			func(k Key) bool { return k.ExpiresAt.Sub(k.CreatedAt) <= 7*day }},
		{NoticeGraceEnded, now.Add(-n.opts.Lookback), now.Add(1), n.store.KeysGraceEnding,
			func(k Key) time.Time { return k.PreviousExpiresAt }, nil},
	}
	for _, w := range windows {
		from, after := w.from, ""
		for {
			keys, err := w.query(ctx, from, after, w.to, n.opts.BatchSize)
			if err != nil {
				errs = append(errs, fmt.Errorf("apikey: listing keys for %s: %w", w.kind, err))
				break
			}
			for _, k := range keys {
				if w.skip != nil && w.skip(k) {
					continue
				}
				ok, err := n.notify(ctx, Notice{NoticeClaim: NoticeClaim{Kind: w.kind, KeyID: k.ID, Due: w.due(k)}, Key: k})
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					sent++
				}
			}
			if len(keys) < n.opts.BatchSize {
				break
			}
			last := keys[len(keys)-1]
			from, after = w.due(last), last.ID
		}
	}
	if p, ok := n.store.(NoticePruner); ok {
		if _, err := p.PruneNotices(ctx, now.Add(-n.opts.KeepClaims)); err != nil {
			errs = append(errs, fmt.Errorf("apikey: pruning notice claims: %w", err))
		}
	}
	return sent, errors.Join(errs...)
}

func expiresAt(k Key) time.Time { return k.ExpiresAt }

// notify claims the notice and, if this call won it, sends it; a failed
// send releases the claim.
func (n *ExpiryNotifier) notify(ctx context.Context, no Notice) (bool, error) {
	won, err := n.store.ClaimNotice(ctx, no.NoticeClaim, n.opts.Now().UTC())
	if err != nil || !won {
		return false, err
	}
	if err := deliver(ctx, n.store, n.opts.Notify, no); err != nil {
		return false, err
	}
	if no.Kind == NoticeExpired {
		emitTo(ctx, n.opts.Audit, n.log, Event{Kind: EventExpired, KeyID: no.KeyID, UserID: no.Key.UserID, At: no.Due, Actor: ActorSystem})
	}
	return true, nil
}

// deliver calls notify (if set) for a claimed notice, and releases the
// claim if it fails, so that the notice is tried again.
func deliver(ctx context.Context, st NoticeStore, notify func(context.Context, Notice) error, no Notice) error {
	if notify == nil {
		return nil
	}
	err := notify(ctx, no)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("apikey: sending %s for key %s: %w", no.Kind, no.KeyID, err)
	if rerr := st.ReleaseNotice(context.WithoutCancel(ctx), no.NoticeClaim); rerr != nil {
		err = errors.Join(err, fmt.Errorf("apikey: releasing the claim: %w", rerr))
	}
	return err
}
