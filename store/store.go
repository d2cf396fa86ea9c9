// Package store is apikit's SQL storage: one implementation over sqlx of the
// Store interfaces that packages apikey, magiclink and billing declare.
//
// Open a database with store/sqlite (embedded, the default) or
// store/postgres; both return a [*Store]. Call [Store.Migrate] once at start,
// and [Store.Close] at shutdown:
//
//	st, err := sqlite.Open(ctx, "favoritesapi.db")
//	if err != nil { ... }
//	defer st.Close()
//	if err := st.Migrate(ctx); err != nil { ... }
//	keys := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live"})
//
// The SQL is shared; a [Dialect] holds what differs between databases: the
// placeholder style, the numbered migrations and how concurrent migrations
// are serialised. Every check-and-set (roll a key, consume a login token,
// record a webhook event) is a single statement or transaction, so that
// concurrent requests change state exactly once. Package store/storetest
// holds the conformance suite every backend must pass.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jmoiron/sqlx"
)

// Dialect is what differs between the SQL databases the [Store] runs on.
// Packages store/sqlite and store/postgres provide one each.
type Dialect struct {
	// Name is the database's name, as given to database/sql ("sqlite3",
	// "postgres"). It selects the placeholder style (sqlx.BindType).
	Name string

	// Migrations holds the numbered schema migrations, files named
	// "0001_description.sql" at the root of the FS, applied in order.
	Migrations fs.FS

	// LockMigrations, if set, runs first in each migration transaction and
	// must block until no other process is migrating (PostgreSQL takes an
	// advisory lock). Databases whose write transactions are already
	// exclusive (SQLite's BEGIN IMMEDIATE) leave it nil.
	LockMigrations func(ctx context.Context, tx *sqlx.Tx) error
}

// Store implements apikit's Store interfaces over a SQL database. It is safe
// for concurrent use.
type Store struct {
	db      *sqlx.DB
	dialect Dialect
	now     func() time.Time
}

// New returns a Store over db. Most programs use sqlite.Open or
// postgres.Open instead, which configure the connection and call New.
func New(db *sqlx.DB, d Dialect) *Store {
	if db == nil || d.Migrations == nil {
		panic("store: New needs a database and a dialect with migrations")
	}
	return &Store{db: db, dialect: d, now: time.Now}
}

// DB returns the underlying database handle, for tuning its connection pool
// or for the application's own tables.
func (s *Store) DB() *sqlx.DB { return s.db }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// Ping checks that the database answers, for health checks.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// inTx runs fn in a transaction, committing if it returns nil and rolling
// back otherwise.
func (s *Store) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// isFound turns sql.ErrNoRows into found == false.
func isFound(err error) (bool, error) {
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// affected reports whether a statement changed (matched) any row.
func affected(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: rows affected: %w", err)
	}
	return n > 0, nil
}

// ts converts a time for storage: UTC, microsecond precision (PostgreSQL's),
// and NULL for the zero time.
func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Truncate(time.Microsecond)
}

// fromNull converts a nullable stored time back; NULL is the zero time.
func fromNull(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}
