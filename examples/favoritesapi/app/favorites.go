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
// to apikit's, in the same database.
type favorites struct {
	db *sqlx.DB
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
	_, err = f.db.ExecContext(ctx, f.db.Rebind(`INSERT INTO favorites (id, user_id, name, url, tags, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`), fav.ID, userID, fav.Name, fav.URL, string(tagsJSON), fav.CreatedAt)
	return fav, err
}

type favoriteRow struct {
	Seq       int64     `db:"seq"`
	ID        string    `db:"id"`
	Name      string    `db:"name"`
	URL       string    `db:"url"`
	Tags      string    `db:"tags"`
	CreatedAt time.Time `db:"created_at"`
}

func (r favoriteRow) favorite() (Favorite, error) {
	fav := Favorite{ID: r.ID, Name: r.Name, URL: r.URL, CreatedAt: r.CreatedAt.UTC()}
	if err := json.Unmarshal([]byte(r.Tags), &fav.Tags); err != nil {
		return Favorite{}, fmt.Errorf("favorite %s: tags: %w", r.ID, err)
	}
	if fav.Tags == nil {
		fav.Tags = []string{}
	}
	return fav, nil
}

// get returns the user's favorite; another user's is not found.
func (f *favorites) get(ctx context.Context, userID int64, id string) (Favorite, bool, error) {
	var r favoriteRow
	err := f.db.GetContext(ctx, &r, f.db.Rebind(`SELECT seq, id, name, url, tags, created_at
		FROM favorites WHERE id = ? AND user_id = ?`), id, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return Favorite{}, false, nil
	}
	if err != nil {
		return Favorite{}, false, err
	}
	fav, err := r.favorite()
	return fav, err == nil, err
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
		rows []favoriteRow
		err  error
	)
	if after.ID == "" {
		err = f.db.SelectContext(ctx, &rows, f.db.Rebind(`SELECT seq, id, name, url, tags, created_at
			FROM favorites WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?`), userID, limit+1)
	} else {
		at := after.At.UTC()
		err = f.db.SelectContext(ctx, &rows, f.db.Rebind(`SELECT seq, id, name, url, tags, created_at
			FROM favorites WHERE user_id = ? AND (created_at < ? OR (created_at = ? AND id < ?))
			ORDER BY created_at DESC, id DESC LIMIT ?`), userID, at, at, after.ID, limit+1)
	}
	if err != nil {
		return nil, cursorPos{}, err
	}
	var next cursorPos
	if len(rows) > limit {
		rows = rows[:limit]
		next = cursorPos{At: rows[limit-1].CreatedAt.UTC(), ID: rows[limit-1].ID}
	}
	favs := make([]Favorite, 0, len(rows))
	for _, r := range rows {
		fav, err := r.favorite()
		if err != nil {
			return nil, cursorPos{}, err
		}
		favs = append(favs, fav)
	}
	return favs, next, nil
}

// delete removes the user's favorite; another user's is not found.
func (f *favorites) delete(ctx context.Context, userID int64, id string) (bool, error) {
	res, err := f.db.ExecContext(ctx, f.db.Rebind(`DELETE FROM favorites WHERE id = ? AND user_id = ?`), id, userID)
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
