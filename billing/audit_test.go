package billing_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/internal/testkit/stripemock"
)

// The kinds and actors are package audit's (audit.SubscriptionChanged,
// …), so that the application's audit hook passes them on as they are:
// compared with audit's constants, not with literals, so that a rename on
// either side fails here.
func TestAuditKindValues(t *testing.T) {
	for got, want := range map[string]string{
		billing.EventSubscriptionChanged: string(audit.SubscriptionChanged),
		billing.EventPlanChanged:         string(audit.PlanChanged),
		billing.EventCheckoutCompleted:   string(audit.CheckoutCompleted),
		billing.EventPlanChangeRequested: string(audit.PlanChangeRequested),
		billing.ActorStripe:              string(audit.ActorStripe),
		billing.ActorUser:                string(audit.ActorUser),
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

type sourceKey struct{}

// auditLog records what Options.Audit is told, as "kind actor user
// source detail" lines, the source being what the context carried.
type auditLog struct {
	mu    sync.Mutex
	lines []string
	fail  error
}

func (l *auditLog) hook(ctx context.Context, e billing.AuditEvent) error {
	src, _ := ctx.Value(sourceKey{}).(string)
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.At.IsZero() {
		return errors.New("no time")
	}
	l.lines = append(l.lines, fmt.Sprintf("%s %s %d %s %v", e.Kind, e.Actor, e.UserID, src, e.Detail))
	return l.fail
}

func (l *auditLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := l.lines
	l.lines = nil
	return got
}

func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Webhooks report the checkout, each subscription change and each plan
// change, once (redeliveries report nothing), as Stripe, with the
// request's context.
func TestAuditWebhooks(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		log := &auditLog{}
		h := newHarness(t, st, nil, billing.Options{DevMode: true, Plans: testCatalog(), Audit: log.hook})
		ada := mustUser(t, st, "ada@example.org")
		stranger := "cus_other"
		now := time.Now().Unix()
		sub := func(status, price string, cancelAtEnd bool) map[string]any {
			o := subWithPrice("sub_1", "cus_1", status, price, ada, time.Now())
			o["cancel_at_period_end"] = cancelAtEnd
			return o
		}
		send := func(e event) int {
			r := signed(e.payload())
			return h.do(r.WithContext(context.WithValue(r.Context(), sourceKey{}, "stripe-ip"))).Code
		}
		u := fmt.Sprint(ada)
		for _, c := range []struct {
			name string
			ev   event
			want []string
		}{
			{"checkout", event{"evt_1", "checkout.session.completed", now, checkoutObject(ada, "cus_1", "sub_1", "ada@example.org")}, []string{
				"billing.checkout_completed stripe " + u + " stripe-ip map[customer:cus_1 event:evt_1 event_type:checkout.session.completed plan:hobby price:price_test subscription:sub_1]",
				"billing.subscription_changed stripe " + u + " stripe-ip map[change:created customer:cus_1 event:evt_1 event_type:checkout.session.completed plan:hobby price:price_test status:active subscription:sub_1]",
				"billing.plan_changed stripe " + u + " stripe-ip map[event:evt_1 event_type:checkout.session.completed from:free subscription:sub_1 to:hobby]",
			}},
			{"redelivered", event{"evt_1", "checkout.session.completed", now, checkoutObject(ada, "cus_1", "sub_1", "ada@example.org")}, nil},
			{"created after checkout: nothing new", event{"evt_2", "customer.subscription.created", now + 1, sub("active", "price_test", false)}, []string{
				"billing.subscription_changed stripe " + u + " stripe-ip map[change:updated customer:cus_1 event:evt_2 event_type:customer.subscription.created plan:hobby price:price_test status:active subscription:sub_1]",
			}},
			{"upgrade", event{"evt_3", "customer.subscription.updated", now + 2, sub("active", "price_pro", false)}, []string{
				"billing.subscription_changed stripe " + u + " stripe-ip map[change:updated customer:cus_1 event:evt_3 event_type:customer.subscription.updated plan:pro price:price_pro status:active subscription:sub_1]",
				"billing.plan_changed stripe " + u + " stripe-ip map[event:evt_3 event_type:customer.subscription.updated from:hobby subscription:sub_1 to:pro]",
			}},
			{"past due", event{"evt_4", "customer.subscription.updated", now + 3, sub("past_due", "price_pro", true)}, []string{
				"billing.subscription_changed stripe " + u + " stripe-ip map[cancel_at_period_end:true change:updated customer:cus_1 event:evt_4 event_type:customer.subscription.updated plan:pro previous_status:active price:price_pro status:past_due subscription:sub_1]",
			}},
			{"stale event", event{"evt_5", "customer.subscription.updated", now, sub("active", "price_test", false)}, nil},
			{"invoice", event{"evt_6", "invoice.paid", now + 4, map[string]any{"id": "in_1", "object": "invoice", "customer": "cus_1"}}, nil},
			{"deleted", event{"evt_7", "customer.subscription.deleted", now + 5, sub("canceled", "price_pro", false)}, []string{
				"billing.subscription_changed stripe " + u + " stripe-ip map[change:canceled customer:cus_1 event:evt_7 event_type:customer.subscription.deleted plan:pro previous_status:past_due price:price_pro status:canceled subscription:sub_1]",
				"billing.plan_changed stripe " + u + " stripe-ip map[event:evt_7 event_type:customer.subscription.deleted from:pro subscription:sub_1 to:free]",
			}},
			{"another product's customer", event{"evt_8", "customer.subscription.created", now + 6,
				subWithPrice("sub_9", stranger, "active", "price_other", 0, time.Now())}, nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				if code := send(c.ev); code != http.StatusOK {
					t.Fatalf("webhook = %d", code)
				}
				checkLines(t, log.take(), c.want)
			})
		}
	})
}

