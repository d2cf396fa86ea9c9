package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"github.com/apikit/apikit/apikey"
	"github.com/jmoiron/sqlx"
)

var (
	_ apikey.Store          = (*Store)(nil)
	_ apikey.VerifyStore    = (*Store)(nil)
	_ apikey.AttributeStore = (*Store)(nil)
	_ apikey.ExpiryStore    = (*Store)(nil)
	_ apikey.NoticePruner   = (*Store)(nil)
)

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
	// The attributes (keys migration 0002): JSON or NULL, and
	// space-separated lists.
	Metadata     sql.NullString `db:"metadata"`
	Tags         string         `db:"tags"`
	AllowedCIDRs string         `db:"allowed_cidrs"`
}

const keyColumns = `id, ` + keyFields

// keyFields are the columns of keyColumns but the id, which [Store.Key]
// knows already.
const keyFields = `user_id, name, prefix, secret_hash, previous_secret_hash, previous_expires_at,
	scopes, is_active, created_at, updated_at, last_used_at, expires_at, revoked_at,
	metadata, tags, allowed_cidrs`

// keyPlaceholders has a placeholder for each of keyColumns.
var keyPlaceholders = strings.TrimSuffix(strings.Repeat("?, ", strings.Count(keyColumns, ",")+1), ", ")

// key converts the row. A stored network that does not parse is an error,
// not a key without that restriction.
func (r keyRow) key() (apikey.Key, error) {
	k := apikey.Key{
		ID: r.ID, UserID: r.UserID, Name: r.Name, Prefix: r.Prefix,
		SecretHash: r.SecretHash, PreviousSecretHash: r.PreviousSecretHash,
		PreviousExpiresAt: fromNull(r.PreviousExpiresAt),
		Scopes:            strings.Fields(r.Scopes), Active: r.Active,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		LastUsedAt: fromNull(r.LastUsedAt), ExpiresAt: fromNull(r.ExpiresAt), RevokedAt: fromNull(r.RevokedAt),
	}
	if r.Tags != "" {
		k.Tags = strings.Fields(r.Tags)
	}
	if r.Metadata.Valid && r.Metadata.String != "" {
		k.Metadata = json.RawMessage(r.Metadata.String)
	}
	for _, c := range strings.Fields(r.AllowedCIDRs) {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return apikey.Key{}, fmt.Errorf("store: key %s: stored network %q: %w", r.ID, c, err)
		}
		k.AllowedCIDRs = append(k.AllowedCIDRs, p)
	}
	return k, nil
}

// keys converts rows.
func keys(rows []keyRow) ([]apikey.Key, error) {
	ks := make([]apikey.Key, len(rows))
	for i, r := range rows {
		var err error
		if ks[i], err = r.key(); err != nil {
			return nil, err
		}
	}
	return ks, nil
}

// StoresKeyAttributes implements [apikey.AttributeStore]: CreateKey keeps
// a key's Metadata, Tags and AllowedCIDRs (in the columns of the keys
// feature's second migration), and Key and KeysByUser return them.
func (*Store) StoresKeyAttributes() {}

