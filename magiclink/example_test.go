package magiclink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

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
	_, _, _ = st.CreateUser(ctx, "ada@example.com", time.Now())

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
	code := regexp.MustCompile(`(?m)^[0-9]{8}$`)
	fmt.Print(code.ReplaceAllString(token.ReplaceAllString(outbox.String(), "token=…"), "12345678"))
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
	// Or enter this code on the page where you asked, in the same browser:
	//
	// 12345678
	//
	// Never tell this code to anyone: nobody from FavoritesAPI will ask for it.
	//
	// It works once, for 15 minutes. If you did not ask for it, ignore this email: nobody can sign in without the link or the code.
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

// Send a sign-in link from your own code, such as a page shown after a
// paid Checkout: "we sent a sign-in link to a•••@example.org".
func ExampleService_SendLink() {
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, ":memory:")
	defer st.Close()
	_, _ = st.Migrate(ctx)
	_, _, _ = st.CreateUser(ctx, "ada@example.com", time.Now())
	var outbox strings.Builder
	login, _ := magiclink.New(st, magiclink.Options{BaseURL: "https://api.example.com", Mailer: magiclink.NewConsoleMailer(&outbox)})

	for range 6 {
		err := login.SendLink(ctx, "ada@example.com")
		switch {
		case errors.Is(err, magiclink.ErrRateLimited):
			fmt.Println("too many links for this address; use the latest one")
		case err != nil: // the queue is full, or the service closed
			fmt.Println("cannot send now:", err)
		default:
			fmt.Println("we sent a sign-in link to", magiclink.RedactEmail("ada@example.com"))
		}
	}
	_ = login.Close(ctx)
	fmt.Println(strings.Count(outbox.String(), "---- email ----"), "emails")
	// Output:
	// we sent a sign-in link to …@example.com
	// we sent a sign-in link to …@example.com
	// we sent a sign-in link to …@example.com
	// we sent a sign-in link to …@example.com
	// we sent a sign-in link to …@example.com
	// too many links for this address; use the latest one
	// 5 emails
}

// Mount the login routes on go-chi/chi. The handlers refuse cross-origin
// POSTs themselves, whatever router mounts them.
func ExampleService_Handler() {
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, ":memory:")
	defer st.Close()
	_, _ = st.Migrate(ctx)
	login, _ := magiclink.New(st, magiclink.Options{BaseURL: "https://api.example.com", Mailer: magiclink.NewConsoleMailer(io.Discard)})
	defer login.Close(ctx)

	r := chi.NewRouter()
	r.Mount("/login", login.Handler()) // GET, POST /login; GET, POST /login/verify
	r.Handle("/logout", login.Handler())

	req := httptest.NewRequest("POST", "/logout", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site") // a form on another site
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	fmt.Println(w.Code)
	// Output: 403
}

// Render every refusal yourself, here as the application's own JSON, and
// leave the rest to the default.
func ExampleOptions_errorHandler() {
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, ":memory:")
	defer st.Close()
	_, _ = st.Migrate(ctx)
	var login *magiclink.Service
	login, _ = magiclink.New(st, magiclink.Options{
		BaseURL: "https://api.example.com",
		Mailer:  magiclink.NewConsoleMailer(io.Discard),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var e *magiclink.Error
			if !errors.As(err, &e) || errors.Is(err, magiclink.ErrUnauthenticated) {
				login.WriteError(w, r, err) // the default: a redirect to /login
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(e.Status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": e.Code, "message": e.Detail})
		},
	})
	defer login.Close(ctx)

	req := httptest.NewRequest("POST", "/logout", nil)
	req.Header.Set("Origin", "https://evil.example")
	w := httptest.NewRecorder()
	login.Handler().ServeHTTP(w, req)
	fmt.Print(w.Code, " ", w.Body.String())
	// Output: 403 {"error":"cross_origin","message":"Cross-origin requests are not accepted: use the form on this site."}
}

// An account page lets a signed-in user change their sign-in address: the
// link goes to the new address, and the Service's handlers (mounted by
// Register) confirm it and tell the old address. The Store must implement
// magiclink.EmailChangeStore, as store/sqlite and store/postgres do.
func ExampleService_RequestEmailChange() {
	var login *magiclink.Service // from magiclink.New
	mux := http.NewServeMux()
	login.Register(mux) // includes GET and POST /login/email/verify
	mux.Handle("POST /app/account/email", login.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := magiclink.UserFrom(r.Context())
		err := login.RequestEmailChange(r.Context(), u.ID, r.PostFormValue("email"))
		switch {
		case errors.Is(err, magiclink.ErrEmailChangeUnsupported):
			http.Error(w, "not supported", http.StatusNotImplemented)
		case err != nil:
			login.WriteError(w, r, err) // the status, code and sentence of the error table
		default:
			fmt.Fprintln(w, "We sent a link to your new address. Follow it to confirm the change.")
		}
	})))
}

// Time the mail path with a tracer of your choice: Trace is called as each
// queued email is handled, in the context of the request that queued it,
// and its function when the handling ends. With OpenTelemetry, start a
// span in Trace and end it in the function returned (see the
// favoritesapi example).
func ExampleOptions_trace() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	_, _, _ = st.CreateUser(ctx, "ada@example.com", time.Now())

	ended := make(chan string, 1)
	login, err := magiclink.New(st, magiclink.Options{
		BaseURL: "https://api.example.com",
		Mailer:  magiclink.NewConsoleMailer(io.Discard),
		Trace: func(ctx context.Context, name string) (context.Context, func(error)) {
			start := time.Now()
			return ctx, func(err error) {
				_ = time.Since(start) // record it
				ended <- fmt.Sprintf("%s: error %v", name, err)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer login.Close(ctx)
	if err := login.SendLink(ctx, "ada@example.com"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-ended)
	// Output: magiclink.mail: error <nil>
}

// Keep an audit trail of sign-ins, sign-outs and email changes: Audit is
// told of each, with the context of the request (or caller), where an
// audit log finds the client's address and user agent. With package
// audit, convert each event to an audit.Event (see the favoritesapi
// example): the kinds have audit's values.
func ExampleOptions_audit() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	ada, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())

	events := make(chan magiclink.AuditEvent, 10)
	login, err := magiclink.New(st, magiclink.Options{
		BaseURL: "https://api.example.com",
		Mailer:  magiclink.NewConsoleMailer(io.Discard),
		Audit: func(ctx context.Context, e magiclink.AuditEvent) error {
			events <- e // append it to the audit log here
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer login.Close(ctx)

	if err := login.SendLink(ctx, "ada@example.com"); err != nil {
		log.Fatal(err)
	}
	e := <-events // reported by the mail worker
	fmt.Println(e.Kind, e.UserID == ada, e.Detail["email"])
	if err := login.RevokeSessions(ctx, ada); err != nil {
		log.Fatal(err)
	}
	e = <-events
	fmt.Println(e.Kind, e.UserID == ada, e.Detail["sessions"])
	// Output:
	// session.link_requested true a•••@example.com
	// session.signed_out_everywhere true 0
}
