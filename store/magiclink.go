package store

import (
	"bytes"
	"context"
	"crypto/subtle"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/apikit/apikit/magiclink"
	"github.com/jmoiron/sqlx"
)

var _ magiclink.Store = (*Store)(nil)

// CreateLoginToken implements [magiclink.Store]: earlier unused tokens of
// the address are deleted in the same transaction as the insert.
func (s *Store) CreateLoginToken(ctx context.Context, t magiclink.LoginToken) (err error) {
	ctx, end := s.span(ctx, "store.CreateLoginToken")
	defer func() { end(err) }()
	email := normEmail(t.Email)
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, tx.Rebind(
			`DELETE FROM login_tokens WHERE email = ? AND used_at IS NULL`), email); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO login_tokens
			(token_hash, email, created_at, expires_at, nonce_hash, code_hash) VALUES (?, ?, ?, ?, ?, ?)`),
			t.Hash, email, ts(t.CreatedAt), ts(t.ExpiresAt), nilIfEmpty(t.NonceHash), nilIfEmpty(t.CodeHash))
		return err
	})
}

// ConsumeLoginToken implements [magiclink.Store] in one UPDATE … RETURNING:
// the row is locked by the first writer, and later ones see used_at set.
func (s *Store) ConsumeLoginToken(ctx context.Context, hash []byte, now time.Time) (_ string, _ bool, err error) {
	ctx, end := s.span(ctx, "store.ConsumeLoginToken")
	defer func() { end(err) }()
	var email string
	t := ts(now)
	err = s.db.GetContext(ctx, &email, s.db.Rebind(`UPDATE login_tokens SET used_at = ?
		WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING email`), t, hash, t)
	ok, err := isFound(err)
	return email, ok, err
}

// nilIfEmpty stores an absent hash as NULL.
func nilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// ConsumeLoginCode implements [magiclink.Store]. One UPDATE … RETURNING
// takes an attempt (and, if it is the last one, spends the token at once),
// so of concurrent calls at most maxAttempts get the code hash to compare;
// the comparison is made here, in constant time, and a right code spends
// the token with a second UPDATE that, like ConsumeLoginToken's, only one
// caller (code or link) can win.
func (s *Store) ConsumeLoginCode(ctx context.Context, nonceHash, codeHash []byte, maxAttempts int, now time.Time) (email string, ok, void bool, err error) {
	ctx, end := s.span(ctx, "store.ConsumeLoginCode")
	defer func() { end(err) }()
	if len(nonceHash) == 0 || maxAttempts < 1 {
		return "", false, false, nil
	}
	t := ts(now)
	var row struct {
		Email    string `db:"email"`
		CodeHash []byte `db:"code_hash"`
		Attempts int    `db:"attempts"`
	}
	err = s.db.GetContext(ctx, &row, s.db.Rebind(`UPDATE login_tokens
		SET attempts = attempts + 1, used_at = CASE WHEN attempts + 1 >= ? THEN ? ELSE used_at END
		WHERE nonce_hash = ? AND code_hash IS NOT NULL AND used_at IS NULL AND expires_at > ? AND attempts < ?
		RETURNING email, code_hash, attempts`), maxAttempts, t, nonceHash, t, maxAttempts)
	if found, err := isFound(err); !found {
		return "", false, false, err
	}
	last := row.Attempts >= maxAttempts // the UPDATE spent the token already
	if subtle.ConstantTimeCompare(row.CodeHash, codeHash) != 1 {
		return "", false, last, nil
	}
	if last {
		return row.Email, true, false, nil
	}
	err = s.db.GetContext(ctx, &email, s.db.Rebind(`UPDATE login_tokens SET used_at = ?
		WHERE nonce_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING email`), t, nonceHash, t)
	ok, err = isFound(err)
	return email, ok, false, err
}

// ConfirmEmail implements [magiclink.Store]. The account is created (if
// asked) by an insert that ignores a concurrent twin, and marked proven by
// one UPDATE that matches only while verified_at is NULL, so of concurrent
// calls one reports first.
func (s *Store) ConfirmEmail(ctx context.Context, email string, create bool, now time.Time) (id int64, first, found bool, err error) {
	ctx, end := s.span(ctx, "store.ConfirmEmail")
	defer func() { end(err) }()
	email = normEmail(email)
	t := ts(now)
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		if create {
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO users (email, created_at, updated_at)
				VALUES (?, ?, ?) ON CONFLICT ((lower(email))) DO NOTHING`), email, t, t); err != nil {
				return err
			}
		}
		err := tx.GetContext(ctx, &id, tx.Rebind(`UPDATE users SET verified_at = ?, updated_at = ?
			WHERE lower(email) = ? AND verified_at IS NULL RETURNING id`), t, t, email)
		if first, err = isFound(err); err != nil || first {
			found = first
			return err
		}
		err = tx.GetContext(ctx, &id, tx.Rebind(`SELECT id FROM users WHERE lower(email) = ?`), email)
		found, err = isFound(err)
		return err
	})
	if err != nil {
		return 0, false, false, err
	}
	return id, first, found, nil
}

