package billing_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/store/sqlite"
)

// Sign up in dev mode: no Stripe account, a local "no payment taken" page
// whose form completes the checkout, then the user is signed in and
// entitled.
func Example_devMode() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	svc, err := billing.New(st, nil, billing.Options{
		BaseURL: "http://localhost:8080",
		DevMode: true,
		SignIn: func(ctx context.Context, w http.ResponseWriter, userID int64) error {
			fmt.Println("signed in user", userID)
			return nil // the application sets its session cookie here
		},
		CurrentUser: func(ctx context.Context) (int64, bool) { return 0, false },
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)

	post := func(path string, form url.Values) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	w := post("/signup", url.Values{"email": {"ada@example.com"}})
	page, _ := url.Parse(w.Header().Get("Location"))
	fmt.Println(w.Code, page.Path)

	w = post(page.Path, url.Values{"session": {page.Query().Get("session")}})
	fmt.Println(w.Code, w.Header().Get("Location"))

	id, _, _ := st.UserByEmail(ctx, "ada@example.com")
	ok, err := svc.Entitled(ctx, id)
	fmt.Println("entitled:", ok, err)
	// Output:
	// 303 /billing/dev-checkout
	// signed in user 1
	// 303 /app
	// entitled: true <nil>
}

// Connect to Stripe (or stripe-mock) with a client of its own: the global
// stripe.Key is never used.
func ExampleNewClient() {
	c, err := billing.NewClient(billing.ClientOptions{
		Key: "sk_test_123",
		URL: "http://127.0.0.1:12111", // stripe-mock; leave empty for Stripe
	})
	fmt.Println(c.Live(), err)
	// Output: false <nil>
}
