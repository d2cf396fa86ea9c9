// Package sqliteopen opens an apikit store on SQLite through either driver:
// github.com/mattn/go-sqlite3 (package store/sqlite, cgo) or
// modernc.org/sqlite (package store/sqlite/puresqlite, pure Go), which take
// the same DSN parameters.
package sqliteopen

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite/migrations"
	"github.com/jmoiron/sqlx"
)

// Dialect is the SQLite [store.Dialect].
func Dialect() store.Dialect {
	return store.Dialect{Name: store.DialectSQLite, Migrations: migrations.FS}
}

// The settings Open adds unless the DSN sets them: WAL, a busy timeout,
// foreign keys, NORMAL synchronisation, and immediate write transactions.
// mattn/go-sqlite3 takes each as a parameter of its own; modernc.org/sqlite
// takes the pragmas as _pragma=name(value).
var (
	mattnDefaults = [][2]string{
		{"_journal_mode", "WAL"},
		{"_busy_timeout", "5000"},
		{"_foreign_keys", "on"},
		{"_synchronous", "NORMAL"},
	}
	pragmaDefaults = [][2]string{
		{"journal_mode", "WAL"},
		{"busy_timeout", "5000"},
		{"foreign_keys", "1"},
		{"synchronous", "NORMAL"},
	}
)

// Driver is one of the two SQLite drivers.
type Driver struct {
	Package string // the apikit package, for errors: "sqlite", "puresqlite"
	Name    string // the database/sql driver name
	Pragmas bool   // pragmas are set as _pragma=name(value)
	// Busy reports the driver's "database is busy or locked" errors.
	Busy func(error) bool
}

// Open opens the database at dsn with the driver d.
func Open(ctx context.Context, d Driver, dsn string, opts store.Options) (*store.Store, error) {
	memory := dsn == ":memory:"
	full, err := withDefaults(d, dsn)
	if err != nil {
		return nil, err
	}
	db, err := sqlx.Open(d.Name, full)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Package, err)
	}
	if memory {
		// Each connection to ":memory:" is a different database: keep one.
		db.SetMaxOpenConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	}
	if err := ping(ctx, db, d.Busy); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: opening %s: %w", d.Package, redact(dsn), err)
	}
	return store.NewWith(db, Dialect(), opts), nil
}

// openBusyTimeout bounds how long Open waits for another process that is
// opening the same new database file.
const openBusyTimeout = 5 * time.Second

// ping opens the first connection. Switching a new database file to WAL
// mode takes an exclusive lock without waiting for busy_timeout, so when
// several processes open one new file at once the losers see "database is
// locked" at once; they retry until the winner is done.
func ping(ctx context.Context, db *sqlx.DB, busy func(error) bool) error {
	deadline := time.Now().Add(openBusyTimeout)
	for {
		err := db.PingContext(ctx)
		if err == nil || !busy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// withDefaults adds the default settings the DSN does not set.
func withDefaults(d Driver, dsn string) (string, error) {
	if dsn == "" {
		return "", fmt.Errorf("%s: empty DSN", d.Package)
	}
	base, query, _ := strings.Cut(dsn, "?")
	params, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("%s: invalid DSN parameters: %w", d.Package, err)
	}
	memory := base == ":memory:"
	if !params.Has("_txlock") {
		params.Set("_txlock", "immediate")
	}
	if !d.Pragmas {
		for _, kv := range mattnDefaults {
			if !params.Has(kv[0]) {
				params.Set(kv[0], kv[1])
			}
		}
		if memory {
			params.Set("_journal_mode", "MEMORY")
		}
		return base + "?" + params.Encode(), nil
	}
	for _, kv := range pragmaDefaults {
		set := slices.ContainsFunc(params["_pragma"], func(p string) bool {
			name, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(p)), "(")
			return strings.TrimSpace(name) == kv[0]
		})
		switch {
		case memory && kv[0] == "journal_mode":
			params["_pragma"] = slices.DeleteFunc(params["_pragma"], func(p string) bool {
				return strings.HasPrefix(strings.ToLower(strings.TrimSpace(p)), "journal_mode")
			})
			params.Add("_pragma", "journal_mode(MEMORY)")
		case !set:
			params.Add("_pragma", kv[0]+"("+kv[1]+")")
		}
	}
	return base + "?" + params.Encode(), nil
}

func redact(dsn string) string {
	base, _, _ := strings.Cut(dsn, "?")
	return base
}
