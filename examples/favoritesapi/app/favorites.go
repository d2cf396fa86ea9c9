package app

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apikit/apikit/store"
	"github.com/jmoiron/sqlx"
)

//go:embed migrations
var migrations embed.FS

// migrationScope names FavoritesAPI's migrations in schema_migrations.
const migrationScope = "favoritesapi"

// Favorite is one saved link, as the API returns it.
type Favorite struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	Tags      []string  `json:"tags"`
	CreatedAt time.Time `json:"created_at"`
}

// favorites stores users' favorites in the application's own table, next
// to apikit's, in the same database. Its statements are rebound to the
// database's placeholders once and, unless the database sits behind a
// pooler in transaction mode, prepared once: the hot paths neither parse
// SQL again nor scan through reflection.
type favorites struct {
	db                                     *sql.DB
	insertQ, getQ, firstQ, afterQ, deleteQ stmt
}

// stmt is one of favorites' statements: prepared, or the query text when
// preparing is off.
type stmt struct {
	query string
	st    *sql.Stmt
}

func (s *stmt) exec(ctx context.Context, db *sql.DB, args ...any) (sql.Result, error) {
	if s.st != nil {
		return s.st.ExecContext(ctx, args...)
	}
	return db.ExecContext(ctx, s.query, args...)
}

func (s *stmt) queryRows(ctx context.Context, db *sql.DB, args ...any) (*sql.Rows, error) {
	if s.st != nil {
		return s.st.QueryContext(ctx, args...)
	}
	return db.QueryContext(ctx, s.query, args...)
}

// newFavorites rebinds favorites' statements for db and, when prepare is
// set, prepares them. Behind a pooler in transaction mode prepare must be
// off: a prepared statement lives in a server session that the pooler may
// give to another client (and lib/pq's binary_parameters, which such
// pools need, sends a statement in one round trip anyway).
func newFavorites(ctx context.Context, db *sqlx.DB, prepare bool) (*favorites, error) {
	f := &favorites{db: db.DB}
	const cols = `seq, id, name, url, tags, created_at`
	for _, s := range []struct {
		st    *stmt
		query string
	}{
		{&f.insertQ, `INSERT INTO favorites (id, user_id, name, url, tags, created_at) VALUES (?, ?, ?, ?, ?, ?)`},
		{&f.getQ, `SELECT ` + cols + ` FROM favorites WHERE id = ? AND user_id = ?`},
		{&f.firstQ, `SELECT ` + cols + ` FROM favorites WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?`},
		{&f.afterQ, `SELECT ` + cols + ` FROM favorites WHERE user_id = ? AND (created_at < ? OR (created_at = ? AND id < ?))
			ORDER BY created_at DESC, id DESC LIMIT ?`},
		{&f.deleteQ, `DELETE FROM favorites WHERE id = ? AND user_id = ?`},
	} {
		s.st.query = db.Rebind(s.query)
		if !prepare {
			continue
		}
		st, err := db.PrepareContext(ctx, s.st.query)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("preparing %q: %w", s.st.query, err)
		}
		s.st.st = st
	}
	return f, nil
}

// close closes the prepared statements, before the pool closes.
func (f *favorites) close() error {
	var errs []error
	for _, s := range []*stmt{&f.insertQ, &f.getQ, &f.firstQ, &f.afterQ, &f.deleteQ} {
		if s.st != nil {
			errs = append(errs, s.st.Close())
			s.st = nil
		}
	}
	return errors.Join(errs...)
}

// migrate applies apikit's migrations and then FavoritesAPI's own.
func migrate(ctx context.Context, st *store.Store) ([]store.Migration, error) {
	applied, err := st.Migrate(ctx)
	if err != nil {
		return applied, err
	}
	dir := "migrations/sqlite"
	if st.Dialect().Name == "postgres" {
		dir = "migrations/postgres"
	}
	sub, err := fs.Sub(migrations, dir)
	if err != nil {
		return applied, err
	}
	own, err := st.MigrateScope(ctx, migrationScope, sub)
	return append(applied, own...), err
}

// favoriteIDLen is the length of a favorite's public id: random base62.
const favoriteIDLen = 16

func newFavoriteID() string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 0, favoriteIDLen)
	var buf [32]byte
	for len(b) < favoriteIDLen {
		rand.Read(buf[:])
		for _, c := range buf {
			if c < 248 && len(b) < favoriteIDLen {
				b = append(b, alphabet[c%62])
			}
		}
	}
	return string(b)
}