// CreateSession implements [magiclink.Store].
func (s *Store) CreateSession(ctx context.Context, se magiclink.Session) (err error) {
	ctx, end := s.span(ctx, "store.CreateSession")
	defer func() { end(err) }()
	last := se.LastSeenAt
	if last.IsZero() {
		last = se.CreatedAt
	}
	_, err = s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO sessions
		(id_hash, user_id, created_at, expires_at, last_seen_at, user_agent, ip) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		se.Hash, se.UserID, ts(se.CreatedAt), ts(se.ExpiresAt), ts(last), capDetail(se.UserAgent), capDetail(se.IP))
	return err
}

// capDetail trims a session detail and caps it at 256 characters.
func capDetail(s string) string {
	s = strings.TrimSpace(strings.ToValidUTF8(s, ""))
	if r := []rune(s); len(r) > 256 {
		s = strings.TrimSpace(string(r[:256]))
	}
	return s
}

// UserSessions implements [magiclink.Store].
func (s *Store) UserSessions(ctx context.Context, userID int64) (_ []magiclink.Session, err error) {
	ctx, end := s.span(ctx, "store.UserSessions")
	defer func() { end(err) }()
	rows, err := s.db.QueryxContext(ctx, s.db.Rebind(`SELECT s.id_hash, s.user_id, u.email,
		s.created_at, s.expires_at, s.last_seen_at, s.user_agent, s.ip
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.user_id = ?
		ORDER BY s.created_at DESC, s.id_hash`), userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []magiclink.Session
	for rows.Next() {
		var se magiclink.Session
		if err := rows.Scan(&se.Hash, &se.UserID, &se.Email, &se.CreatedAt, &se.ExpiresAt, &se.LastSeenAt, &se.UserAgent, &se.IP); err != nil {
			return nil, err
		}
		se.CreatedAt, se.ExpiresAt, se.LastSeenAt = se.CreatedAt.UTC(), se.ExpiresAt.UTC(), se.LastSeenAt.UTC()
		out = append(out, se)
	}
	return out, rows.Err()
}

// DeleteUserSession implements [magiclink.Store].
func (s *Store) DeleteUserSession(ctx context.Context, userID int64, hash []byte) (_ bool, err error) {
	ctx, end := s.span(ctx, "store.DeleteUserSession")
	defer func() { end(err) }()
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM sessions WHERE id_hash = ? AND user_id = ?`), hash, userID))
}

// DeleteUserSessionsExcept implements [magiclink.Store].
func (s *Store) DeleteUserSessionsExcept(ctx context.Context, userID int64, keep []byte) (_ int64, err error) {
	ctx, end := s.span(ctx, "store.DeleteUserSessionsExcept")
	defer func() { end(err) }()
	return rowsAffected(s.db.ExecContext(ctx, s.db.Rebind(
		`DELETE FROM sessions WHERE user_id = ? AND id_hash <> ?`), userID, keep))
}

// sessionQuery reads a session with its user's email (see [Store.Session]).
// The email is a scalar subquery rather than a join: the same plan (two
// primary-key searches), but go-sqlite3 reads a joined row with 24 more
// allocations and twice the time. A session whose user is gone (the row
// is deleted with it) has a NULL email and is not found.
const sessionQuery = `SELECT s.user_id, (SELECT u.email FROM users u WHERE u.id = s.user_id),
	s.created_at, s.expires_at, s.last_seen_at, s.user_agent, s.ip
	FROM sessions s WHERE s.id_hash = ?`

// Session implements [magiclink.Store] in one query, prepared and scanned
// without reflection: it runs on every signed-in request.
func (s *Store) Session(ctx context.Context, hash []byte) (magiclink.Session, bool, error) {
	ctx, end := s.span(ctx, "store.Session")
	se, found, err := s.session(ctx, hash)
	end(err)
	return se, found, err
}

func (s *Store) session(ctx context.Context, hash []byte) (magiclink.Session, bool, error) {
	var se magiclink.Session
	var email sql.NullString
	err := s.hot.session.scanRow(ctx, hash,
		&se.UserID, &email, &se.CreatedAt, &se.ExpiresAt, &se.LastSeenAt, &se.UserAgent, &se.IP)
	if ok, err := isFound(err); !ok || !email.Valid {
		return magiclink.Session{}, false, err
	}
	// The row's id_hash is hash: not read back, but not the caller's
	// slice either.
	se.Hash, se.Email = bytes.Clone(hash), email.String
	se.CreatedAt, se.ExpiresAt, se.LastSeenAt = se.CreatedAt.UTC(), se.ExpiresAt.UTC(), se.LastSeenAt.UTC()
	return se, true, nil
}

// TouchSession implements [magiclink.Store].
func (s *Store) TouchSession(ctx context.Context, hash []byte, at time.Time) (err error) {
	ctx, end := s.span(ctx, "store.TouchSession")
	defer func() { end(err) }()
	t := ts(at)
	_, err = s.db.ExecContext(ctx, s.db.Rebind(
		`UPDATE sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at < ?`), t, hash, t)
	return err
}

// DeleteSession implements [magiclink.Store].
func (s *Store) DeleteSession(ctx context.Context, hash []byte) (_ bool, err error) {
	ctx, end := s.span(ctx, "store.DeleteSession")
	defer func() { end(err) }()
	return affected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM sessions WHERE id_hash = ?`), hash))
}

