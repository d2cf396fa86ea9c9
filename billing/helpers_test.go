package billing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/stripe/stripe-go/v76/webhook"
)

const secret = "whsec_billing_test"

type userKey struct{}

// harness is a Service with recorded callbacks, mounted on a mux where the
// X-Test-User header plays the signed-in user.
type harness struct {
	t       testing.TB
	svc     *billing.Service
	store   billing.Store
	handler http.Handler

	mu        sync.Mutex
	links     []string // addresses SendSignInLink was called with
	changes   []billing.Subscription
	activated atomic.Int64
	canceled  atomic.Int64
	failed    atomic.Int64
}

func newHarness(t testing.TB, st billing.Store, c *billing.Client, opts billing.Options) *harness {
	t.Helper()
	h := &harness{t: t, store: st}
	if opts.BaseURL == "" {
		opts.BaseURL = "http://127.0.0.1:8080"
	}
	if opts.PriceID == "" {
		opts.PriceID = "price_test"
	}
	if opts.WebhookSecret == "" {
		opts.WebhookSecret = secret
	}
	opts.SendSignInLink = func(ctx context.Context, email string) error {
		h.mu.Lock()
		h.links = append(h.links, email)
		h.mu.Unlock()
		return nil
	}
	opts.CurrentUser = func(ctx context.Context) (int64, bool) {
		id, ok := ctx.Value(userKey{}).(int64)
		return id, ok
	}
	opts.OnChange = func(ctx context.Context, userID int64, s billing.Subscription) {
		h.mu.Lock()
		h.changes = append(h.changes, s)
		h.mu.Unlock()
	}
	opts.OnActivated = func(context.Context, int64) { h.activated.Add(1) }
	opts.OnCanceled = func(context.Context, int64) { h.canceled.Add(1) }
	opts.OnPaymentFailed = func(context.Context, int64) { h.failed.Add(1) }
	svc, err := billing.New(st, c, opts)
	if err != nil {
		t.Fatalf("billing.New: %v", err)
	}
	h.svc = svc
	mux := http.NewServeMux()
	svc.Register(mux)
	h.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u := r.Header.Get("X-Test-User"); u != "" {
			id, _ := strconv.ParseInt(u, 10, 64)
			r = r.WithContext(context.WithValue(r.Context(), userKey{}, id))
		}
		mux.ServeHTTP(w, r)
	})
	return h
}

func (h *harness) sentLinks() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.links...)
}

func (h *harness) changeCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.changes)
}

func (h *harness) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.handler.ServeHTTP(w, r)
	return w
}

// event is a Stripe event payload.
type event struct {
	ID      string
	Type    string
	Created int64
	Object  map[string]any
}

func (e event) payload() []byte {
	b, err := json.Marshal(map[string]any{
		"id": e.ID, "object": "event", "api_version": "2023-10-16", "created": e.Created,
		"type": e.Type, "livemode": false, "data": map[string]any{"object": e.Object},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// signed returns a webhook request for the payload, signed now.
func signed(payload []byte) *http.Request {
	return signedAt(payload, time.Now(), secret)
}

func signedAt(payload []byte, at time.Time, key string) *http.Request {
	sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: key, Timestamp: at})
	r := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", strings.NewReader(string(sp.Payload)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Stripe-Signature", sp.Header)
	return r
}

func (h *harness) send(e event) int {
	h.t.Helper()
	return h.do(signed(e.payload())).Code
}

// subObject is a subscription object as Stripe sends it.
func subObject(id, customer, status string, userID int64) map[string]any {
	return map[string]any{
		"id": id, "object": "subscription", "customer": customer, "status": status,
		"current_period_start": time.Now().Add(-time.Hour).Unix(),
		"current_period_end":   time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), "cancel_at_period_end": false,
		"metadata": map[string]any{"apikit_user_id": fmt.Sprint(userID)},
		"items": map[string]any{"object": "list", "data": []any{map[string]any{
			"id": "si_1", "object": "subscription_item", "price": map[string]any{"id": "price_test", "object": "price"},
		}}},
	}
}

// checkoutObject is a completed Checkout session as apikit creates it for
// a signed-in user: client_reference_id and apikit_user_id metadata.
func checkoutObject(userID int64, customer, sub, email string) map[string]any {
	return map[string]any{
		"id": "cs_test_" + sub, "object": "checkout.session", "mode": "subscription", "status": "complete",
		"payment_status": "paid", "client_reference_id": fmt.Sprint(userID), "customer": customer,
		"subscription": sub, "customer_details": map[string]any{"email": email},
		"metadata": map[string]any{"apikit_user_id": fmt.Sprint(userID)},
	}
}

func mustUser(t testing.TB, st billing.Store, email string) int64 {
	t.Helper()
	id, _, err := st.CreateUser(context.Background(), email, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sqliteStore(t testing.TB) billing.Store { return testdb.SQLite(t) }

// backends runs f on SQLite and, when APIKIT_TEST_POSTGRES is set, PostgreSQL.
func backends(t *testing.T, f func(t *testing.T, st billing.Store)) {
	t.Run("SQLite", func(t *testing.T) { f(t, testdb.SQLite(t)) })
	t.Run("Postgres", func(t *testing.T) { f(t, testdb.Postgres(t)) })
}

// failingStore fails ApplyEvent while fail is set.
type failingStore struct {
	billing.Store
	fail atomic.Bool
}

func (f *failingStore) ApplyEvent(ctx context.Context, ev billing.Event, ch billing.Change) (billing.Applied, error) {
	if f.fail.Load() {
		return billing.Applied{}, fmt.Errorf("store down")
	}
	return f.Store.ApplyEvent(ctx, ev, ch)
}
