package audit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/audit/audittest"
)

// An application sends its key events to the audit log: apikey's Event
// converts field by field, and the actor, address and user agent come from
// the request's context.
func Example() {
	ctx := context.Background()
	clock := func() time.Time { return time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC) }
	log := audit.New(audittest.NewMemoryStore(), audit.Options{
		Now:      clock,
		IsSecret: func(w string) bool { _, err := apikey.Parse(w); return err == nil },
	})
	keyEvents := func(ctx context.Context, e apikey.Event) error {
		_, err := log.Append(ctx, audit.Event{Kind: audit.Kind(e.Kind), UserID: e.UserID, KeyID: e.KeyID,
			Time: e.At, Actor: audit.Actor{Kind: audit.ActorKind(e.Actor)}, Detail: e.Detail})
		return err
	}
	keys := apikeytest.NewMemoryStore()
	m := apikey.NewManager(keys, apikey.ManagerOptions{Prefix: "fav_live", Audit: keyEvents, Now: clock})
	user, _, _ := keys.CreateUser(ctx, "ada@example.com", clock())

	// What audit.Middleware and the session middleware put in a request's
	// context.
	req := audit.WithSource(ctx, audit.Source{
		Actor: audit.Actor{Kind: audit.ActorUser, ID: fmt.Sprint(user)},
		IP:    netip.MustParseAddr("203.0.113.5"), UserAgent: "Mozilla/5.0",
	})
	k, _, _ := m.Issue(req, user, apikey.IssueOptions{Name: "production"})
	_ = m.Revoke(req, k.ID)

	events, _, _ := log.List(ctx, user, audit.Page{Limit: 50})
	for _, e := range events {
		fmt.Println(e.Time.Format(time.DateTime), e.Kind, e.Actor.Kind, e.Actor.ID, e.IP, e.UserAgent, e.Detail)
	}
	// Output:
	// 2026-05-01 12:00:00 key.revoked user 1 203.0.113.5 Mozilla/5.0 map[]
	// 2026-05-01 12:00:00 key.issued user 1 203.0.113.5 Mozilla/5.0 map[environment:live name:production prefix:fav_live]
}

// An operator's export: every event, oldest first, one JSON object a line.
func ExampleLog_Export() {
	ctx := context.Background()
	log := audit.New(audittest.NewMemoryStore(), audit.Options{
		Now: func() time.Time { return time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC) },
	})
	op := audit.WithActor(ctx, audit.Actor{Kind: audit.ActorOperator, ID: "ops"})
	log.Append(op, audit.Event{Kind: audit.AccountDeleted, UserID: 7})
	log.Append(ctx, audit.Event{Kind: audit.PlanChanged, UserID: 8, Actor: audit.Actor{Kind: audit.ActorStripe},
		Detail: map[string]string{"from": "free", "to": "pro"}})
	log.Export(ctx, os.Stdout, 0)
	// Output:
	// {"id":1,"time":"2026-05-01T12:00:00Z","kind":"account.deleted","user_id":7,"actor":{"kind":"operator","id":"ops"}}
	// {"id":2,"time":"2026-05-01T12:00:00Z","kind":"billing.plan_changed","user_id":8,"actor":{"kind":"stripe"},"detail":{"from":"free","to":"pro"}}
}

// Middleware records each request's client address and user agent; with
// no client-address function it is the TCP peer, right only without a
// proxy in front.
func ExampleMiddleware() {
	h := audit.Middleware(nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := audit.SourceFrom(r.Context())
		fmt.Println(s.IP, s.UserAgent)
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "198.51.100.7:51234"
	r.Header.Set("User-Agent", "curl/8.5")
	h.ServeHTTP(httptest.NewRecorder(), r)
	// Output:
	// 198.51.100.7 curl/8.5
}
