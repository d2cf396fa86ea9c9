package magiclink_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/store/sqlite"
)

// Print login emails instead of sending them, during development.
func ExampleNewConsoleMailer() {
	mailer := magiclink.NewConsoleMailer(os.Stdout)
	_ = mailer.Send(context.Background(), magiclink.Message{
		From:    "FavoritesAPI <login@example.com>",
		To:      "ada@example.com",
		Subject: "FavoritesAPI: your sign-in link",
		Text:    "Use this link to sign in:\n\nhttps://api.example.com/login/verify?token=…\n",
	})
	// Output:
	// ---- email ----
	// From: FavoritesAPI <login@example.com>
	// To: ada@example.com
	// Subject: FavoritesAPI: your sign-in link
	//
	// Use this link to sign in:
	//
	// https://api.example.com/login/verify?token=…
	// ---- end ----
}

// Set up passwordless sign-in: mount the handlers, protect the app, and
// ask for a link.
func ExampleNew() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	_, _, _ = st.EnsureUser(ctx, "ada@example.com")

	var outbox strings.Builder
	login, err := magiclink.New(st, magiclink.Options{
		BaseURL: "https://api.example.com",
		Mailer:  magiclink.NewConsoleMailer(&outbox), // magiclink.NewSMTPMailer in production
		From:    "FavoritesAPI <login@example.com>",
		AppName: "FavoritesAPI",
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	login.Register(mux) // /login, /login/verify, /logout
	mux.Handle("GET /app", login.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := magiclink.UserFrom(r.Context())
		fmt.Fprintln(w, "Hello,", u.Email)
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.PostForm(srv.URL+"/login", url.Values{"email": {"Ada@example.com"}})
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)

	// Close sends what is queued; a server calls it at shutdown.
	if err := login.Close(ctx); err != nil {
		log.Fatal(err)
	}
	token := regexp.MustCompile(`token=[A-Za-z0-9_-]{43}`)
	fmt.Print(token.ReplaceAllString(outbox.String(), "token=…"))
	// Output:
	// 200 OK
	// ---- email ----
	// From: FavoritesAPI <login@example.com>
	// To: ada@example.com
	// Subject: FavoritesAPI: your sign-in link
	//
	// Hello,
	//
	// Use this link to sign in to FavoritesAPI:
	//
	// https://api.example.com/login/verify?token=…
	//
	// It works once, for 15 minutes. If you did not ask for it, ignore this email: nobody can sign in without the link.
	// ---- end ----
}

// RequireUser sends signed-out browsers to the login page, and answers
// JSON clients with 401.
func ExampleService_RequireUser() {
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, ":memory:")
	defer st.Close()
	_, _ = st.Migrate(ctx)
	login, _ := magiclink.New(st, magiclink.Options{BaseURL: "https://api.example.com", Mailer: magiclink.NewConsoleMailer(os.Stdout)})
	defer login.Close(ctx)

	app := login.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	page := httptest.NewRecorder()
	app.ServeHTTP(page, httptest.NewRequest("GET", "/app", nil))
	fmt.Println(page.Code, page.Header().Get("Location"))

	api := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/app/keys", nil)
	req.Header.Set("Accept", "application/json")
	app.ServeHTTP(api, req)
	fmt.Println(api.Code, api.Header().Get("Content-Type"))
	// Output:
	// 303 /login
	// 401 application/problem+json
}

// Back the per-address and per-client limits with your own limiter, such
// as one shared through Redis by every instance.
func ExampleLimiterFunc() {
	allow := func(ctx context.Context, key string) (bool, error) {
		// e.g. d, err := limiter.Allow(ctx, "login-mail:"+key, ratelimit.PerHour(5)); return d.Allowed, err
		return true, nil
	}
	opts := magiclink.Options{
		SendLimiter:   magiclink.LimiterFunc(allow),
		VerifyLimiter: magiclink.NewMemoryLimiter(20, time.Minute, nil),
	}
	ok, _ := opts.SendLimiter.Allow(context.Background(), "ada@example.com")
	fmt.Println(ok)
	// Output: true
}
