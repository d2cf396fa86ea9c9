// Package storebench holds what the benchmarks of store/sqlite and
// store/postgres share: a fast seeder of filler keys and the raw
// database/sql twin of the key lookup, for storetest.BenchmarkVerifyMiss.
package storebench

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/storetest"
)

// batch is how many rows one INSERT carries: 5 parameters a row stays
// below SQLite's 32,766 and PostgreSQL's 65,535 parameters a statement.
const batch = 1000

// VerifyMiss returns the storetest.VerifyMiss of st with the given sizes.
// The raw twin's prepared statement is closed when b ends.
func VerifyMiss(b *testing.B, st *store.Store, sizes ...int) storetest.VerifyMiss {
	// The columns of Store.KeyForVerify's query, the verifier's: the id
	// is known.
	raw, err := st.DB().PrepareContext(b.Context(), st.DB().Rebind(`SELECT user_id, name, prefix,
		secret_hash, previous_secret_hash, previous_expires_at, scopes, is_active,
		expires_at, revoked_at, metadata, tags, allowed_cidrs FROM api_keys WHERE id = ?`))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { raw.Close() })
	return storetest.VerifyMiss{
		Sizes: sizes,
		Seed:  func(ctx context.Context, user int64, ids []string) error { return seed(ctx, st, user, ids) },
		Raw: func(ctx context.Context, id string) error {
			var (
				name, prefix, scopes, tags, cidrs string
				userID                            int64
				hash, prev                        []byte
				active                            bool
				prevExp, expires, revoked         sql.NullTime
				metadata                          sql.NullString
			)
			return raw.QueryRowContext(ctx, id).Scan(&userID, &name, &prefix, &hash, &prev, &prevExp,
				&scopes, &active, &expires, &revoked, &metadata, &tags, &cidrs)
		},
	}
}

// Session returns the raw twin of Store.Session, for
// storetest.BenchmarkSession: the same query, prepared, scanned into
// locals. Its statement is closed when b ends.
func Session(b *testing.B, st *store.Store) func(ctx context.Context, hash []byte) error {
	raw, err := st.DB().PrepareContext(b.Context(), st.DB().Rebind(`SELECT s.user_id,
		(SELECT u.email FROM users u WHERE u.id = s.user_id), s.created_at, s.expires_at, s.last_seen_at,
		s.user_agent, s.ip FROM sessions s WHERE s.id_hash = ?`))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { raw.Close() })
	return func(ctx context.Context, hash []byte) error {
		var (
			userID                     int64
			email, agent, ip           string
			created, expires, lastSeen time.Time
		)
		return raw.QueryRowContext(ctx, hash).Scan(&userID, &email, &created, &expires, &lastSeen, &agent, &ip)
	}
}

// seed inserts the filler keys in one transaction, a multi-row INSERT per
// batch.
func seed(ctx context.Context, st *store.Store, user int64, ids []string) error {
	db := st.DB()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := time.Now().UTC().Truncate(time.Microsecond)
	for len(ids) > 0 {
		n := min(batch, len(ids))
		var q strings.Builder
		q.WriteString(`INSERT INTO api_keys (id, user_id, prefix, secret_hash, created_at, updated_at) VALUES `)
		args := make([]any, 0, 5*n)
		for i, id := range ids[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(`(?, ?, 'sk_live', ?, ?, ?)`)
			h := sha256.Sum256([]byte(id))
			args = append(args, id, user, h[:], now, now)
		}
		if _, err := tx.ExecContext(ctx, db.Rebind(q.String()), args...); err != nil {
			return err
		}
		ids = ids[n:]
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if st.Dialect().Name == store.DialectPostgres {
		_, err = db.ExecContext(ctx, `ANALYZE api_keys`)
	} else {
		_, err = db.ExecContext(ctx, `ANALYZE`)
	}
	return err
}
