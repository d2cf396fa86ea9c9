// Package sqlite opens an apikit [store.Store] on an embedded SQLite
// database (github.com/mattn/go-sqlite3, which needs cgo and a C compiler;
// package store/sqlite/puresqlite is the same store without cgo).
//
// Open configures the connection for a web server: WAL journal (readers do
// not block the writer), a busy timeout (writers wait for each other instead
// of failing), foreign keys on, and immediate write transactions (a
// transaction takes the write lock when it begins, so two transactions can
// never deadlock upgrading from read to write).
package sqlite

import (
	"context"
	"errors"

	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/internal/sqliteopen"
	"github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// Dialect returns the SQLite [store.Dialect], which package
// store/sqlite/puresqlite shares.
func Dialect() store.Dialect { return sqliteopen.Dialect() }

// Open opens (creating if needed) the SQLite database at dsn, a file path or
// "file:" URI, optionally with go-sqlite3 parameters ("app.db?_busy_timeout=10000").
// ":memory:" opens a private in-memory database on a single connection, for
// tests. Open checks that the database answers; call [store.Store.Migrate]
// to create the schema.
func Open(ctx context.Context, dsn string) (*store.Store, error) {
	return OpenWith(ctx, dsn, Options{})
}

// Options configures [OpenWith]. The zero value is [Open]'s configuration.
type Options struct {
	// Trace, if set, is called around the store's operations: see
	// [store.Trace].
	Trace store.Trace
}

// OpenWith is [Open] with options.
func OpenWith(ctx context.Context, dsn string, opts Options) (*store.Store, error) {
	return sqliteopen.Open(ctx, sqliteopen.Driver{Package: "sqlite", Name: "sqlite3", Busy: busy}, dsn,
		store.Options{Trace: opts.Trace})
}

func busy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}
