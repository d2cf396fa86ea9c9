package readme_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing/fstest"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/invalidate/pgbus"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/go-chi/chi/v5"
)

// openStore opens a migrated SQLite store in a temporary folder, for the
// examples that start from one.
func openStore() (*store.Store, func()) {
	dir, err := os.MkdirTemp("", "apikit-readme-")
	if err != nil {
		log.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := st.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	return st, func() { st.Close(); os.RemoveAll(dir) }
}

// call sends a request to h with the token and prints the status.
func call(h http.Handler, method, path, token string) {
	r := httptest.NewRequest(method, path, nil)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Println(method, path, w.Code)
}

// The README's apikey section.
func Example_apikey() {
	ctx := context.Background()
	st, done := openStore()
	defer done()
	userID, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux := http.NewServeMux()

	verifier := apikey.NewVerifier(st, apikey.VerifierOptions{Prefixes: []string{"fav_live"}})
	defer verifier.Close()
	keys := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "fav_live", Verifier: verifier, MaxKeysPerUser: 50})

	key, token, err := keys.Issue(ctx, userID, apikey.IssueOptions{Name: "ci runner", Scopes: []string{"favorites:read"}})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("issued %s", token)                                      // the secret is shown once, by token.Reveal(); logs print only prefix and id
	_, rolled, err := keys.RollOwned(ctx, userID, key.ID, 24*time.Hour) // the old secret works 24 more hours
	if err != nil {
		log.Fatal(err)
	}

	authn := apikey.Middleware(verifier, apikey.MiddlewareOptions{
		Authorize: func(ctx context.Context, p apikey.Principal) error {
			return nil // e.g. a subscription check: return apikey.Forbid("…") for 403
		},
	})
	mux.Handle("GET /v1/favorites", authn(apikey.RequireScopes("favorites:read")(handler)))
	mux.Handle("POST /v1/favorites", authn(apikey.RequireScopes("favorites:write")(handler)))

	call(mux, "GET", "/v1/favorites", rolled.Reveal())
	call(mux, "POST", "/v1/favorites", rolled.Reveal()) // the key lacks favorites:write
	if err := keys.RevokeOwned(ctx, userID, key.ID); err != nil {
		log.Fatal(err)
	}
	call(mux, "GET", "/v1/favorites", rolled.Reveal())
	fmt.Println(token.String() == "fav_live_"+key.ID+"_…")
	// Output:
	// GET /v1/favorites 201
	// POST /v1/favorites 403
	// GET /v1/favorites 401
	// true
}

// The README's ratelimit section, and how the pieces mount on chi.
func Example_chi() {
	ctx := context.Background()
	st, done := openStore()
	defer done()
	userID, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	verifier := apikey.NewVerifier(st, apikey.VerifierOptions{})
	defer verifier.Close()
	_, token, _ := apikey.NewManager(st, apikey.ManagerOptions{Verifier: verifier}).
		Issue(ctx, userID, apikey.IssueOptions{Scopes: []string{"notes:read"}})
	listNotes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	createNote := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

	limiter := ratelimit.NewMemory(ratelimit.MemoryOptions{}) // or redislimit.New(redisClient, redislimit.Options{})
	perKey := ratelimit.Middleware(limiter, ratelimit.MiddlewareOptions{
		KeyFunc: func(r *http.Request) (string, error) {
			p, _ := apikey.PrincipalFrom(r.Context())
			return p.KeyID, nil
		},
		Limit:  ratelimit.MustParseLimit("2/min"),
		Policy: "per-key",
	})
	authn := apikey.Middleware(verifier, apikey.MiddlewareOptions{})

	r := chi.NewRouter()
	r.Route("/v1/notes", func(r chi.Router) {
		r.Use(authn) // verify the key once
		// check the route's scope, then spend the rate limit: a request
		// refused for its scope costs no budget
		r.With(apikey.RequireScopes("notes:read"), perKey).Get("/", listNotes)
		r.With(apikey.RequireScopes("notes:write"), perKey).Post("/", createNote)
	})

	for range 3 {
		call(r, "GET", "/v1/notes/", token.Reveal())
	}
	call(r, "POST", "/v1/notes/", token.Reveal())
	// Output:
	// GET /v1/notes/ 200
	// GET /v1/notes/ 200
	// GET /v1/notes/ 429
	// POST /v1/notes/ 403
}

