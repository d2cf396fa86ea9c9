package apikey

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest key name, in characters, that [Manager.Issue]
// accepts.
const MaxNameLen = 100

// ManagerOptions configures a [Manager]. The zero value is a safe default.
type ManagerOptions struct {
	// Prefix is the token prefix of issued keys, such as "fav_live" or
	// "sk_test" (default "key"). See [ValidPrefix].
	Prefix string

	// Hasher hashes new secrets (default: the Verifier's Hasher if one is
	// linked, else [SHA256Hasher]).
	Hasher Hasher

	// Verifier, if set, is told about every change made through the
	// Manager, so that a revoked, rolled or deactivated key is refused by
	// it at once rather than after its cache TTL.
	Verifier *Verifier

	// OnChange, if set, is called with the key's id after every change
	// made through the Manager (revoke, roll, deactivate, activate,
	// rename) has been written, also when the store reported an error
	// (the change may have been made). Publish it to the other instances
	// (package invalidate: invalidate.Key(id)), so that their Verifiers
	// drop the key too. It must not block.
	OnChange func(keyID string)

	// MaxKeysPerUser, if positive, caps the keys one user may hold,
	// revoked ones included; [Manager.Issue] refuses more with
	// [ErrTooManyKeys]. The cap holds under concurrent issues.
	MaxKeysPerUser int

	// Audit, if set, is told about every key issued, rolled, revoked,
	// deactivated or activated through the Manager, after the change was
	// written (see [Event]). It runs on the caller's goroutine, with the
	// caller's context, so that it can read who acted and from where
	// (package audit: audit.WithSource). An error from it is logged and
	// does not undo the change or hide its result: a revocation must stand
	// and a token shown once must reach its owner even if the audit store
	// is down. Wire it to an audit log that writes synchronously, so that
	// the entry exists when the response is sent.
	Audit func(ctx context.Context, e Event) error

	// Trace, if set, is called around each write of a key to the store,
	// with the caller's context and the name of the Store method prefixed
	// with "apikey.": "apikey.CreateKey", "apikey.RevokeKey",
	// "apikey.SetKeyActive", "apikey.RollKey", "apikey.RenameKey". The
	// function it returns is called with the write's error (nil on
	// success). It lets a tracer, such as OpenTelemetry's, time the writes
	// without this package depending on one; the context it returns is the
	// one the store receives. Names carry no key id or secret.
	Trace func(ctx context.Context, name string) (context.Context, func(error))

	// Logger receives failures of Audit (default: discard).
	Logger *slog.Logger

	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// A Manager issues, lists, renames, rolls, revokes, deactivates and
// activates API keys. The methods ending in Owned act only on a key of the
// given user, for dashboards that act on behalf of a signed-in user. It is
// safe for concurrent use.
type Manager struct {
	store  Store
	prefix string
	hasher Hasher
	v      *Verifier
	max    int
	now    func() time.Time
	change func(string)
	audit  func(context.Context, Event) error
	trace  func(context.Context, string) (context.Context, func(error))
	logger *slog.Logger
}

// NewManager returns a Manager that keeps keys in store. It panics if
// opts.Prefix is not a valid prefix.
func NewManager(store Store, opts ManagerOptions) *Manager {
	if store == nil {
		panic("apikey: NewManager with a nil Store")
	}
	m := &Manager{store: store, prefix: opts.Prefix, hasher: opts.Hasher, v: opts.Verifier, max: opts.MaxKeysPerUser, now: opts.Now, change: opts.OnChange, audit: opts.Audit, trace: opts.Trace, logger: opts.Logger}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	if m.prefix == "" {
		m.prefix = "key"
	}
	if err := ValidPrefix(m.prefix); err != nil {
		panic(err.Error())
	}
	if m.hasher == nil {
		if m.v != nil {
			m.hasher = m.v.opts.Hasher
		} else {
			m.hasher = SHA256Hasher{}
		}
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// IssueOptions describes a key to issue. The zero value issues an unnamed,
// unscoped key that never expires, with the Manager's prefix, no metadata,
// no tags, usable from anywhere.
type IssueOptions struct {
	// Name is the owner's label for the key, at most [MaxNameLen]
	// characters, without control, format (bidi, zero-width) or line
	// separator characters.
	Name string
	// Scopes are the permissions the key carries, checked by
	// [MiddlewareOptions.Scopes]. Each is a non-empty string of printable
	// ASCII without spaces, quotes or backslashes (RFC 6749 section 3.3).
	Scopes []string
	// ExpiresAt, if not zero, is when the key stops working. It must be
	// in the future.
	ExpiresAt time.Time
	// ExpiresIn, if positive and ExpiresAt is zero, sets ExpiresAt to the
	// issue time plus ExpiresIn, as a dashboard's "expires in 30 / 90 /
	// 365 days" choice does.
	ExpiresIn time.Duration
	// Prefix overrides the Manager's prefix for this key, for example to
	// issue "fav_test" keys next to "fav_live" ones.
	Prefix string
	// Environment, if set, is [EnvLive] or [EnvTest]: the key's prefix is
	// the Manager's (or Prefix) with its "_live" or "_test" suffix
	// replaced, or the suffix added, so that a Manager with Prefix
	// "fav_live" issues "fav_test" keys for EnvTest. See [Key.Environment].
	Environment string

	// Metadata is a JSON object of at most [MaxMetadataLen] bytes once
	// compacted, returned in the [Principal] (see [Key.Metadata]).
	Metadata json.RawMessage
	// Tags are at most [MaxTags] labels, each valid for [ValidTag];
	// duplicates are dropped.
	Tags []string
	// AllowedCIDRs, if not empty, restricts the key to requests from these
	// networks (at most [MaxCIDRs]; see [ParseCIDRs]). A prefix of length
	// 0 (every address) is refused.
	AllowedCIDRs []netip.Prefix
}

// ErrInvalidOptions means [Manager.Issue] was given a name, scope, prefix or
// expiry it does not accept; the error says which.
var ErrInvalidOptions = errors.New("apikey: invalid key options")

// Issue creates a key for the user and returns its record and its token.
// The token's secret exists only in the returned [Token]: show
// [Token.Reveal] to the owner once; it cannot be recovered later.
func (m *Manager) Issue(ctx context.Context, userID int64, opts IssueOptions) (Key, Token, error) {
	now := m.now().UTC()
	prefix, err := prefixFor(cmp.Or(opts.Prefix, m.prefix), opts.Environment)
	if err != nil {
		return Key{}, Token{}, err
	}
	name := strings.TrimSpace(opts.Name)
	if err := ValidPrefix(prefix); err != nil {
		return Key{}, Token{}, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if err := validName(name); err != nil {
		return Key{}, Token{}, err
	}
	for _, s := range opts.Scopes {
		if !validScope(s) {
			return Key{}, Token{}, fmt.Errorf("%w: scope %q", ErrInvalidOptions, s)
		}
	}
	if opts.ExpiresAt.IsZero() && opts.ExpiresIn > 0 {
		opts.ExpiresAt = now.Add(opts.ExpiresIn)
	}
	if !opts.ExpiresAt.IsZero() && !opts.ExpiresAt.After(now) {
		return Key{}, Token{}, fmt.Errorf("%w: expiry is in the past", ErrInvalidOptions)
	}
	meta, err := normalizeMetadata(opts.Metadata)
	if err != nil {
		return Key{}, Token{}, err
	}
	tags, err := normalizeTags(opts.Tags)
	if err != nil {
		return Key{}, Token{}, err
	}
	cidrs, err := normalizeCIDRs(opts.AllowedCIDRs)
	if err != nil {
		return Key{}, Token{}, err
	}
	if meta != nil || tags != nil || cidrs != nil {
		if _, ok := m.store.(AttributeStore); !ok {
			return Key{}, Token{}, fmt.Errorf("%w: %w", errors.ErrUnsupported, errNoAttributes)
		}
	}
	tok, err := Generate(prefix)
	if err != nil {
		return Key{}, Token{}, err
	}
	hash, err := m.hasher.Hash(tok.secret)
	if err != nil {
		return Key{}, Token{}, fmt.Errorf("apikey: hashing the secret: %w", err)
	}
	k := Key{
		ID: tok.ID, UserID: userID, Name: name, Prefix: prefix, SecretHash: hash,
		Scopes: slices.Clone(opts.Scopes), Active: true,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: opts.ExpiresAt.UTC(),
		Metadata: meta, Tags: tags, AllowedCIDRs: cidrs,
	}
	if opts.ExpiresAt.IsZero() {
		k.ExpiresAt = time.Time{}
	}
	sctx, end := span(m.trace, ctx, "apikey.CreateKey")
	err = m.store.CreateKey(sctx, k, m.max)
	end(err)
	if err != nil {
		if errors.Is(err, ErrTooManyKeys) {
			return Key{}, Token{}, err
		}
		return Key{}, Token{}, fmt.Errorf("apikey: storing the key: %w", err)
	}
	m.invalidate(k.ID)
	m.emit(ctx, Event{Kind: EventIssued, KeyID: k.ID, UserID: k.UserID, At: now, Detail: issueDetail(k)})
	return k, tok, nil
}

// Get returns the key with the given id, or [ErrNotFound].
func (m *Manager) Get(ctx context.Context, id string) (Key, error) {
	k, found, err := m.store.Key(ctx, id)
	if err != nil {
		return Key{}, fmt.Errorf("apikey: reading key: %w", err)
	}
	if !found {
		return Key{}, ErrNotFound
	}
	return k, nil
}

// List returns the user's keys, newest first, revoked ones included.
func (m *Manager) List(ctx context.Context, userID int64) ([]Key, error) {
	keys, err := m.store.KeysByUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("apikey: listing keys: %w", err)
	}
	return keys, nil
}

// Revoke permanently disables the key. Revoking a revoked key does nothing.
// Once Revoke returns, a linked [Verifier] refuses the key.
//
// With [ManagerOptions.Audit] set, the key is read first, and the
// revocation is reported only if the key was not revoked already.
func (m *Manager) Revoke(ctx context.Context, id string) error {
	return m.revoke(ctx, id, "", nil)
}

// revoke revokes the key and reports it, with actor and detail, to the
// audit hook.
func (m *Manager) revoke(ctx context.Context, id, actor string, detail map[string]string) error {
	var before Key
	var known bool
	if m.audit != nil {
		k, found, err := m.store.Key(ctx, id)
		if err != nil {
			return fmt.Errorf("apikey: reading key: %w", err)
		}
		before, known = k, found
	}
	at := m.now().UTC()
	sctx, end := span(m.trace, ctx, "apikey.RevokeKey")
	found, err := m.store.RevokeKey(sctx, id, at)
	end(err)
	if err := m.changed(id, found, err, "revoking"); err != nil {
		return err
	}
	if known && before.RevokedAt.IsZero() {
		m.emit(ctx, Event{Kind: EventRevoked, KeyID: id, UserID: before.UserID, At: at, Actor: actor, Detail: detail})
	}
	return nil
}

// Deactivate disables the key until [Manager.Activate] is called.
func (m *Manager) Deactivate(ctx context.Context, id string) error {
	return m.setActive(ctx, id, false)
}

// Activate enables a deactivated key again. It cannot bring back a revoked
// or expired key.
func (m *Manager) Activate(ctx context.Context, id string) error {
	return m.setActive(ctx, id, true)
}

func (m *Manager) setActive(ctx context.Context, id string, active bool) error {
	at := m.now().UTC()
	sctx, end := span(m.trace, ctx, "apikey.SetKeyActive")
	found, err := m.store.SetKeyActive(sctx, id, active, at)
	end(err)
	what, kind := "deactivating", EventDeactivated
	if active {
		what, kind = "activating", EventActivated
	}
	if err := m.changed(id, found, err, what); err != nil {
		return err
	}
	if m.audit != nil {
		if k, found, err := m.store.Key(ctx, id); err == nil && found {
			m.emit(ctx, Event{Kind: kind, KeyID: id, UserID: k.UserID, At: at})
		} else {
			m.logger.LogAttrs(ctx, slog.LevelError, "apikey: audit: reading the key failed",
				slog.String("key_id", id), slog.String("event", kind), slog.Any("error", err))
		}
	}
	return nil
}

// Roll gives the key a new secret and returns the new token; the key keeps
// its id, name and scopes. The old secret keeps working for grace (none if
// grace <= 0), so that clients can be redeployed without downtime; a second
// roll ends the first one's grace. Rolling an unknown key fails with
// [ErrNotFound], a revoked one with [ErrRevoked].
func (m *Manager) Roll(ctx context.Context, id string, grace time.Duration) (Key, Token, error) {
	k, err := m.Get(ctx, id)
	if err != nil {
		return Key{}, Token{}, err
	}
	if !k.RevokedAt.IsZero() {
		return Key{}, Token{}, ErrRevoked
	}
	tok := Token{Prefix: k.Prefix, ID: k.ID}.newSecret()
	hash, err := m.hasher.Hash(tok.secret)
	if err != nil {
		return Key{}, Token{}, fmt.Errorf("apikey: hashing the secret: %w", err)
	}
	now := m.now().UTC()
	sctx, end := span(m.trace, ctx, "apikey.RollKey")
	found, err := m.store.RollKey(sctx, id, hash, now.Add(max(grace, 0)), now)
	end(err)
	if err := m.changed(id, found, err, "rolling"); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Key{}, Token{}, ErrRevoked // revoked between Get and RollKey
		}
		return Key{}, Token{}, err
	}
	k, err = m.Get(ctx, id)
	if err != nil {
		return Key{}, Token{}, err
	}
	m.emit(ctx, Event{Kind: EventRolled, KeyID: id, UserID: k.UserID, At: now,
		Detail: map[string]string{"grace": max(grace, 0).String()}})
	return k, tok, nil
}

// Rename sets the key's name, trimmed of surrounding spaces and checked as
// [IssueOptions.Name] is. Renaming an unknown key fails with [ErrNotFound].
func (m *Manager) Rename(ctx context.Context, id, name string) error {
	name = strings.TrimSpace(name)
	if err := validName(name); err != nil {
		return err
	}
	sctx, end := span(m.trace, ctx, "apikey.RenameKey")
	found, err := m.store.RenameKey(sctx, id, name, m.now().UTC())
	end(err)
	return m.changed(id, found, err, "renaming")
}

// GetOwned returns the key with the given id if it belongs to userID. A key
// of another user fails with [ErrNotFound], exactly as a key that does not
// exist, so that a caller learns nothing about other users' keys.
func (m *Manager) GetOwned(ctx context.Context, userID int64, id string) (Key, error) {
	k, err := m.Get(ctx, id)
	if err != nil {
		return Key{}, err
	}
	if k.UserID != userID {
		return Key{}, ErrNotFound
	}
	return k, nil
}

// RevokeOwned is [Manager.Revoke] for a key that must belong to userID;
// another user's key fails with [ErrNotFound] and is left unchanged. A key's
// owner never changes, so checking it before revoking is not a race.
func (m *Manager) RevokeOwned(ctx context.Context, userID int64, id string) error {
	if _, err := m.GetOwned(ctx, userID, id); err != nil {
		return err
	}
	return m.Revoke(ctx, id)
}

// RollOwned is [Manager.Roll] for a key that must belong to userID; another
// user's key fails with [ErrNotFound] and is left unchanged.
func (m *Manager) RollOwned(ctx context.Context, userID int64, id string, grace time.Duration) (Key, Token, error) {
	if _, err := m.GetOwned(ctx, userID, id); err != nil {
		return Key{}, Token{}, err
	}
	return m.Roll(ctx, id, grace)
}

// RenameOwned is [Manager.Rename] for a key that must belong to userID;
// another user's key fails with [ErrNotFound] and is left unchanged.
func (m *Manager) RenameOwned(ctx context.Context, userID int64, id, name string) error {
	if err := validName(strings.TrimSpace(name)); err != nil {
		return err
	}
	if _, err := m.GetOwned(ctx, userID, id); err != nil {
		return err
	}
	return m.Rename(ctx, id, name)
}

func (m *Manager) changed(id string, found bool, err error, what string) error {
	m.invalidate(id)
	if err != nil {
		return fmt.Errorf("apikey: %s key: %w", what, err)
	}
	if !found {
		return ErrNotFound
	}
	return nil
}

func (m *Manager) invalidate(id string) {
	if m.v != nil {
		m.v.Invalidate(id)
	}
	if m.change != nil {
		m.change(id)
	}
}

func validName(name string) error {
	if utf8.RuneCountInString(name) > MaxNameLen {
		return fmt.Errorf("%w: name longer than %d characters", ErrInvalidOptions, MaxNameLen)
	}
	if !utf8.ValidString(name) || strings.ContainsFunc(name, invisible) {
		return fmt.Errorf("%w: name contains control, format or bidi characters", ErrInvalidOptions)
	}
	return nil
}

// invisible reports whether r may not appear in a key name: control
// characters (Cc), format characters (Cf: bidi overrides and isolates such
// as U+202E and U+2066, zero-width spaces and joiners, the BOM), and line
// and paragraph separators, all of which can make a name display as
// something it is not.
func invisible(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// validScope reports whether s is a scope-token of RFC 6749 section 3.3.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
			return false
		}
	}
	return true
}