// A failing audit hook is logged and counted and changes nothing: the
// webhook is answered 200 and its change is applied.
func TestAuditFailureKeepsWebhook(t *testing.T) {
	st := sqliteStore(t)
	log := &auditLog{fail: errors.New("audit store down")}
	h := newHarness(t, st, nil, billing.Options{DevMode: true, Plans: testCatalog(), Audit: log.hook})
	ada := mustUser(t, st, "ada@example.org")
	if c := h.send(event{"evt_1", "customer.subscription.created", time.Now().Unix(),
		subWithPrice("sub_1", "cus_1", "active", "price_pro", ada, time.Now())}); c != http.StatusOK {
		t.Fatalf("webhook = %d", c)
	}
	if got := planName(t, h.svc, ada); got != "pro" {
		t.Errorf("plan %s, want pro", got)
	}
	if n := len(log.take()); n != 2 || h.svc.Stats().AuditErrors != 2 {
		t.Errorf("%d events, AuditErrors %d; want 2, 2", n, h.svc.Stats().AuditErrors)
	}
}

// In dev mode ChangePlanHandler's changes are the user's; the dev checkout
// and CancelSubscriptions leave the actor to the context.
func TestAuditDevChanges(t *testing.T) {
	st := sqliteStore(t)
	log := &auditLog{}
	clock := fakeclock.New(time.Now())
	h := newHarness(t, st, nil, billing.Options{DevMode: true, Plans: testCatalog(), Audit: log.hook, Now: clock.Now})
	srv := newSessionServer(t, h)
	ada := mustUser(t, st, "ada@example.org")
	a := signIn(t, srv, ada)
	u := fmt.Sprint(ada)
	devSub := func(line string) string { // dev ids are random
		i := strings.Index(line, "sub_dev_")
		if i < 0 {
			return line
		}
		j := i + strings.IndexAny(line[i:], " ]")
		return line[:i] + "sub_dev_X" + line[j:]
	}
	for _, c := range []struct {
		plan string
		want []string
	}{
		{"hobby", []string{
			"billing.subscription_changed user " + u + "  map[change:created customer:cus_dev_" + u + " plan:hobby price:price_test status:active subscription:sub_dev_X]",
			"billing.plan_changed user " + u + "  map[from:free subscription:sub_dev_X to:hobby]",
		}},
		{"pro", []string{
			"billing.subscription_changed user " + u + "  map[change:updated customer:cus_dev_" + u + " plan:pro price:price_pro status:active subscription:sub_dev_X]",
			"billing.plan_changed user " + u + "  map[from:hobby subscription:sub_dev_X to:pro]",
		}},
		{"pro", nil},
	} {
		if resp := a.post(t, "/billing/plan", url.Values{"plan": {c.plan}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("change to %s = %d", c.plan, resp.StatusCode)
		}
		got := log.take()
		for i := range got {
			got[i] = devSub(got[i])
		}
		checkLines(t, got, c.want)
	}
	ctx := context.WithValue(context.Background(), sourceKey{}, "cli")
	if err := h.svc.CancelSubscriptions(ctx, ada, false); err != nil {
		t.Fatal(err)
	}
	got := log.take()
	for i := range got {
		got[i] = devSub(got[i])
	}
	checkLines(t, got, []string{
		"billing.subscription_changed  " + u + " cli map[change:canceled customer:cus_dev_" + u + " plan:pro previous_status:active price:price_pro status:canceled subscription:sub_dev_X]",
		"billing.plan_changed  " + u + " cli map[from:pro subscription:sub_dev_X to:free]",
	})
}

// With Stripe, ChangePlanHandler reports the request once the user is
// sent to Checkout or the portal; the change itself comes by webhook.
func TestAuditChangePlanStripe(t *testing.T) {
	st := sqliteStore(t)
	log := &auditLog{}
	h := newHarness(t, st, mockClient(t, stripemock.Start(t)), billing.Options{Plans: testCatalog(), Audit: log.hook})
	srv := newSessionServer(t, h)
	ada := mustUser(t, st, "ada@example.org")
	a := signIn(t, srv, ada)
	u := fmt.Sprint(ada)
	if resp := a.post(t, "/billing/plan", url.Values{"plan": {"free"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	checkLines(t, log.take(), nil) // on free already
	if resp := a.post(t, "/billing/plan", url.Values{"plan": {"pro"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	checkLines(t, log.take(), []string{"billing.plan_change_requested user " + u + "  map[plan:pro via:checkout]"})
	if c := h.send(event{"evt_1", "customer.subscription.created", time.Now().Unix(),
		subWithPrice("sub_1", "cus_1", "active", "price_pro", ada, time.Now())}); c != 200 {
		t.Fatal(c)
	}
	if n := len(log.take()); n != 2 {
		t.Errorf("%d events from the webhook, want 2", n)
	}
	if resp := a.post(t, "/billing/plan", url.Values{"plan": {"hobby"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	checkLines(t, log.take(), []string{"billing.plan_change_requested user " + u + "  map[plan:hobby via:portal]"})
}

// A completed dev checkout reports the checkout, the subscription and the
// plan, with no actor: the buyer has proven nothing yet, so the context
// (the application's audit source) says who it was.
func TestAuditDevCheckout(t *testing.T) {
	st := sqliteStore(t)
	log := &auditLog{}
	h := newHarness(t, st, nil, billing.Options{DevMode: true, Plans: testCatalog(), Audit: log.hook})
	w := h.do(form("/signup", url.Values{"email": {"pro@example.org"}, "plan": {"pro"}}))
	loc, _ := url.Parse(w.Header().Get("Location"))
	token := loc.Query().Get("session")
	checkLines(t, log.take(), nil) // nothing happened yet
	if w := devComplete(h, token, ""); w.Code != http.StatusOK {
		t.Fatalf("dev checkout = %d", w.Code)
	}
	uid, _, _ := st.UserByEmail(context.Background(), "pro@example.org")
	u, suffix := fmt.Sprint(uid), strings.TrimPrefix(token, "cs_dev_")
	checkLines(t, log.take(), []string{
		"billing.checkout_completed  " + u + "  map[customer:cus_dev_" + suffix + " plan:pro price:price_pro subscription:sub_dev_" + suffix + "]",
		"billing.subscription_changed  " + u + "  map[change:created customer:cus_dev_" + suffix + " plan:pro price:price_pro status:active subscription:sub_dev_" + suffix + "]",
		"billing.plan_changed  " + u + "  map[from:free subscription:sub_dev_" + suffix + " to:pro]",
	})
}

// The success page records the Checkout's provisional state as Stripe's
// (it read it from Stripe), without the session id, and reports no
// second checkout: the webhook's checkout.session.completed does.
func TestAuditSuccessPage(t *testing.T) {
	st := sqliteStore(t)
	uid := mustUser(t, st, "paid@example.com")
	cs := checkoutObject(uid, "cus_9", "sub_9", "paid@example.com")
	cs["created"] = time.Now().Unix()
	log := &auditLog{}
	h := newHarness(t, st, mockClient(t, fakeStripe(t, cs, 200)), billing.Options{Plans: testCatalog(), Audit: log.hook})
	if w := h.do(httptest.NewRequest(http.MethodGet, "/billing/success?session_id=cs_test_sub_9", nil)); w.Code != http.StatusOK {
		t.Fatalf("success = %d:\n%s", w.Code, w.Body)
	}
	u := fmt.Sprint(uid)
	got := log.take()
	checkLines(t, got, []string{
		"billing.subscription_changed stripe " + u + "  map[change:created customer:cus_9 plan:hobby price:price_test status:active subscription:sub_9]",
		"billing.plan_changed stripe " + u + "  map[from:free subscription:sub_9 to:hobby]",
	})
	if strings.Contains(strings.Join(got, " "), "cs_test") {
		t.Error("an event holds the Checkout session id")
	}
}