// The README's magiclink section.
func Example_magiclink() {
	ctx := context.Background()
	st, done := openStore()
	defer done()
	dashboard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := magiclink.UserFrom(r.Context())
		fmt.Fprintln(w, "hello", u.Email)
	})
	mux := http.NewServeMux()

	mailer := magiclink.NewConsoleMailer(os.Stderr) // in production: magiclink.NewSMTPMailer("smtp://user:pass@smtp.example.com:587", …)
	login, err := magiclink.New(st, magiclink.Options{
		BaseURL: "https://api.example.com", // links are built from this, never from the Host header
		Mailer:  mailer,
		From:    "Example <login@example.com>",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer login.Close(ctx)                               // drains the mail queue
	login.Register(mux)                                  // or r.Mount("/login", login.Handler()) on chi
	mux.Handle("GET /app", login.RequireUser(dashboard)) // dashboard reads magiclink.UserFrom(r.Context())

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/app", nil))
	fmt.Println(w.Code, w.Header().Get("Location"))
	// Output:
	// 303 /login
}

// The README's billing section (compiled; the Stripe calls it makes are
// tested against stripe-mock in package billing).
func Example_billing() {
	ctx := context.Background()
	st, done := openStore()
	defer done()
	login, err := magiclink.New(st, magiclink.Options{BaseURL: "https://api.example.com", Mailer: magiclink.NewConsoleMailer(os.Stderr)})
	if err != nil {
		log.Fatal(err)
	}
	defer login.Close(ctx)
	mux := http.NewServeMux()

	stripe, err := billing.NewClient(billing.ClientOptions{Key: os.Getenv("STRIPE_SECRET_KEY")}) // URL: a stripe-mock in tests
	if err != nil {
		log.Fatal(err)
	}
	bill, err := billing.New(st, stripe, billing.Options{
		PriceID:       "price_…",
		BaseURL:       "https://api.example.com",
		WebhookSecret: os.Getenv("STRIPE_WEBHOOK_SECRET"),
		// Paying proves nothing about an address: after Checkout, billing
		// sends a sign-in link to it, and only that link signs anyone in.
		SendSignInLink: login.SendLink,
		CurrentUser: func(ctx context.Context) (int64, bool) {
			u, ok := magiclink.UserFrom(ctx)
			return u.ID, ok
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	bill.Register(mux) // POST /signup, GET /billing/success, /billing/portal, POST /webhooks/stripe
	api := apikey.Middleware(apikey.NewVerifier(st, apikey.VerifierOptions{}), apikey.MiddlewareOptions{
		Authorize: func(ctx context.Context, p apikey.Principal) error {
			ok, err := bill.Entitled(ctx, p.UserID) // active, trialing, or past_due within the grace period
			if err != nil || ok {
				return err
			}
			return apikey.Forbid("The subscription is not active")
		},
	})
	_ = api
}

// The README's store section: open, migrate the features you use, and
// your own tables beside apikit's.
func Example_store() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "apikit-readme-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	myMigrations := fstest.MapFS{"0001_notes.sql": {Data: []byte(`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);`)}}

	st, err := sqlite.Open(ctx, filepath.Join(dir, "app.db")) // or puresqlite.Open (no cgo), postgres.Open(ctx, "postgres://…")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	// Only the tables of the features you use: here keys (and the users
	// they belong to); add store.Login, store.Billing when you need them.
	if _, err := st.Migrate(ctx, store.Keys); err != nil {
		log.Fatal(err)
	}
	// Your own tables, versioned apart from apikit's.
	if _, err := st.MigrateScope(ctx, "myapp", myMigrations); err != nil {
		log.Fatal(err)
	}

	applied, _ := st.Migrate(ctx, store.Keys, store.Login) // adding a feature later migrates only it
	for _, m := range applied {
		fmt.Println(m.Scope, m.Name)
	}
	// Output:
	// apikit/login 0001_login.sql
	// apikit/login 0002_email_changes.sql
	// apikit/login 0003_login_codes.sql
	// apikit/login 0004_session_details.sql
}

// The README's Users section.
func Example_users() {
	ctx := context.Background()
	st, done := openStore()
	defer done()
	now := time.Now()

	ada, _, err := st.CreateUser(ctx, "Ada@Example.com", now) // the existing user if the address has one
	if err != nil {
		log.Fatal(err)
	}
	u, _, _ := st.User(ctx, ada)
	fmt.Println(u.Email, u.VerifiedAt.IsZero()) // addresses are kept lowercase; unproven until a link is used
	page, _ := st.Users(ctx, 0, 100)            // by id; pass the last id to get the next page
	fmt.Println(len(page))
	// Deleting a user deletes their keys, sessions and pending links in one
	// transaction; subscriptions are kept, unlinked, as billing history.
	found, err := st.DeleteUser(ctx, ada, store.DeleteUserOptions{DeleteSubscriptions: false})
	fmt.Println(found, err)
	// Output:
	// ada@example.com true
	// 1
	// true <nil>
}

// Example_invalidate is the README's invalidation bus (compiled, not run:
// it needs PostgreSQL).
func Example_invalidate() {
	ctx := context.Background()
	st, done := openStore()
	defer done()
	verifier := apikey.NewVerifier(st, apikey.VerifierOptions{})
	defer verifier.Close()
	stripe, err := billing.NewClient(billing.ClientOptions{Key: os.Getenv("STRIPE_SECRET_KEY")})
	if err != nil {
		log.Fatal(err)
	}

	bus, err := pgbus.New(st.DB().DB, os.Getenv("DATABASE_URL"), pgbus.Options{}) // or redisbus.New(redisClient, redisbus.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close(ctx) // sends what is queued
	keys := apikey.NewManager(st, apikey.ManagerOptions{
		Verifier: verifier,
		OnChange: func(id string) { bus.Publish(invalidate.Key(id)) }, // after each change is stored
	})
	bill, _ := billing.New(st, stripe, billing.Options{ /* … */ OnForget: func(uid int64) { bus.Publish(invalidate.User(uid)) }})
	bus.Subscribe(invalidate.Handler{
		Event: func(e invalidate.Event) { // another instance changed something
			switch e.Kind {
			case invalidate.KeyChanged:
				verifier.Invalidate(e.ID)
			case invalidate.UserChanged:
				uid, _ := e.UserID()
				verifier.InvalidateUser(uid)
				bill.Forget(uid)
			case invalidate.Everything:
				verifier.InvalidateAll()
				bill.ForgetAll()
			}
		},
		Degraded: func(down bool) { // the subscription is lost, or back
			if down {
				verifier.ShortenTTL() // serve cached entries for FallbackTTL (1 s) only
				bill.ShortenTTL()
			} else {
				verifier.RestoreTTL() // full TTL for what is read from now on
				bill.RestoreTTL()
			}
		},
	})
	_ = keys
}