// DeleteUserSessions implements [magiclink.Store].
func (s *Store) DeleteUserSessions(ctx context.Context, userID int64) (_ int64, err error) {
	ctx, end := s.span(ctx, "store.DeleteUserSessions")
	defer func() { end(err) }()
	return rowsAffected(s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM sessions WHERE user_id = ?`), userID))
}

// DeleteExpired implements [magiclink.Store], and removes used and expired
// email changes ([Store.CreateEmailChange]) too, in one transaction.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (_ int64, err error) {
	ctx, end := s.span(ctx, "store.DeleteExpired")
	defer func() { end(err) }()
	t := ts(now)
	var total int64
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		for _, q := range []string{
			`DELETE FROM login_tokens WHERE used_at IS NOT NULL OR expires_at <= ?`,
			`DELETE FROM email_changes WHERE used_at IS NOT NULL OR expires_at <= ?`,
			`DELETE FROM sessions WHERE expires_at <= ?`,
		} {
			n, err := rowsAffected(tx.ExecContext(ctx, tx.Rebind(q), t))
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}

var _ magiclink.EmailChangeStore = (*Store)(nil)

// CreateEmailChange implements [magiclink.EmailChangeStore]: earlier unused
// changes of the user are deleted in the same transaction as the insert.
func (s *Store) CreateEmailChange(ctx context.Context, c magiclink.EmailChange) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, tx.Rebind(
			`DELETE FROM email_changes WHERE user_id = ? AND used_at IS NULL`), c.UserID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO email_changes
			(token_hash, user_id, new_email, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
			c.Hash, c.UserID, normEmail(c.NewEmail), ts(c.CreatedAt), ts(c.ExpiresAt))
		return err
	})
}

// ConsumeEmailChange implements [magiclink.EmailChangeStore] in one
// transaction. The token is spent by one UPDATE … RETURNING, so of
// concurrent calls one finds it; the address is changed only if no other
// account holds it, and otherwise the spent token is committed alone.
func (s *Store) ConsumeEmailChange(ctx context.Context, hash []byte, now time.Time) (userID int64, oldEmail, newEmail string, ok bool, err error) {
	t := ts(now)
	taken := false
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		var c struct {
			UserID   int64  `db:"user_id"`
			NewEmail string `db:"new_email"`
		}
		found, err := isFound(tx.GetContext(ctx, &c, tx.Rebind(`UPDATE email_changes SET used_at = ?
			WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING user_id, new_email`), t, hash, t))
		if !found {
			return err
		}
		userID, newEmail = c.UserID, c.NewEmail
		q := `SELECT email FROM users WHERE id = ?`
		if s.dialect.Name == DialectPostgres {
			q += ` FOR UPDATE`
		}
		if found, err = isFound(tx.GetContext(ctx, &oldEmail, tx.Rebind(q), userID)); !found {
			return err // the user is gone: the token is spent, nothing else
		}
		var holders int
		if err := tx.GetContext(ctx, &holders, tx.Rebind(
			`SELECT COUNT(*) FROM users WHERE lower(email) = ? AND id <> ?`), newEmail, userID); err != nil {
			return err
		}
		if holders > 0 {
			taken = true
			return nil
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE users SET email = ?, verified_at = ?, updated_at = ?
			WHERE id = ?`), newEmail, t, t, userID); err != nil {
			return err
		}
		// The sessions were started by whoever proved the old address;
		// the new one is proven by someone who may be someone else.
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM sessions WHERE user_id = ?`), userID); err != nil {
			return err
		}
		ok = true
		return nil
	})
	switch {
	case err != nil:
		return 0, "", "", false, err
	case taken:
		return userID, oldEmail, newEmail, false, fmt.Errorf("store: changing the email of user %d: %w", userID, magiclink.ErrEmailTaken)
	case !ok:
		return 0, "", "", false, nil
	}
	return userID, oldEmail, newEmail, true, nil
}
