package apikey

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"time"
)

// Key is the stored record of an API key. It never holds the secret, only
// its hash. Zero times mean "never" (LastUsedAt, ExpiresAt, RevokedAt) or
// "none" (PreviousExpiresAt).
type Key struct {
	// ID is the public key id, the middle part of the token.
	ID     string
	UserID int64
	// Name is the owner's label for the key, such as "production server".
	Name   string
	Prefix string
	// SecretHash is the [Hasher] hash of the current secret.
	SecretHash []byte
	// PreviousSecretHash is the hash of the secret replaced by the last
	// [Manager.Roll]; it is accepted until PreviousExpiresAt.
	PreviousSecretHash []byte
	PreviousExpiresAt  time.Time
	Scopes             []string
	// Active is false while the key is deactivated (the FavoritesAPI
	// seed's isActive flag).
	Active     bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time
	RevokedAt  time.Time

	// Metadata is a small JSON object (at most [MaxMetadataLen] bytes,
	// compact) set at issue time and returned in the [Principal], such as
	// {"customer":"acme","tier":"gold"}; nil if none. Do not put secrets
	// in it: it is shown on dashboards and written to logs of the API.
	Metadata json.RawMessage
	// Tags are short labels set at issue time (see [ValidTag]), returned
	// in the Principal.
	Tags []string
	// AllowedCIDRs, if not empty, are the only networks requests with the
	// key may come from; requests from elsewhere are refused with 403
	// ([ErrAddressNotAllowed]). Prefixes are masked, IPv4 ones unmapped.
	AllowedCIDRs []netip.Prefix
}

// Key states, as returned by [Key.State].
const (
	StateActive   = "active"
	StateInactive = "inactive"
	StateExpired  = "expired"
	StateRevoked  = "revoked"
)

// State returns the key's state at time now: "revoked", "expired",
// "inactive" or "active", in that order of precedence.
func (k Key) State(now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return StateRevoked
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return StateExpired
	case !k.Active:
		return StateInactive
	default:
		return StateActive
	}
}

// HasScope reports whether the key carries scope s.
func (k Key) HasScope(s string) bool { return slices.Contains(k.Scopes, s) }

// LogValue implements [slog.LogValuer]; hashes are never logged.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", k.ID),
		slog.String("prefix", k.Prefix),
		slog.Int64("user_id", k.UserID),
	)
}

// err returns the verification error for the key's state, or nil.
func (k Key) err(now time.Time) error {
	switch k.State(now) {
	case StateRevoked:
		return ErrRevoked
	case StateExpired:
		return ErrExpired
	case StateInactive:
		return ErrInactive
	}
	return nil
}