// CreateKey implements [apikey.Store] and [apikey.AttributeStore]. With a
// cap, the count and the insert are one INSERT … SELECT; on PostgreSQL the
// transaction first locks the user's row, so that concurrent creates for
// one user are serialised (SQLite serialises every write already).
func (s *Store) CreateKey(ctx context.Context, k apikey.Key, maxPerUser int) (err error) {
	ctx, end := s.span(ctx, "store.CreateKey")
	defer func() { end(err) }()
	var metadata any
	if len(k.Metadata) > 0 {
		metadata = string(k.Metadata)
	}
	for _, t := range k.Tags {
		// Tags are stored space-separated; apikey.ValidTag allows no
		// spaces, and a tag that had them would come back split.
		if t == "" || strings.ContainsFunc(t, unicode.IsSpace) {
			return fmt.Errorf("store: CreateKey: tag %q is empty or has a space", t)
		}
	}
	cidrs := make([]string, len(k.AllowedCIDRs))
	for i, p := range k.AllowedCIDRs {
		cidrs[i] = p.String()
	}
	args := []any{k.ID, k.UserID, k.Name, k.Prefix, k.SecretHash, nullBytes(k.PreviousSecretHash), ts(k.PreviousExpiresAt),
		strings.Join(k.Scopes, " "), k.Active, ts(k.CreatedAt), ts(k.UpdatedAt),
		ts(k.LastUsedAt), ts(k.ExpiresAt), ts(k.RevokedAt),
		metadata, strings.Join(k.Tags, " "), strings.Join(cidrs, " ")}
	if maxPerUser <= 0 {
		_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO api_keys (`+keyColumns+`)
			VALUES (`+keyPlaceholders+`)`), args...)
		return err
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if s.dialect.Name == DialectPostgres {
			if _, err := tx.ExecContext(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, k.UserID); err != nil {
				return err
			}
		}
		ok, err := affected(tx.ExecContext(ctx, tx.Rebind(`INSERT INTO api_keys (`+keyColumns+`)
			SELECT `+keyPlaceholders+`
			WHERE (SELECT count(*) FROM api_keys WHERE user_id = ?) < ?`), append(args, k.UserID, maxPerUser)...))
		if err == nil && !ok {
			err = fmt.Errorf("%w: user %d holds %d keys", apikey.ErrTooManyKeys, k.UserID, maxPerUser)
		}
		return err
	})
}

// Key implements [apikey.Store] with a prepared statement, scanned without
// reflection.
func (s *Store) Key(ctx context.Context, id string) (apikey.Key, bool, error) {
	ctx, end := s.span(ctx, "store.Key")
	k, found, err := s.key(ctx, id)
	end(err)
	return k, found, err
}

func (s *Store) key(ctx context.Context, id string) (apikey.Key, bool, error) {
	// The id is not read back: the row's is the one asked for (the
	// comparison is exact in both databases).
	r := keyRow{ID: id}
	err := s.hot.key.scanRow(ctx, id, &r.UserID, &r.Name, &r.Prefix, &r.SecretHash,
		&r.PreviousSecretHash, &r.PreviousExpiresAt, &r.Scopes, &r.Active, &r.CreatedAt, &r.UpdatedAt,
		&r.LastUsedAt, &r.ExpiresAt, &r.RevokedAt, &r.Metadata, &r.Tags, &r.AllowedCIDRs)
	return r.found(err)
}

// found converts the row a lookup scanned, or its error.
func (r *keyRow) found(err error) (apikey.Key, bool, error) {
	ok, err := isFound(err)
	if !ok {
		return apikey.Key{}, false, err
	}
	k, err := r.key()
	if err != nil {
		return apikey.Key{}, false, err
	}
	return k, true, nil
}

// keyVerifyFields are the columns of keyFields a verifier reads: all but
// the three timestamps it does not (created_at, updated_at, last_used_at).
const keyVerifyFields = `user_id, name, prefix, secret_hash, previous_secret_hash, previous_expires_at,
	scopes, is_active, expires_at, revoked_at, metadata, tags, allowed_cidrs`

// KeyForVerify implements [apikey.VerifyStore]: the query of a verifier's
// cache miss, prepared and scanned without reflection, reads the key
// without CreatedAt, UpdatedAt and LastUsedAt.
func (s *Store) KeyForVerify(ctx context.Context, id string) (apikey.Key, bool, error) {
	ctx, end := s.span(ctx, "store.KeyForVerify")
	r := keyRow{ID: id}
	err := s.hot.keyVerify.scanRow(ctx, id, &r.UserID, &r.Name, &r.Prefix, &r.SecretHash,
		&r.PreviousSecretHash, &r.PreviousExpiresAt, &r.Scopes, &r.Active,
		&r.ExpiresAt, &r.RevokedAt, &r.Metadata, &r.Tags, &r.AllowedCIDRs)
	k, found, err := r.found(err)
	end(err)
	return k, found, err
}

// KeysByUser implements [apikey.Store].
func (s *Store) KeysByUser(ctx context.Context, userID int64) (_ []apikey.Key, err error) {
	ctx, end := s.span(ctx, "store.KeysByUser")
	defer func() { end(err) }()
	var rows []keyRow
	if err := s.db.SelectContext(ctx, &rows, s.db.Rebind(`SELECT `+keyColumns+` FROM api_keys
		WHERE user_id = ? ORDER BY created_at DESC, id`), userID); err != nil {
		return nil, err
	}
	return keys(rows)
}

// RevokeKey implements [apikey.Store].
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) (_ bool, err error) {
	ctx, end := s.span(ctx, "store.RevokeKey")
	defer func() { end(err) }()
	t := ts(at)
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`UPDATE api_keys
		SET updated_at = CASE WHEN revoked_at IS NULL THEN ? ELSE updated_at END,
		    revoked_at = COALESCE(revoked_at, ?)
		WHERE id = ?`), t, t, id))
}

// RenameKey implements [apikey.Store].
func (s *Store) RenameKey(ctx context.Context, id, name string, at time.Time) (_ bool, err error) {
	ctx, end := s.span(ctx, "store.RenameKey")
	defer func() { end(err) }()
	return affected(s.db.ExecContext(ctx, s.db.Rebind(
		`UPDATE api_keys SET name = ?, updated_at = ? WHERE id = ?`), name, ts(at), id))
}

// SetKeyActive implements [apikey.Store].
func (s *Store) SetKeyActive(ctx context.Context, id string, active bool, at time.Time) (_ bool, err error) {
	ctx, end := s.span(ctx, "store.SetKeyActive")
	defer func() { end(err) }()
	return affected(s.db.ExecContext(ctx, s.db.Rebind(
		`UPDATE api_keys SET is_active = ?, updated_at = ? WHERE id = ?`), active, ts(at), id))
}

// RollKey implements [apikey.Store] in one statement: the right-hand sides
// read the row as it was before the update.
func (s *Store) RollKey(ctx context.Context, id string, newHash []byte, previousExpiresAt, at time.Time) (_ bool, err error) {
	ctx, end := s.span(ctx, "store.RollKey")
	defer func() { end(err) }()
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`UPDATE api_keys
		SET previous_secret_hash = secret_hash, previous_expires_at = ?, secret_hash = ?, updated_at = ?
		WHERE id = ? AND revoked_at IS NULL`), ts(previousExpiresAt), newHash, ts(at), id))
}

// TouchKeys implements [apikey.Store] in one transaction.
func (s *Store) TouchKeys(ctx context.Context, used map[string]time.Time) (err error) {
	ctx, end := s.span(ctx, "store.TouchKeys")
	defer func() { end(err) }()
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
