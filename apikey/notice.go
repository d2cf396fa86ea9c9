package apikey

import (
	"context"
	"time"
)

// Kinds of [Notice].
const (
	// NoticeExpiresSoon: the key expires within 7 days (sent once, when
	// more than a day is left; not for keys issued to live 7 days or
	// less).
	NoticeExpiresSoon = "key.expires_in_7_days"
	// NoticeExpiresTomorrow: the key expires within a day (not for keys
	// issued to live a day or less).
	NoticeExpiresTomorrow = "key.expires_in_1_day"
	// NoticeExpired: the key has expired.
	NoticeExpired = "key.expired"
	// NoticeGraceEnded: the grace period of a rolled key has ended, so
	// its previous secret no longer works.
	NoticeGraceEnded = "key.grace_ended"
	// NoticeLeaked: the key was found in public and has been revoked.
	NoticeLeaked = "key.leaked"
)

// Notice is a message to a key's owner, such as an expiry warning, given
// to a notify callback ([ExpiryOptions.Notify], [LeakOptions.Notify]) that
// mails it. Each notice is sent at most once, across restarts and
// instances, by claiming its [NoticeClaim] in a [NoticeStore] first.
type Notice struct {
	NoticeClaim
	// Key is the key as read when the notice was made; its hashes are
	// never logged (see [Key.LogValue]) and must not be mailed.
	Key Key
	// URL is where a leaked key was found (NoticeLeaked only), as the
	// reporter said: show it as text, do not fetch it.
	URL string
	// Source is what kind of place the leaked key was found in, such as
	// "content", "commit" or "issue" (NoticeLeaked only).
	Source string
}

// NoticeClaim identifies a notice: its kind, the key, and the time it is
// about, so that a key rolled twice gets one NoticeGraceEnded for each
// roll.
type NoticeClaim struct {
	Kind  string
	KeyID string
	// Due is the time the notice is about: the key's ExpiresAt for expiry
	// notices, its PreviousExpiresAt for NoticeGraceEnded, and its
	// CreatedAt for NoticeLeaked (one leak notice per key). Never zero.
	Due time.Time
}

// NoticeStore records which notices have been sent. It is what makes a
// notice go out once even when several instances look for it at the same
// time or one restarts.
//
// Contract: ClaimNotice is one atomic check-and-set: of any number of
// concurrent calls for one claim (same Kind, KeyID and Due, Due compared
// at microsecond precision), across connections and processes, exactly one
// reports won == true, until ReleaseNotice removes the claim. Errors are
// for system failures only. Implementations must be safe for concurrent
// use. apikeytest.TestNoticeStore checks an implementation.
type NoticeStore interface {
	// ClaimNotice records the claim, made at time at, and reports whether
	// this call made it (false: it existed already).
	ClaimNotice(ctx context.Context, c NoticeClaim, at time.Time) (won bool, err error)
	// ReleaseNotice removes the claim, so that the notice can be claimed
	// (and sent) again; it is called when sending failed. Releasing a
	// claim that does not exist is not an error.
	ReleaseNotice(ctx context.Context, c NoticeClaim) error
}

// NoticePruner is a [NoticeStore] that can forget old claims. An
// [ExpiryNotifier] whose store implements it removes, once per run,
// claims made more than [ExpiryOptions.KeepClaims] ago.
type NoticePruner interface {
	// PruneNotices deletes the claims made before the given time and
	// returns how many it deleted.
	PruneNotices(ctx context.Context, before time.Time) (int64, error)
}
