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
// exactly once. Time is always a parameter: no method reads the clock for
// what it stores or compares.
// The queries on a request's path (a key by id for a verifier's cache miss,
// a session by hash for a signed-in request) are rebound once, prepared on
// first use and scanned without reflection; [Options] turns prepared
// statements off for poolers in transaction mode and sets a [Trace] hook
// around the key and login stores' operations.
//
// Package store/storetest holds the conformance suite every backend must
// pass.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
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
	trace   Trace
	hot     hotQueries
}

// Options configures [NewWith]. The zero value is [New]'s configuration.
type Options struct {
	// NoPreparedStatements makes the store send every query as text
	// instead of preparing its hot queries (a key by id, a session by
	// hash) once per connection. Set it behind a connection pooler in
	// transaction mode, where a statement prepared on one server
	// connection may be executed on another (postgres.OpenWith sets it
	// with Options.TransactionPooling).
	NoPreparedStatements bool

	// Trace, if set, is called around each operation of the apikey and
	// magiclink stores (see [Trace]).
	Trace Trace
}

// Trace starts a span around a store operation, returning the context the
// operation runs in and a function that ends the span with the operation's
// error (nil on success; "not found" is not an error). The operations
// traced are the methods of apikey.Store, apikey.VerifyStore and
// magiclink.Store, named "store." and the method: "store.KeyForVerify" (a
// verifier's cache miss), "store.Session" (a signed-in request),
// "store.TouchKeys", "store.CreateKey"… Names carry no arguments: no key id, hash or address
// reaches a span. It is the hook an OpenTelemetry tracer plugs into:
//
//	func(ctx context.Context, name string) (context.Context, func(error)) {
//		ctx, span := tracer.Start(ctx, name)
//		return ctx, func(err error) {
//			if err != nil {
//				span.SetStatus(codes.Error, err.Error())
//			}
//			span.End()
//		}
//	}
//
// Without a Trace, an operation costs one comparison more.
type Trace func(ctx context.Context, name string) (context.Context, func(error))

// New returns a Store over db. Most programs use sqlite.Open,
// puresqlite.Open or postgres.Open instead, which configure the connection
// and call New. It panics if db is nil or the dialect is not complete.
func New(db *sqlx.DB, d Dialect) *Store { return NewWith(db, d, Options{}) }

// NewWith is [New] with options.
func NewWith(db *sqlx.DB, d Dialect, opts Options) *Store {
	if db == nil || d.Migrations == nil || (d.Name != DialectSQLite && d.Name != DialectPostgres) {
		panic("store: New needs a database and a dialect (DialectSQLite or DialectPostgres) with migrations")
	}
	s := &Store{db: db, dialect: d, trace: opts.Trace}
	s.hot.init(db, !opts.NoPreparedStatements, d.Name == DialectSQLite)
	return s
}

// span starts the [Options.Trace] span name; without a Trace it costs a
// comparison and returns a shared no-op end.
func (s *Store) span(ctx context.Context, name string) (context.Context, func(error)) {
	if s.trace == nil {
		return ctx, endNothing
	}
	return s.trace(ctx, name)
}

func endNothing(error) {}

// hotQueries are the queries on a request's path, rebound for the
// database's placeholders once, and prepared on first use unless the store
// runs without prepared statements.
//
// On SQLite they run detached from the caller's cancellation (see
// [prepared.detach]): each is a lookup by primary key or unique index,
// which under WAL never waits for a writer, so it ends in microseconds
// whatever the context says, and cancelling it would cost more than
// running it: database/sql watches a cancellable context with a goroutine
// and three allocations per query, and go-sqlite3 registers an interrupt
// with context.AfterFunc (four more), for a query that takes about 12 µs.
// A context that has already ended still stops the query before it
// starts. The SQLite pool is unbounded (but for ":memory:", one
// connection), so a lookup does not wait for a connection either; a
// program that bounds it (Store.DB().SetMaxOpenConns) makes a lookup wait,
// whatever its context, until another query returns one. On PostgreSQL, a
// round trip that can hang, the context is honoured throughout.
type hotQueries struct {
	key, keyVerify, session prepared
}

func (h *hotQueries) init(db *sqlx.DB, prepare, detach bool) {
	hot := func(query string) prepared {
		return prepared{db: db.DB, query: db.Rebind(query), prepare: prepare, detach: detach}
	}
	h.key = hot(`SELECT ` + keyFields + ` FROM api_keys WHERE id = ?`)
	h.keyVerify = hot(`SELECT ` + keyVerifyFields + ` FROM api_keys WHERE id = ?`)
	h.session = hot(sessionQuery)
}

func (h *hotQueries) close() error {
	return errors.Join(h.key.close(), h.keyVerify.close(), h.session.close())
}

// prepared is a query prepared on first use. database/sql prepares a
// statement again on each connection it runs on, and a *sql.Stmt is safe
// for concurrent use. No lock is held while preparing: callers that race
// on first use each prepare, one statement is kept and the others are
// closed, and none waits past its own deadline for another's round trip.
// A failed prepare is remembered for [prepareRetry]: until then the query
// runs as text without a prepare attempt first, so a database that
// refuses to prepare costs a round trip a second, not one a request.
type prepared struct {
	db      *sql.DB
	query   string
	prepare bool
	// detach runs the query without the caller's cancellation (but not
	// after it): for SQLite, see [hotQueries].
	detach bool

	stmt    atomic.Pointer[sql.Stmt]
	retryAt atomic.Int64 // Unix nanoseconds before which no prepare is tried
}

// prepareRetry is how long a failed prepare is not tried again.
const prepareRetry = time.Second

// scanRow runs the query with its one argument and scans the first row
// into dest, as QueryRowContext(…).Scan does (sql.ErrNoRows if there is
// none), without allocating a *sql.Row.
func (p *prepared) scanRow(ctx context.Context, arg any, dest ...any) error {
	if p.detach {
		if err := ctx.Err(); err != nil {
			return err
		}
		ctx = context.WithoutCancel(ctx)
	}
	var rows *sql.Rows
	var err error
	if st := p.statement(ctx); st != nil {
		rows, err = st.QueryContext(ctx, arg)
	} else {
		rows, err = p.db.QueryContext(ctx, p.query, arg)
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Close()
}

func (p *prepared) statement(ctx context.Context) *sql.Stmt {
	if !p.prepare {
		return nil
	}
	if st := p.stmt.Load(); st != nil {
		return st
	}
	if time.Now().UnixNano() < p.retryAt.Load() {
		return nil
	}
	st, err := p.db.PrepareContext(ctx, p.query)
	if err != nil {
		p.retryAt.Store(time.Now().Add(prepareRetry).UnixNano())
		return nil
	}
	if !p.stmt.CompareAndSwap(nil, st) {
		st.Close()
		return p.stmt.Load()
	}
	return st
}

func (p *prepared) close() error {
	if st := p.stmt.Swap(nil); st != nil {
		return st.Close()
	}
	return nil
}

// DB returns the underlying database handle, for tuning its connection pool
// or for the application's own tables.
func (s *Store) DB() *sqlx.DB { return s.db }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// Ping checks that the database answers, for health checks.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.hot.close(), s.db.Close())
}

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
