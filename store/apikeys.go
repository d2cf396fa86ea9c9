package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/jmoiron/sqlx"
)

var _ apikey.Store = (*Store)(nil)

// keyRow is an api_keys row as stored.
type keyRow struct {
	ID                 string       `db:"id"`
	UserID             int64        `db:"user_id"`
	Name               string       `db:"name"`
	Prefix             string       `db:"prefix"`
	SecretHash         []byte       `db:"secret_hash"`
	PreviousSecretHash []byte       `db:"previous_secret_hash"`
	PreviousExpiresAt  sql.NullTime `db:"previous_expires_at"`
	Scopes             string       `db:"scopes"`
	Active             bool         `db:"is_active"`
	CreatedAt          time.Time    `db:"created_at"`
	UpdatedAt          time.Time    `db:"updated_at"`
	LastUsedAt         sql.NullTime `db:"last_used_at"`
	ExpiresAt          sql.NullTime `db:"expires_at"`
	RevokedAt          sql.NullTime `db:"revoked_at"`
}

const keyColumns = `id, user_id, name, prefix, secret_hash, previous_secret_hash, previous_expires_at,
	scopes, is_active, created_at, updated_at, last_used_at, expires_at, revoked_at`

func (r keyRow) key() apikey.Key {
	return apikey.Key{
		ID: r.ID, UserID: r.UserID, Name: r.Name, Prefix: r.Prefix,
		SecretHash: r.SecretHash, PreviousSecretHash: r.PreviousSecretHash,
		PreviousExpiresAt: fromNull(r.PreviousExpiresAt),
		Scopes:            strings.Fields(r.Scopes), Active: r.Active,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		LastUsedAt: fromNull(r.LastUsedAt), ExpiresAt: fromNull(r.ExpiresAt), RevokedAt: fromNull(r.RevokedAt),
	}
}

// CreateKey implements [apikey.Store]. With a cap, the count and the insert
// are one INSERT … SELECT; on PostgreSQL the transaction first locks the
// user's row, so that concurrent creates for one user are serialised (SQLite
// serialises every write already).
func (s *Store) CreateKey(ctx context.Context, k apikey.Key, maxPerUser int) error {
	args := []any{k.ID, k.UserID, k.Name, k.Prefix, k.SecretHash, nullBytes(k.PreviousSecretHash), ts(k.PreviousExpiresAt),
		strings.Join(k.Scopes, " "), k.Active, ts(k.CreatedAt), ts(k.UpdatedAt),
		ts(k.LastUsedAt), ts(k.ExpiresAt), ts(k.RevokedAt)}
	if maxPerUser <= 0 {
		_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO api_keys (`+keyColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), args...)
		return err
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if s.dialect.Name == DialectPostgres {
			if _, err := tx.ExecContext(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, k.UserID); err != nil {
				return err
			}
		}
		ok, err := affected(tx.ExecContext(ctx, tx.Rebind(`INSERT INTO api_keys (`+keyColumns+`)
			SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
			WHERE (SELECT count(*) FROM api_keys WHERE user_id = ?) < ?`), append(args, k.UserID, maxPerUser)...))
		if err == nil && !ok {
			err = fmt.Errorf("%w: user %d holds %d keys", apikey.ErrTooManyKeys, k.UserID, maxPerUser)
		}
		return err
	})
}

// Key implements [apikey.Store].
func (s *Store) Key(ctx context.Context, id string) (apikey.Key, bool, error) {
	var r keyRow
	err := s.db.GetContext(ctx, &r, s.db.Rebind(`SELECT `+keyColumns+` FROM api_keys WHERE id = ?`), id)
	ok, err := isFound(err)
	if !ok {
		return apikey.Key{}, false, err
	}
	return r.key(), true, nil
}

// KeysByUser implements [apikey.Store].
func (s *Store) KeysByUser(ctx context.Context, userID int64) ([]apikey.Key, error) {
	var rows []keyRow
	if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(`SELECT `+keyColumns+` FROM api_keys
		WHERE user_id = ? ORDER BY created_at DESC, id`), userID); err != nil {
		return nil, err
	}
	keys := make([]apikey.Key, len(rows))
	for i, r := range rows {
		keys[i] = r.key()
	}
	return keys, nil
}

// RevokeKey implements [apikey.Store].
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) (bool, error) {
	t := ts(at)
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`UPDATE api_keys
		SET updated_at = CASE WHEN revoked_at IS NULL THEN ? ELSE updated_at END,
		    revoked_at = COALESCE(revoked_at, ?)
		WHERE id = ?`), t, t, id))
}

// RenameKey implements [apikey.Store].
func (s *Store) RenameKey(ctx context.Context, id, name string, at time.Time) (bool, error) {
	return affected(s.db.ExecContext(ctx, s.db.Rebind(
		`UPDATE api_keys SET name = ?, updated_at = ? WHERE id = ?`), name, ts(at), id))
}

// SetKeyActive implements [apikey.Store].
func (s *Store) SetKeyActive(ctx context.Context, id string, active bool, at time.Time) (bool, error) {
	return affected(s.db.ExecContext(ctx, s.db.Rebind(
		`UPDATE api_keys SET is_active = ?, updated_at = ? WHERE id = ?`), active, ts(at), id))
}

// RollKey implements [apikey.Store] in one statement: the right-hand sides
// read the row as it was before the update.
func (s *Store) RollKey(ctx context.Context, id string, newHash []byte, previousExpiresAt, at time.Time) (bool, error) {
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`UPDATE api_keys
		SET previous_secret_hash = secret_hash, previous_expires_at = ?, secret_hash = ?, updated_at = ?
		WHERE id = ? AND revoked_at IS NULL`), ts(previousExpiresAt), newHash, ts(at), id))
}

// TouchKeys implements [apikey.Store] in one transaction.
func (s *Store) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		stmt, err := tx.PreparexContext(ctx, tx.Rebind(`UPDATE api_keys SET last_used_at = ?
			WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for id, at := range used {
			t := ts(at)
			if _, err := stmt.ExecContext(ctx, t, id, t); err != nil {
				return err
			}
		}
		return nil
	})
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
