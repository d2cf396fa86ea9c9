// Package store is apikit's SQL storage: one implementation over sqlx of
// the Store interfaces that apikit's packages declare, in the tables of the
// features that [Store.Migrate] creates:
//
//   - [Keys]: apikey.Store and its optional interfaces: a key's metadata,
//     tags and networks ([Store.StoresKeyAttributes]), and the expiry
//     windows and notice claims of an apikey.ExpiryNotifier
//     ([Store.KeysExpiring], [Store.KeysGraceEnding], [Store.ClaimNotice],
//     [Store.ReleaseNotice], [Store.PruneNotices]);
//   - [Login]: magiclink.Store;
//   - [Billing]: billing.Store;
//   - [Plans]: package plan's durable state: quota usage ([Store.AddUsage]
//     and [Store.Usage] for a plan.Flusher) and per-identity overrides
//     ([Store.SetOverride], [Store.Overrides]);
//   - [Usage]: package usage's counts and alert claims and package
//     billing/meter's outbox of Stripe meter events ([Store.AddCounts],
//     [Store.Counts], [Store.RollupCounts], [Store.ClaimAlert],
//     [Store.EnqueueMeterEvents]…);
//   - [Audit]: audit.Store, the security log ([Store.AppendAuditEvent],
//     [Store.AuditEventsByUser], [Store.AuditEvents],
//     [Store.PruneAuditEvents]);
//
// and the users they share ([Store.CreateUser], [Store.User],
// [Store.Users], [Store.DeleteUser]).
//
// Open a database with store/sqlite (embedded, the default, with cgo),
// store/sqlite/puresqlite (embedded, without cgo) or store/postgres; each
// returns a [*Store]. Call [Store.Migrate] once at start with the features
// the application uses, and [Store.Close] at shutdown; see the examples.
// The package imports neither stripe-go nor any other feature's
// dependencies: it implements billing's contract through package
// billing/subscription.
//
// The SQL is shared; a [Dialect] holds what differs between databases: its
// name ([DialectSQLite], [DialectPostgres]), the numbered migrations and
// how concurrent migrations are serialised. Every check-and-set (roll a
// key, consume a login token, record a webhook event) is a single
// statement or transaction, so that concurrent requests change state
// exactly once. Time is always a parameter: no method reads the clock.
// Package store/storetest holds the conformance suite every backend must
// pass.
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

// The names of the dialects, the values of [Dialect.Name].
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Dialect is what differs between the SQL databases the [Store] runs on.
// Packages store/sqlite, store/sqlite/puresqlite and store/postgres provide
// one each.
type Dialect struct {
	// Name is [DialectSQLite] or [DialectPostgres]. It selects the SQL
	// the store speaks, and names an application's directory of
	// migrations for this database (see [Store.MigrateScope]).
	// Placeholders follow the driver of the *sqlx.DB.
	Name string

	// Migrations holds apikit's schema: a directory per [Feature] and one
	// for the users they share ("users", "keys", "login", "billing",
	// "plans", "usage", "audit"), each
	// of numbered files "0001_description.sql" applied in order, and
	// "legacy", the single scope of earlier releases (see [Store.Migrate]).
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
}

// New returns a Store over db. Most programs use sqlite.Open,
// puresqlite.Open or postgres.Open instead, which configure the connection
// and call New. It panics if db is nil or the dialect is not complete.
func New(db *sqlx.DB, d Dialect) *Store {
	if db == nil || d.Migrations == nil || (d.Name != DialectSQLite && d.Name != DialectPostgres) {
		panic("store: New needs a database and a dialect (DialectSQLite or DialectPostgres) with migrations")
	}
	return &Store{db: db, dialect: d}
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

// rowsAffected returns how many rows a statement changed (or matched).
func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: rows affected: %w", err)
	}
	return n, nil
}

// affected reports whether a statement changed (or matched) any row.
func affected(res sql.Result, err error) (bool, error) {
	n, err := rowsAffected(res, err)
	return n > 0, err
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
