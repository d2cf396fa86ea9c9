package store

import (
	"context"
	"time"

	"github.com/apikit/apikit/apikey"
)

// KeysExpiring implements [apikey.ExpiryStore]: the keys, not revoked,
// whose ExpiresAt is after the position (from, afterID) and before to,
// ordered by ExpiresAt then ID, at most limit of them (none if limit <= 0).
// It reads the partial index api_keys_expiring.
func (s *Store) KeysExpiring(ctx context.Context, from time.Time, afterID string, to time.Time, limit int) ([]apikey.Key, error) {
	return s.keysInWindow(ctx, "expires_at", "expires_at IS NOT NULL", from, afterID, to, limit)
}

// KeysGraceEnding implements [apikey.ExpiryStore]: as
// [Store.KeysExpiring], the rolled keys whose previous secret's grace
// period (PreviousExpiresAt) ends in the window. It reads the partial index
// api_keys_grace_ending.
func (s *Store) KeysGraceEnding(ctx context.Context, from time.Time, afterID string, to time.Time, limit int) ([]apikey.Key, error) {
	return s.keysInWindow(ctx, "previous_expires_at", "previous_secret_hash IS NOT NULL", from, afterID, to, limit)
}

// keysInWindow pages through the live keys by a time column; cond is the
// rest of its partial index's predicate, so that the planner uses it.
func (s *Store) keysInWindow(ctx context.Context, col, cond string, from time.Time, afterID string, to time.Time, limit int) ([]apikey.Key, error) {
	if limit <= 0 {
		return nil, nil
	}
	// The redundant "col >= from" bounds the index scan from below: keys
	// that expired long ago and were never revoked stay in the index, and
	// PostgreSQL does not derive the bound from the OR.
	var rows []keyRow
	f := ts(from)
	if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(`SELECT `+keyColumns+` FROM api_keys
		WHERE revoked_at IS NULL AND `+cond+` AND `+col+` >= ? AND `+col+` < ?
		  AND (`+col+` > ? OR (`+col+` = ? AND id > ?))
		ORDER BY `+col+`, id LIMIT ?`), f, ts(to), f, f, afterID, limit); err != nil {
		return nil, err
	}
	return keys(rows)
}

// ClaimNotice implements [apikey.NoticeStore] with one INSERT … ON
// CONFLICT DO NOTHING into api_key_notices, whose primary key is the
// claim (key, kind, due time in Unix microseconds): of concurrent calls,
// the one whose row is inserted wins. Claims are for stored keys; a claim
// for an unknown key is an error (the foreign key), and a key's claims go
// with it.
func (s *Store) ClaimNotice(ctx context.Context, c apikey.NoticeClaim, at time.Time) (won bool, err error) {
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO api_key_notices (key_id, kind, due, claimed_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (key_id, kind, due) DO NOTHING`), c.KeyID, c.Kind, c.Due.UnixMicro(), at.UnixMicro()))
}

// ReleaseNotice implements [apikey.NoticeStore]: it deletes the claim, if
// there is one.
func (s *Store) ReleaseNotice(ctx context.Context, c apikey.NoticeClaim) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM api_key_notices WHERE key_id = ? AND kind = ? AND due = ?`),
		c.KeyID, c.Kind, c.Due.UnixMicro())
	return err
}

// PruneNotices implements [apikey.NoticePruner]: it deletes the claims
// made before the given time.
func (s *Store) PruneNotices(ctx context.Context, before time.Time) (int64, error) {
	return rowsAffected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM api_key_notices WHERE claimed_at < ?`),
		before.UnixMicro()))
}
