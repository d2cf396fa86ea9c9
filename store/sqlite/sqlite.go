// Package sqlite opens an apikit [store.Store] on an embedded SQLite
// database (github.com/mattn/go-sqlite3, which needs cgo and a C compiler).
//
// Open configures the connection for a web server: WAL journal (readers do
// not block the writer), a busy timeout (writers wait for each other instead
// of failing), foreign keys on, and immediate write transactions (a
// transaction takes the write lock when it begins, so two transactions can
// never deadlock upgrading from read to write).
package sqlite

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/apikit/apikit/store"
	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Dialect returns the SQLite [store.Dialect].
func Dialect() store.Dialect {
	m, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	return store.Dialect{Name: "sqlite3", Migrations: m}
}

// Defaults are the connection parameters Open adds unless the DSN sets them.
var defaults = [][2]string{
	{"_journal_mode", "WAL"},
	{"_busy_timeout", "5000"},
	{"_foreign_keys", "on"},
	{"_txlock", "immediate"},
	{"_synchronous", "NORMAL"},
}

// Open opens (creating if needed) the SQLite database at dsn, a file path or
// "file:" URI, optionally with go-sqlite3 parameters ("app.db?_busy_timeout=10000").
// ":memory:" opens a private in-memory database on a single connection, for
// tests. Open checks that the database answers; call [store.Store.Migrate]
// to create the schema.
func Open(ctx context.Context, dsn string) (*store.Store, error) {
	memory := dsn == ":memory:"
	full, err := withDefaults(dsn)
	if err != nil {
		return nil, err
	}
	db, err := sqlx.Open("sqlite3", full)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if memory {
		// Each connection to ":memory:" is a different database: keep one.
		db.SetMaxOpenConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	}
	if err := ping(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: opening %s: %w", redact(dsn), err)
	}
	return store.New(db, Dialect()), nil
}

// openBusyTimeout bounds how long Open waits for another process that is
// opening the same new database file.
const openBusyTimeout = 5 * time.Second

// ping opens the first connection. Switching a new database file to WAL
// mode takes an exclusive lock without waiting for busy_timeout, so when
// several processes open one new file at once the losers see "database is
// locked" at once; they retry until the winner is done.
func ping(ctx context.Context, db *sqlx.DB) error {
	deadline := time.Now().Add(openBusyTimeout)
	for {
		err := db.PingContext(ctx)
		var se sqlite3.Error
		busy := errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
		if !busy || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// withDefaults adds the default parameters the DSN does not set.
func withDefaults(dsn string) (string, error) {
	if dsn == "" {
		return "", fmt.Errorf("sqlite: empty DSN")
	}
	base, query, _ := strings.Cut(dsn, "?")
	params, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("sqlite: invalid DSN parameters: %w", err)
	}
	for _, kv := range defaults {
		if !params.Has(kv[0]) {
			params.Set(kv[0], kv[1])
		}
	}
	if base == ":memory:" {
		params.Set("_journal_mode", "MEMORY")
	}
	return base + "?" + params.Encode(), nil
}

func redact(dsn string) string {
	base, _, _ := strings.Cut(dsn, "?")
	return base
}
