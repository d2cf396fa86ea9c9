package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/stripemock"
	"github.com/apikit/apikit/internal/testkit/testenv"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// tracedServer starts the example with an OpenTelemetry tracer provider
// that keeps the spans in memory.
func tracedServer(t *testing.T, cfg app.Config) (*testServer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	s := startServer(t, sqliteDB, cfg, func(o *app.Options) { o.TracerProvider = tp })
	return s, exp
}

// spanNames lists the names of the spans, in the order they ended.
func spanNames(spans tracetest.SpanStubs) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	return names
}

// requestSpan returns the server span named name and the names of the
// spans under it (children and theirs).
func requestSpan(t *testing.T, spans tracetest.SpanStubs, name string) (tracetest.SpanStub, []string) {
	t.Helper()
	for _, root := range spans {
		if root.Name != name {
			continue
		}
		under := map[[8]byte]bool{root.SpanContext.SpanID(): true}
		var names []string
		for changed := true; changed; {
			changed = false
			for _, s := range spans {
				if id := s.SpanContext.SpanID(); !under[id] && under[s.Parent.SpanID()] && s.Parent.TraceID() == root.SpanContext.TraceID() {
					under[id], changed = true, true
					names = append(names, s.Name)
				}
			}
		}
		return root, names
	}
	t.Fatalf("no span %q among %v", name, spanNames(spans))
	return tracetest.SpanStub{}, nil
}

// A request through the example is one trace: the server span, named by
// its route pattern, and under it the key lookup, the plan's decision and
// the favorites query; sign-in's email is traced from the request that
// queued it. No span carries a token or an address.
func TestTracing(t *testing.T) {
	s, exp := tracedServer(t, app.Config{})
	c := newCustomer(t, s, "traced@example.com")
	if r := c.call(t, "GET", "/v1/favorites", ""); r.status != http.StatusOK {
		t.Fatalf("GET /v1/favorites = %d", r.status)
	}
	spans := exp.GetSpans()
	root, under := requestSpan(t, spans, "GET /v1/favorites")
	// The key's first use misses the cache (it was issued, not verified).
	for _, want := range []string{"apikey.Key", "store.KeyForVerify", "plan.decide", "favorites.list"} {
		if !slices.Contains(under, want) {
			t.Errorf("GET /v1/favorites has spans %v under it; want %s", under, want)
		}
	}
	var route string
	for _, a := range root.Attributes {
		if a.Key == "http.route" {
			route = a.Value.AsString()
		}
	}
	if route != "/v1/favorites" {
		t.Errorf("http.route = %q, want /v1/favorites", route)
	}
	names := spanNames(spans)
	for _, want := range []string{"POST /app/keys", "apikey.CreateKey", "store.CreateKey", "store.Session", "ratelimit.allow"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s span among %v", want, names)
		}
	}
	// The dev checkout asks for the sign-in email, which a mail worker
	// sends after the response: in the request's trace.
	if !sameTrace(spans, "POST /billing/dev-checkout", "magiclink.mail") {
		t.Errorf("the sign-in email's span is not in the trace of the request that asked for it: %v", names)
	}
	// Sign-in links carry their token in the query: no span records it.
	noSecrets(t, spans, "token=", c.token[:20], c.email)
	// A token that fails its checksum is refused without a query.
	exp.Reset()
	if r := call(t, s.URL, c.token[:len(c.token)-8]+"AAAAAAAA", "GET", "/v1/me", ""); r.status != http.StatusUnauthorized {
		t.Errorf("GET /v1/me with a wrong token = %d", r.status)
	}
	spans = exp.GetSpans()
	noSecrets(t, spans, c.token[:20], c.email)
	if _, under := requestSpan(t, spans, "GET /v1/me"); len(under) != 0 {
		t.Errorf("GET /v1/me with a malformed token has spans %v under it; want none", under)
	}
}

// noSecrets fails t if a span's name or attribute contains any of secrets.
func noSecrets(t *testing.T, spans tracetest.SpanStubs, secrets ...string) {
	t.Helper()
	for _, sp := range spans {
		for _, secret := range secrets {
			if strings.Contains(sp.Name, secret) {
				t.Errorf("span %q shows %q", sp.Name, secret)
			}
			for _, a := range sp.Attributes {
				if v := fmt.Sprint(a.Value.AsInterface()); strings.Contains(v, secret) {
					t.Errorf("span %s has %s=%s", sp.Name, a.Key, v)
				}
			}
		}
	}
}

// sameTrace reports whether spans named a and b share a trace.
func sameTrace(spans tracetest.SpanStubs, a, b string) bool {
	traces := map[string]map[[16]byte]bool{a: {}, b: {}}
	for _, s := range spans {
		if m, ok := traces[s.Name]; ok {
			m[s.SpanContext.TraceID()] = true
		}
	}
	for id := range traces[a] {
		if traces[b][id] {
			return true
		}
	}
	return false
}

// With Redis, the plan's decision is a Redis round trip under the
// request's span; with Stripe, sign-up's Checkout session is a client
// span of its own.
func TestTracingRedisAndStripe(t *testing.T) {
	s, exp := tracedServer(t, app.Config{
		RedisURL:            testenv.Redis(t),
		StripeSecretKey:     "sk_test_favoritesapi",
		StripeWebhookSecret: webhookSecret,
		StripePriceID:       "price_favoritesapi",
		StripeAPIURL:        stripemock.Start(t),
	})
	if p := postForm(t, browser(t), s.URL+"/signup", url.Values{"email": {"traced-stripe@example.com"}}); p.status != http.StatusSeeOther {
		t.Fatalf("POST /signup = %d", p.status)
	}
	spans := exp.GetSpans()
	_, under := requestSpan(t, spans, "POST /signup")
	// ratelimit.allow is the service's span around its abuse limiter,
	// redislimit.allow the limiter's own around its Redis round trip.
	for _, want := range []string{"ratelimit.allow", "redislimit.allow", "stripe.checkout.sessions.create"} {
		if !slices.Contains(under, want) {
			t.Errorf("POST /signup has spans %v under it; want %s", under, want)
		}
	}
	if !slices.ContainsFunc(under, func(n string) bool { return strings.HasPrefix(n, "redis ") }) {
		t.Errorf("POST /signup has no Redis span under it: %v", under)
	}
}
