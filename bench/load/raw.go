package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/postgres"
	"github.com/apikit/apikit/store/sqlite"
)

// The raw twins of the favorites scenarios: a minimal net/http and
// database/sql handler that runs the SQL of the example's favorites
// endpoints (examples/favoritesapi/app/favorites.go) on a database the
// example set up, with no apikit on the request path: no key, no limit,
// no plan. The pool is opened as the example's store opens it (same
// driver, DSN defaults and pool size) and its statements are prepared
// once, as the example's are, so that the difference between a favorites
// row and its twin is apikit and the example's handler.

// rawFavorite is a favorite as the example's API returns it.
type rawFavorite struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	Tags      []string  `json:"tags"`
	CreatedAt time.Time `json:"created_at"`
}

// startFavoritesRaw sets the database up through the example (schema,
// one customer and, for reads, 100 favorites), then serves the raw
// handler on it.
func startFavoritesRaw(ctx context.Context, databaseURL string, write bool) (*target, error) {
	app, err := startFavorites(ctx, databaseURL, write)
	if err != nil {
		return nil, err
	}
	// One favorite through the API tells the customer's id.
	var fav rawFavorite
	var t vegeta.Target
	if err := app.post(&t); err != nil {
		app.close()
		return nil, err
	}
	req, _ := t.Request()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err == nil {
		err = json.NewDecoder(resp.Body).Decode(&fav)
		resp.Body.Close()
	}
	if err != nil {
		app.close()
		return nil, fmt.Errorf("seeding a favorite: %w", err)
	}
	var st *store.Store
	pg := strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://")
	if pg {
		st, err = postgres.Open(ctx, databaseURL)
	} else {
		st, err = sqlite.Open(ctx, databaseURL)
	}
	if err != nil {
		app.close()
		return nil, err
	}
	db := st.DB().DB
	q := func(s string) string {
		if !pg {
			return s
		}
		for i := 1; strings.Contains(s, "?"); i++ {
			s = strings.Replace(s, "?", "$"+strconv.Itoa(i), 1)
		}
		return s
	}
	var uid int64
	err = db.QueryRowContext(ctx, q(`SELECT user_id FROM favorites WHERE id = ?`), fav.ID).Scan(&uid)
	// The example has done its part: its pool would only take
	// connections from the twin's (PostgreSQL's are few).
	app.close()
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("finding the customer: %w", err)
	}
	// Prepared once, as the example's handlers prepare theirs.
	raw := &rawFavorites{user: uid}
	if raw.insert, err = db.PrepareContext(ctx, q(`INSERT INTO favorites (id, user_id, name, url, tags, created_at) VALUES (?, ?, ?, ?, ?, ?)`)); err == nil {
		raw.list, err = db.PrepareContext(ctx, q(`SELECT seq, id, name, url, tags, created_at FROM favorites WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?`))
	}
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("preparing the twin's statements: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/favorites", raw.create)
	mux.HandleFunc("GET /v1/favorites", raw.page)
	base, stop, err := serve(mux)
	if err != nil {
		st.Close()
		return nil, err
	}
	closeAll := func() { stop(); st.Close() }
	// The same requests as the full scenarios, at the twin's address.
	tg, ok := app.targeter, app.ok
	return &target{ok: ok, close: closeAll, targeter: func(t *vegeta.Target) error {
		if err := tg(t); err != nil {
			return err
		}
		t.URL = base + t.URL[strings.Index(t.URL, "/v1/"):]
		return nil
	}}, nil
}

type rawFavorites struct {
	insert, list *sql.Stmt
	user         int64
}

// create is POST /v1/favorites: decode, validate a little, insert, answer 201.
func (f *rawFavorites) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string   `json:"name"`
		URL  string   `json:"url"`
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil || in.Name == "" || in.URL == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	fav := rawFavorite{ID: strings.ToLower(rand.Text()[:16]), Name: in.Name, URL: in.URL, Tags: in.Tags,
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if fav.Tags == nil {
		fav.Tags = []string{}
	}
	tags, _ := json.Marshal(fav.Tags)
	if _, err := f.insert.ExecContext(r.Context(), fav.ID, f.user, fav.Name, fav.URL, string(tags), fav.CreatedAt); err != nil {
		log.Printf("favorites-raw: %v", err)
		http.Error(w, "insert failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(fav)
}

// page is GET /v1/favorites?limit=20: the first page, newest first, with
// a cursor when there is more.
func (f *rawFavorites) page(w http.ResponseWriter, r *http.Request) {
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit < 1 || limit > 100 {
		limit = 20
	}
	rows, err := f.list.QueryContext(r.Context(), f.user, limit+1)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer rows.Close()
	favs := make([]rawFavorite, 0, limit+1)
	for rows.Next() {
		var fav rawFavorite
		var seq int64
		var tags string
		if err := rows.Scan(&seq, &fav.ID, &fav.Name, &fav.URL, &tags, &fav.CreatedAt); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := json.Unmarshal([]byte(tags), &fav.Tags); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fav.CreatedAt = fav.CreatedAt.UTC()
		favs = append(favs, fav)
	}
	if err := rows.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body := struct {
		Favorites  []rawFavorite `json:"favorites"`
		NextCursor *string       `json:"next_cursor"`
	}{Favorites: favs}
	if len(favs) > limit {
		last := favs[limit-1]
		c := base64.RawURLEncoding.EncodeToString([]byte(last.CreatedAt.Format(time.RFC3339Nano) + "|" + last.ID))
		body.Favorites, body.NextCursor = favs[:limit], &c
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}
