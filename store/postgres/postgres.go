// Package postgres opens an apikit [store.Store] on PostgreSQL (through
// github.com/lib/pq), for production and for running several instances of a
// service on one database.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/apikit/apikit/store"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // registers the "postgres" driver
)

//go:embed migrations
var migrationFiles embed.FS

// migrationLockID is the advisory lock that serialises migrations of the
// apikit schema across processes (the bytes of "apikit" as a number).
const migrationLockID = 0x61706b6974

// Dialect returns the PostgreSQL [store.Dialect].
func Dialect() store.Dialect {
	m, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	return store.Dialect{
		Name:       store.DialectPostgres,
		Migrations: m,
		LockMigrations: func(ctx context.Context, tx *sqlx.Tx) error {
			_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockID)
			return err
		},
	}
}

// Open connects to the PostgreSQL database at dsn, a URL such as
// "postgres://user:pass@host:5432/db?sslmode=require" or a libpq
// key=value string. Unknown URL parameters are run-time parameters
// (for example search_path=myschema). The pool keeps at most 25
// connections open; tune it through [store.Store.DB]. Open checks that the
// database answers; call [store.Store.Migrate] to create the schema.
func Open(ctx context.Context, dsn string) (*store.Store, error) {
	return OpenWith(ctx, dsn, Options{})
}

// Options configures [OpenWith]. The zero value is [Open]'s configuration.
type Options struct {
	// MaxConns bounds the pool's connections (default 25).
	MaxConns int

	// TransactionPooling makes the store work behind a pooler in
	// transaction mode (PgBouncer's pool_mode = transaction), which may
	// hand each transaction, and each statement outside one, to another
	// server connection. It sets lib/pq's binary_parameters=yes, so that a
	// statement with parameters is sent in one round trip (parse, bind,
	// execute) instead of a prepare and an execute that the pooler may
	// route to different servers; []byte parameters then travel in
	// binary. The store keeps no other state in a session: it prepares no
	// statements of its own ([store.Options.NoPreparedStatements]: its hot
	// queries are sent as text, one round trip each), takes no session
	// advisory locks (migrations lock per transaction), sends no SET, and
	// its one named prepared statement (TouchKeys's) lives and is closed
	// inside a transaction. Adding binary_parameters=yes to the URL
	// yourself has the same effect: [OpenWith] then prepares nothing
	// either.
	//
	// Not everything works through such a pooler: LISTEN needs a session
	// (see package invalidate/pgbus), and startup parameters such as
	// search_path must be allowed by the pooler
	// (PgBouncer's ignore_startup_parameters drops them instead).
	TransactionPooling bool

	// Trace, if set, is called around the store's operations: see
	// [store.Trace].
	Trace store.Trace
}

// OpenWith is [Open] with options.
func OpenWith(ctx context.Context, dsn string, opts Options) (*store.Store, error) {
	if opts.TransactionPooling {
		dsn = withParam(dsn, "binary_parameters", "yes")
	}
	// binary_parameters=yes in the DSN says the same as
	// TransactionPooling: statements must not outlive one round trip.
	pooled := param(dsn, "binary_parameters") == "yes"
	n := opts.MaxConns
	if n <= 0 {
		n = 25
	}
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connecting to %s: %w", redact(dsn), err)
	}
	return store.NewWith(db, Dialect(), store.Options{
		NoPreparedStatements: pooled,
		Trace:                opts.Trace,
	}), nil
}

// withParam sets a connection parameter in a URL or key=value DSN.
func withParam(dsn, key, value string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return strings.TrimSpace(dsn) + " " + key + "=" + value
}

// param returns a connection parameter of a URL or key=value DSN ("" if
// unset). Values in quotes are not unquoted: the parameters it reads take
// bare words.
func param(dsn, key string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Query().Get(key)
	}
	value := ""
	for _, f := range strings.Fields(dsn) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			value = v // the last one wins, as in libpq
		}
	}
	return value
}

// redact hides the password of a URL DSN for error messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "the database"
	}
	return u.Redacted()
}
