package billing_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/internal/testkit/stripemock"
)

// ClientOptions.Trace wraps every call to Stripe, and the call is made
// with the context it returns.
func TestClientTrace(t *testing.T) {
	type key struct{}
	var (
		mu    sync.Mutex
		names []string
		ended []error
	)
	hc := &http.Client{Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Context().Value(key{}) != "span" {
			t.Errorf("%s %s sent without Trace's context", r.Method, r.URL.Path)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	c, err := billing.NewClient(billing.ClientOptions{
		Key: "sk_test_billing", URL: stripemock.Start(t), MaxNetworkRetries: -1, HTTPClient: hc,
		Trace: func(ctx context.Context, name string) (context.Context, func(error)) {
			mu.Lock()
			names = append(names, name)
			mu.Unlock()
			return context.WithValue(ctx, key{}, "span"), func(err error) {
				mu.Lock()
				ended = append(ended, err)
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, sqliteStore(t), c, billing.Options{})
	if w := h.do(form("/signup", url.Values{"email": {"traced@example.com"}})); w.Code != http.StatusSeeOther {
		t.Fatalf("POST /signup = %d:\n%s", w.Code, w.Body)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(names, []string{"stripe.checkout.sessions.create"}) || len(ended) != 1 || ended[0] != nil {
		t.Errorf("Trace saw %v, ended with %v; want one checkout creation, no error", names, ended)
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
