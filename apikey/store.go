package apikey

import (
	"context"
	"time"
)

// Store persists API keys for a [Manager] and a [Verifier]. The store
// packages under github.com/apikit/apikit/store implement it for SQLite and
// PostgreSQL; store/storetest checks any implementation.
//
// Contract:
//   - A method that looks a key up by id reports found == false with a nil
//     error when there is no such key. An error is for system failures only
//     (the database is unreachable, a query failed): the [Verifier] turns it
//     into [ErrUnavailable] and the request is refused with 503.
//   - Times are stored with at least microsecond precision and returned in
//     UTC; a zero time.Time is stored as NULL and read back as zero.
//   - Each method is atomic on its own; the roll is a single check-and-set,
//     so concurrent calls each take effect exactly once.
//   - Implementations must be safe for concurrent use.
type Store interface {
	// CreateKey inserts a new key. An id that already exists is an error.
	// If maxPerUser is positive and k's user already holds that many keys
	// (revoked ones included), it inserts nothing and returns an error
	// wrapping [ErrTooManyKeys]; the count and the insert are one atomic
	// step, so concurrent creates never exceed the cap.
	CreateKey(ctx context.Context, k Key, maxPerUser int) error

	// Key returns the key with the given id.
	Key(ctx context.Context, id string) (k Key, found bool, err error)

	// KeysByUser returns all keys of a user, revoked ones included, newest
	// first; an unknown user has none.
	KeysByUser(ctx context.Context, userID int64) ([]Key, error)

	// RevokeKey sets RevokedAt and UpdatedAt to at, unless the key is
	// already revoked (then it changes nothing and still reports found).
	RevokeKey(ctx context.Context, id string, at time.Time) (found bool, err error)

	// RenameKey sets Name and UpdatedAt.
	RenameKey(ctx context.Context, id, name string, at time.Time) (found bool, err error)

	// SetKeyActive sets Active and UpdatedAt.
	SetKeyActive(ctx context.Context, id string, active bool, at time.Time) (found bool, err error)

	// RollKey atomically moves the current SecretHash to
	// PreviousSecretHash, valid until previousExpiresAt, sets SecretHash to
	// newHash and UpdatedAt to at. It changes nothing and reports found ==
	// false if the key does not exist or is revoked.
	RollKey(ctx context.Context, id string, newHash []byte, previousExpiresAt, at time.Time) (found bool, err error)

	// TouchKeys records last use: for each id, LastUsedAt becomes the later
	// of its current value and the given time. Unknown ids are ignored.
	TouchKeys(ctx context.Context, used map[string]time.Time) error
}

// A VerifyStore is a [Store] with a lighter lookup for a [Verifier]'s cache
// misses. A Verifier whose store implements it calls KeyForVerify instead
// of Key, on every miss; nothing else does. A type that wraps a
// VerifyStore by embedding it and overrides Key must override KeyForVerify
// too, or the Verifier will go around its Key.
type VerifyStore interface {
	Store

	// KeyForVerify returns the key with the given id as Key does, except
	// that CreatedAt, UpdatedAt and LastUsedAt may be left zero: a
	// Verifier reads none of them, and leaving three timestamps out of the
	// query saves their decoding on the request path.
	KeyForVerify(ctx context.Context, id string) (k Key, found bool, err error)
}
