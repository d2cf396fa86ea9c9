// Command notesapi is the smallest API business apikit serves: bearer keys
// with scopes and per-key rate limits in front of the application's own
// table, on the go-chi router, with the application's own error format. It
// uses only packages apikey, ratelimit and store (no billing, no sign-in
// pages), and so links neither stripe-go nor go-redis.
//
//	notesapi key --email ada@example.com --scopes notes:read,notes:write
//	notesapi serve
//
// DATABASE_URL picks the database (a SQLite file, default notes.db, or a
// postgres:// URL); ADDR the listen address (default localhost:8081).
package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/postgres"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/go-chi/chi/v5"
)

//go:embed migrations
var migrations embed.FS

// open opens and migrates the database: apikit's tables, then the notes
// table in the application's own migration scope, from one embed with a
// folder per dialect.
func open(ctx context.Context, databaseURL string) (*store.Store, error) {
	var (
		st  *store.Store
		err error
	)
	if strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://") {
		st, err = postgres.Open(ctx, databaseURL)
	} else {
		st, err = sqlite.Open(ctx, databaseURL)
	}
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, st); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

func migrate(ctx context.Context, st *store.Store) error {
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	dir := "migrations/sqlite"
	if st.Dialect().Name == "postgres" {
		dir = "migrations/postgres"
	}
	own, err := fs.Sub(migrations, dir)
	if err != nil {
		return err
	}
	_, err = st.MigrateScope(ctx, "notesapi", own)
	return err
}

// app is the notes API over a migrated store.
type app struct {
	st       *store.Store
	verifier *apikey.Verifier
	limiter  ratelimit.Limiter
	log      *slog.Logger
}

// routes mounts the API on chi: every route needs a key (authn), each
// needs its own scope (RequireScopes, which reads the key the middleware
// already verified), and only then is the key's rate limit spent, so a
// request refused for its scope costs no budget. Every refusal, from any
// layer, is written by writeError in the application's own format.
func (a *app) routes(limit ratelimit.Limit) http.Handler {
	authn := apikey.Middleware(a.verifier, apikey.MiddlewareOptions{
		Realm:        "notesapi",
		ErrorHandler: writeError,
		Logger:       a.log,
	})
	perKey := ratelimit.Middleware(a.limiter, ratelimit.MiddlewareOptions{
		KeyFunc: func(r *http.Request) (string, error) {
			p, _ := apikey.PrincipalFrom(r.Context())
			return p.KeyID, nil
		},
		Limit:  limit,
		Policy: "per-key",
		OnLimited: func(w http.ResponseWriter, r *http.Request, d ratelimit.Decision) {
			writeJSON(w, http.StatusTooManyRequests, errorBody("rate_limited", "Slow down: this key's rate limit is spent."))
		},
		OnError: func(w http.ResponseWriter, r *http.Request, err error) {
			writeJSON(w, http.StatusServiceUnavailable, errorBody("unavailable", "Try again shortly."))
		},
	})
	r := chi.NewRouter()
	r.Route("/v1/notes", func(r chi.Router) {
		r.Use(authn)
		r.With(apikey.RequireScopes("notes:read"), perKey).Get("/", a.list)
		r.With(apikey.RequireScopes("notes:write"), perKey).Post("/", a.create)
	})
	return r
}

// errorBody is the application's error format: not apikit's problem
// documents, to show that every refusal can be rendered the application's
// way.
func errorBody(code, message string) map[string]any {
	return map[string]any{"error": map[string]string{"code": code, "message": message}}
}

// writeError renders apikey's refusals; apikey has already set the
// WWW-Authenticate challenge and Retry-After where they apply.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := "unauthorized"
	switch {
	case errors.Is(err, apikey.ErrInsufficientScope):
		code = "insufficient_scope"
	case errors.Is(err, apikey.ErrForbidden):
		code = "forbidden"
	case errors.Is(err, apikey.ErrInQuery), errors.Is(err, apikey.ErrAmbiguous):
		code = "bad_request"
	case errors.Is(err, apikey.ErrUnavailable):
		code = "unavailable"
	case errors.Is(err, apikey.ErrThrottled):
		code = "rate_limited"
	}
	writeJSON(w, apikey.StatusCode(err), errorBody(code, "The request was refused: "+code+"."))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type note struct {
	ID        int64     `json:"id" db:"id"`
	Body      string    `json:"body" db:"body"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
}

// maxNote caps a note's body.
const maxNote = 1 << 10

func (a *app) create(w http.ResponseWriter, r *http.Request) {
	p, _ := apikey.PrincipalFrom(r.Context())
	var in struct {
		Body string `json:"body"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxNote+64)
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Body == "" || len(in.Body) > maxNote {
		writeJSON(w, http.StatusBadRequest, errorBody("invalid_body", `Send {"body": "…"} of at most 1 KiB.`))
		return
	}
	n := note{Body: in.Body, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	db := a.st.DB()
	err := db.GetContext(r.Context(), &n.ID, db.Rebind(`INSERT INTO notes (user_id, body, created_at) VALUES (?, ?, ?) RETURNING id`),
		p.UserID, n.Body, n.CreatedAt)
	if err != nil {
		a.log.Error("storing a note", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, errorBody("unavailable", "Try again shortly."))
		return
	}
	w.Header().Set("Location", "/v1/notes/"+strconv.FormatInt(n.ID, 10))
	writeJSON(w, http.StatusCreated, n)
}

func (a *app) list(w http.ResponseWriter, r *http.Request) {
	p, _ := apikey.PrincipalFrom(r.Context())
	notes := []note{}
	db := a.st.DB()
	err := db.SelectContext(r.Context(), &notes, db.Rebind(`SELECT id, body, created_at FROM notes
		WHERE user_id = ? ORDER BY id DESC LIMIT 100`), p.UserID)
	if err != nil {
		a.log.Error("listing notes", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, errorBody("unavailable", "Try again shortly."))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"notes": notes})
}
