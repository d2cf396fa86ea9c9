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
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db.SetMaxOpenConns(25)
	db.SetMaxIdleConns(25)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connecting to %s: %w", redact(dsn), err)
	}
	return store.New(db, Dialect()), nil
}

// redact hides the password of a URL DSN for error messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "the database"
	}
	return u.Redacted()
}
