package store

import (
	"context"
	"database/sql"
	"strings"
	"time"
)

// User is a customer account: the identity that API keys, login sessions
// and subscriptions belong to.
type User struct {
	ID        int64
	Email     string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Emails are compared case-insensitively; the store keeps them lowercased.
func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// EnsureUser returns the id of the user with the given email, creating the
// user if there is none; created reports which. Concurrent calls for one
// email create one user. Validating the address is the caller's job.
func (s *Store) EnsureUser(ctx context.Context, email string) (id int64, created bool, err error) {
	email = normEmail(email)
	now := ts(s.now())
	err = s.db.GetContext(ctx, &id, s.db.Rebind(
		`INSERT INTO users (email, created_at, updated_at) VALUES (?, ?, ?)
		 ON CONFLICT ((lower(email))) DO NOTHING RETURNING id`), email, now, now)
	if err == nil {
		return id, true, nil
	}
	if err != sql.ErrNoRows {
		return 0, false, err
	}
	// The user exists (or was created concurrently and is committed now).
	id, ok, err := s.UserByEmail(ctx, email)
	if err == nil && !ok {
		err = sql.ErrNoRows
	}
	return id, false, err
}

// UserByEmail returns the id of the user with the given email
// (case-insensitively).
func (s *Store) UserByEmail(ctx context.Context, email string) (id int64, found bool, err error) {
	err = s.db.GetContext(ctx, &id, s.db.Rebind(`SELECT id FROM users WHERE lower(email) = ?`), normEmail(email))
	found, err = isFound(err)
	return id, found, err
}

// UserEmail returns the email address of the user with the given id.
func (s *Store) UserEmail(ctx context.Context, id int64) (email string, found bool, err error) {
	err = s.db.GetContext(ctx, &email, s.db.Rebind(`SELECT email FROM users WHERE id = ?`), id)
	found, err = isFound(err)
	return email, found, err
}

// User returns the user with the given id.
func (s *Store) User(ctx context.Context, id int64) (User, bool, error) {
	var u User
	err := s.db.QueryRowxContext(ctx, s.db.Rebind(
		`SELECT id, email, created_at, updated_at FROM users WHERE id = ?`), id).
		Scan(&u.ID, &u.Email, &u.CreatedAt, &u.UpdatedAt)
	ok, err := isFound(err)
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return u, ok, err
}
