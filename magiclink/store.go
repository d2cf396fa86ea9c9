package magiclink

import (
	"context"
	"time"
)

// Store persists accounts, login tokens and sessions for a [Service]. The
// store packages under github.com/apikit/apikit/store implement it for
// SQLite and PostgreSQL; store/storetest checks any implementation.
//
// Contract:
//   - Tokens and sessions are identified by the SHA-256 hash of their
//     secret; the secret itself never reaches the store.
//   - A lookup of something that does not exist reports found (or ok) ==
//     false with a nil error. An error is for system failures only (the
//     database is unreachable, a query failed); the Service then fails
//     closed: no sign-in, and 503 from [Service.RequireUser].
//   - Times are stored with at least microsecond precision and returned in
//     UTC.
//   - Each method is atomic on its own. [Store.ConsumeLoginToken] is a
//     single check-and-set: of any number of concurrent calls with one
//     hash, at most one reports ok.
//   - Implementations must be safe for concurrent use.
type Store interface {
	// UserByEmail finds a user by email, case-insensitively.
	UserByEmail(ctx context.Context, email string) (id int64, found bool, err error)

	// UserEmail returns a user's email address.
	UserEmail(ctx context.Context, id int64) (email string, found bool, err error)

	// CreateLoginToken stores a new login token for t.Email and, in the
	// same transaction, invalidates every earlier unused token of the same
	// address, so that only the newest link works. A hash that already
	// exists is an error. It creates no account.
	CreateLoginToken(ctx context.Context, t LoginToken) error

	// ConsumeLoginToken spends the token with the given hash if it exists,
	// is unused and expires after now, and returns the address it was sent
	// to. It is one atomic statement: of concurrent calls, at most one
	// reports ok. An unknown, used or expired token reports ok == false and
	// a nil error.
	ConsumeLoginToken(ctx context.Context, hash []byte, now time.Time) (email string, ok bool, err error)

	// ConsumeLoginCode spends the token whose nonce hash is nonceHash if
	// codeHash matches its code hash (compared in constant time), it is
	// unused, expires after now and has had fewer than maxAttempts
	// attempts; every call that finds such a token counts an attempt,
	// right or wrong. It returns the address, ok, and whether the sign-in
	// is now void: the attempts are exhausted, and the token is spent so
	// that its link fails too. It is atomic under concurrency: of any
	// number of concurrent calls at most maxAttempts compare a code, and
	// at most one (or one [Store.ConsumeLoginToken]) reports ok.
	ConsumeLoginCode(ctx context.Context, nonceHash, codeHash []byte, maxAttempts int, now time.Time) (email string, ok, void bool, err error)

	// ConfirmEmail records that the address has been proven at now (a
	// login token sent to it was spent) and returns its account. If there
	// is no account with that address it creates one when create is true,
	// else it reports found == false. first reports that the account had
	// never been proven before this call (a new account, or one a paid
	// sign-up created): the caller then ends every session that existed
	// before the proof. Of concurrent calls for one address, at most one
	// reports first.
	ConfirmEmail(ctx context.Context, email string, create bool, now time.Time) (userID int64, first, found bool, err error)

	// CreateSession stores a new session. A hash that already exists is an
	// error.
	CreateSession(ctx context.Context, s Session) error

	// Session returns the session with the given hash, with its user's
	// Email filled in, whether or not it has expired (the Service checks
	// expiry, so that an expired session can be deleted and its cookie
	// cleared).
	Session(ctx context.Context, hash []byte) (s Session, found bool, err error)

	// TouchSession sets the session's LastSeenAt to at, unless it is
	// already later. It never changes ExpiresAt. An unknown hash is not an
	// error.
	TouchSession(ctx context.Context, hash []byte, at time.Time) error

	// DeleteSession deletes one session; found reports whether it existed.
	DeleteSession(ctx context.Context, hash []byte) (found bool, err error)

	// DeleteUserSessions deletes every session of a user and returns how
	// many there were.
	DeleteUserSessions(ctx context.Context, userID int64) (n int64, err error)

	// UserSessions returns every session of a user, expired or not,
	// newest (by CreatedAt) first, with Email filled in.
	UserSessions(ctx context.Context, userID int64) ([]Session, error)

	// DeleteUserSession deletes the session with the given hash if it is
	// the user's; found reports whether it was.
	DeleteUserSession(ctx context.Context, userID int64, hash []byte) (found bool, err error)

	// DeleteUserSessionsExcept deletes every session of a user but the one
	// with hash keep, and returns how many it deleted.
	DeleteUserSessionsExcept(ctx context.Context, userID int64, keep []byte) (n int64, err error)

	// DeleteExpired removes login tokens that are used or expire at or
	// before now, and sessions that expire at or before now, and returns
	// how many rows it removed.
	DeleteExpired(ctx context.Context, now time.Time) (n int64, err error)
}

// LoginToken is a stored login link: the hash of the emailed token, the
// address it was sent to (normalised, lowercase), and until when it works.
// It names an address rather than an account: no account exists for an
// address before the address is proven, unless billing created one for a
// paid sign-up.
type LoginToken struct {
	Hash      []byte // SHA-256 of the token
	Email     string
	CreatedAt time.Time
	ExpiresAt time.Time
	// NonceHash is the SHA-256 of the nonce in the asking browser's
	// __Host-login cookie, and CodeHash the SHA-256 of the code in the
	// email; both are nil for a link sent without a browser
	// ([Service.SendLink]), whose email carries no code.
	NonceHash, CodeHash []byte
}

// Session is a stored browser session.
type Session struct {
	Hash   []byte // SHA-256 of the session id in the cookie
	UserID int64
	// Email is the user's address, filled in by [Store.Session]; it is
	// ignored by [Store.CreateSession].
	Email      string
	CreatedAt  time.Time
	ExpiresAt  time.Time // absolute; activity never extends it
	LastSeenAt time.Time // for the idle timeout
	// UserAgent and IP describe the client that started the session (its
	// User-Agent header and [Options.ClientKey]), trimmed and at most 256
	// characters each, for the user's list of sessions.
	UserAgent, IP string
}