// validFavoriteID reports whether s could be a favorite id, so that
// anything else (say "../../etc") is a 404 without a query.
func validFavoriteID(s string) bool {
	if len(s) != favoriteIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

func (f *favorites) create(ctx context.Context, userID int64, name, url string, tags []string, now time.Time) (Favorite, error) {
	fav := Favorite{ID: newFavoriteID(), Name: name, URL: url, Tags: tags, CreatedAt: now.UTC().Truncate(time.Microsecond)}
	if fav.Tags == nil {
		fav.Tags = []string{}
	}
	tagsJSON, err := json.Marshal(fav.Tags)
	if err != nil {
		return Favorite{}, err
	}
	_, err = f.insertQ.exec(ctx, f.db, fav.ID, userID, fav.Name, fav.URL, string(tagsJSON), fav.CreatedAt)
	return fav, err
}

// scanFavorite reads a row of the favorites' SELECT columns.
func scanFavorite(rows *sql.Rows) (Favorite, error) {
	var (
		fav  Favorite
		seq  int64
		tags string
	)
	if err := rows.Scan(&seq, &fav.ID, &fav.Name, &fav.URL, &tags, &fav.CreatedAt); err != nil {
		return Favorite{}, err
	}
	fav.CreatedAt = fav.CreatedAt.UTC()
	var err error
	if fav.Tags, err = parseTags(tags); err != nil {
		return Favorite{}, fmt.Errorf("favorite %s: tags: %w", fav.ID, err)
	}
	return fav, nil
}

// parseTags decodes the tags column, a JSON array of strings as
// json.Marshal wrote it. Arrays of strings without escapes, as nearly all
// are, are split in place (the tags share the column's memory); anything
// else goes through encoding/json. Either way the result is
// json.Unmarshal's, and never nil.
func parseTags(s string) ([]string, error) {
	if tags, ok := splitTags(s); ok {
		return tags, nil
	}
	var tags []string
	if err := json.Unmarshal([]byte(s), &tags); err != nil {
		return nil, err
	}
	if tags == nil {
		tags = []string{}
	}
	return tags, nil
}

// splitTags is parseTags' fast path: a compact array of strings with no
// escape, control character or invalid UTF-8, whose strings are then
// exactly the bytes between their quotes. ok is false for anything else.
func splitTags(s string) (tags []string, ok bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, false
	}
	inner := s[1 : len(s)-1]
	if inner == "" {
		return []string{}, true
	}
	for i := 0; i < len(inner); i++ {
		if c := inner[i]; c < 0x20 || c == '\\' {
			return nil, false
		}
	}
	if !utf8.ValidString(inner) {
		return nil, false
	}
	tags = make([]string, 0, strings.Count(inner, `","`)+1)
	for {
		if len(inner) < 2 || inner[0] != '"' {
			return nil, false
		}
		end := strings.IndexByte(inner[1:], '"') + 1
		if end == 0 {
			return nil, false
		}
		tags = append(tags, inner[1:end])
		inner = inner[end+1:]
		if inner == "" {
			return tags, true
		}
		if inner[0] != ',' {
			return nil, false
		}
		inner = inner[1:]
	}
}

// get returns the user's favorite; another user's is not found.
func (f *favorites) get(ctx context.Context, userID int64, id string) (Favorite, bool, error) {
	rows, err := f.getQ.queryRows(ctx, f.db, id, userID)
	if err != nil {
		return Favorite{}, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return Favorite{}, false, rows.Err()
	}
	fav, err := scanFavorite(rows)
	if err != nil {
		return Favorite{}, false, err
	}
	return fav, true, rows.Close()
}

// list returns up to limit of the user's favorites, newest first, after
// the cursor position (zero: from the newest), and the position of the next
// page (zero: no more). Positions are a favorite's creation time and public
// id, which say nothing about other users' favorites (a table-wide
// sequence number would tell a client how many favorites everyone has
// saved), and favorites added while a client pages through never shift the
// pages.
func (f *favorites) list(ctx context.Context, userID int64, limit int, after cursorPos) ([]Favorite, cursorPos, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if after.ID == "" {
		rows, err = f.firstQ.queryRows(ctx, f.db, userID, limit+1)
	} else {
		at := after.At.UTC()
		rows, err = f.afterQ.queryRows(ctx, f.db, userID, at, at, after.ID, limit+1)
	}
	if err != nil {
		return nil, cursorPos{}, err
	}
	defer rows.Close()
	favs := make([]Favorite, 0, limit+1)
	for rows.Next() {
		fav, err := scanFavorite(rows)
		if err != nil {
			return nil, cursorPos{}, err
		}
		favs = append(favs, fav)
	}
	if err := rows.Err(); err != nil {
		return nil, cursorPos{}, err
	}
	var next cursorPos
	if len(favs) > limit {
		favs = favs[:limit]
		next = cursorPos{At: favs[limit-1].CreatedAt, ID: favs[limit-1].ID}
	}
	return favs, next, nil
}

// delete removes the user's favorite; another user's is not found.
func (f *favorites) delete(ctx context.Context, userID int64, id string) (bool, error) {
	res, err := f.deleteQ.exec(ctx, f.db, id, userID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// cursorPos is a place in a user's list of favorites: the creation time
// and id of the last favorite of a page. The zero value is the start.
type cursorPos struct {
	At time.Time
	ID string
}

// Cursors are opaque to clients: "c2.", the creation time in Unix
// microseconds, "." and the id, base64url-encoded.
const cursorPrefix = "c2."

func encodeCursor(p cursorPos) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(p.At.UnixMicro(), 10) + "." + p.ID))
}

var errBadCursor = errors.New("invalid cursor")

func decodeCursor(s string) (cursorPos, error) {
	if len(s) > 64 {
		return cursorPos{}, errBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursorPos{}, errBadCursor
	}
	rest, ok := strings.CutPrefix(string(b), cursorPrefix)
	if !ok {
		return cursorPos{}, errBadCursor
	}
	micros, id, ok := strings.Cut(rest, ".")
	us, err := strconv.ParseInt(micros, 10, 64)
	if !ok || err != nil || us <= 0 || !validFavoriteID(id) {
		return cursorPos{}, errBadCursor
	}
	return cursorPos{At: time.UnixMicro(us).UTC(), ID: id}, nil
}
