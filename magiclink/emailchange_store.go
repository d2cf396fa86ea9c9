package magiclink

import (
	"context"
	"errors"
	"time"
)

// EmailChange is a pending change of a user's address, proven by a link sent to the new one.
type EmailChange struct {
	Hash                 []byte // SHA-256 of the emailed token
	UserID               int64
	NewEmail             string // normalised
	CreatedAt, ExpiresAt time.Time
}

// ErrEmailTaken means the new address belongs to another account.
var ErrEmailTaken = errors.New("magiclink: the address belongs to another account")

// EmailChangeStore is implemented by stores that support verified email changes (store/sqlite and store/postgres do).
type EmailChangeStore interface {
	// CreateEmailChange stores a pending change; earlier unused changes of the same user are deleted in the same transaction.
	CreateEmailChange(ctx context.Context, c EmailChange) error
	// ConsumeEmailChange spends the token (unused, expires after now) and, in the same transaction, sets the user's email to NewEmail and verified_at to now,
	// and ends every session of the user (they were started by whoever proved the old address, who need not be whoever proved the new one);
	// it returns the user and the old address. If another account holds NewEmail it spends the token, changes nothing and returns an error wrapping ErrEmailTaken.
	// An unknown, used or expired token reports ok == false and a nil error. Of concurrent calls at most one reports ok.
	ConsumeEmailChange(ctx context.Context, hash []byte, now time.Time) (userID int64, oldEmail, newEmail string, ok bool, err error)
}
