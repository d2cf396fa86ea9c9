// Package puresqlite opens an apikit [store.Store] on an embedded SQLite
// database through modernc.org/sqlite, a translation of SQLite to Go: no
// cgo and no C compiler, so CGO_ENABLED=0 builds and scratch images work.
// It is the same store as package store/sqlite (github.com/mattn/go-sqlite3,
// the default), with the same schema and settings; a database file written
// by one opens with the other.
//
// The drivers register different names ("sqlite3", "sqlite"), so one program
// may import both packages.
package puresqlite

import (
	"context"
	"errors"

	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/internal/sqliteopen"
	"modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect returns the SQLite [store.Dialect], the same as sqlite.Dialect.
func Dialect() store.Dialect { return sqliteopen.Dialect() }

// Open opens (creating if needed) the SQLite database at dsn, a file path or
// "file:" URI, optionally with modernc.org/sqlite's parameters
// ("app.db?_pragma=busy_timeout(10000)"). Open sets what the DSN does not:
// the settings of package store/sqlite (WAL, busy_timeout 5000,
// foreign_keys, synchronous NORMAL, _txlock=immediate). ":memory:" opens a private
// in-memory database on a single connection, for tests. Open checks that
// the database answers; call [store.Store.Migrate] to create the schema.
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
	return sqliteopen.Open(ctx, sqliteopen.Driver{Package: "puresqlite", Name: "sqlite", Pragmas: true, Busy: busy}, dsn,
		store.Options{Trace: opts.Trace})
}

// busy reports SQLITE_BUSY (5) and SQLITE_LOCKED (6), extended codes
// included.
func busy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code()&0xff == 5 || se.Code()&0xff == 6)
}
