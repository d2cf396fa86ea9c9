package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// quotaLeft returns the remaining units of the quota policy in a
// response's RateLimit header ("10000/month";r=9994;t=…), or -1.
func quotaLeft(t testing.TB, r apiResponse, name string) int64 {
	t.Helper()
	for _, v := range items(r.header, "RateLimit") {
		rest, ok := strings.CutPrefix(v, strconv.Quote(name)+";r=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ';')], 10, 64)
		if err != nil {
			t.Fatalf("RateLimit %q: %v", v, err)
		}
		return n
	}
	return -1
}

// TestSharedBudgetAndCost: two keys of one hobby user spend one budget,
// and saving a favorite costs 5 of it while a read costs 1, as the
// RateLimit headers show.
func TestSharedBudgetAndCost(t *testing.T) {
	// A first limit of 12 an hour (RATE_LIMIT), so that the run cannot
	// refill it.
	s := startServer(t, sqliteDB, app.Config{RateLimit: ratelimit.MustParseLimit("12/h")})
	c := newCustomer(t, s, "pair@example.com")
	second := createKey(t, s, c.web, "second")

	r := c.call(t, "GET", "/v1/favorites", "")
	if r.status != 200 || quotaLeft(t, r, "12/h") != 11 || quotaLeft(t, r, "10000/month") != 9999 {
		t.Fatalf("first read: %d %q", r.status, items(r.header, "RateLimit"))
	}
	// The second key sees the first key's spending: one budget, the user's.
	r = call(t, s.URL, second, "POST", "/v1/favorites", `{"name":"Go","url":"https://go.dev/"}`)
	if r.status != 201 || quotaLeft(t, r, "12/h") != 6 || quotaLeft(t, r, "10000/month") != 9994 {
		t.Fatalf("a POST with the second key: %d %q; want 5 spent from the user's 11 and 9999", r.status, items(r.header, "RateLimit"))
	}
	if got := r.header.Get("X-RateLimit-Remaining"); got != "6" {
		t.Errorf("X-RateLimit-Remaining %q, want 6 (the policy closest to exhaustion)", got)
	}
	// 6 left: a read with each key, then a POST of 5 is too much for 4.
	for _, tok := range []string{c.token, second} {
		if r := call(t, s.URL, tok, "GET", "/v1/me", ""); r.status != 200 {
			t.Fatalf("read: %d", r.status)
		}
	}
	r = c.call(t, "POST", "/v1/favorites", `{"name":"Go spec","url":"https://go.dev/ref/spec"}`)
	if r.status != 429 || quotaLeft(t, r, "12/h") != 4 {
		t.Fatalf("a POST costing 5 with 4 left: %d %q, want 429 spending nothing", r.status, items(r.header, "RateLimit"))
	}
	if p := r.problem(t); p["code"] != "rate_limited" || p["plan"] != "hobby" {
		t.Errorf("problem %v", p)
	}
	// Reads still fit, 4 of them, from either key; then both are refused.
	for i := range 4 {
		if r := call(t, s.URL, []string{c.token, second}[i%2], "GET", "/v1/favorites", ""); r.status != 200 {
			t.Fatalf("read %d of the last 4: %d", i+1, r.status)
		}
	}
	for _, tok := range []string{c.token, second} {
		if r := call(t, s.URL, tok, "GET", "/v1/favorites", ""); r.status != 429 {
			t.Errorf("a read with the budget spent: %d, want 429", r.status)
		}
	}
	// Another user's budget is untouched.
	if r := newCustomer(t, s, "other@example.com").call(t, "GET", "/v1/me", ""); r.status != 200 {
		t.Errorf("another user: %d", r.status)
	}
}

// signUpFree signs up on the landing page with the free plan: no
// Checkout, just the emailed link, which creates the account and signs the
// browser in. It returns the signed-in browser.
func signUpFree(t testing.TB, s *testServer, email string) *http.Client {
	t.Helper()
	c := browser(t)
	p := submit(t, c, get(t, c, s.URL+"/"), "/signup", url.Values{"email": {email}, "plan": {"free"}})
	if p.status != http.StatusOK || !strings.Contains(p.body, "We sent a sign-in link to") {
		t.Fatalf("free sign-up = %d to %q, want 200 and the page that says a link was sent:\n%s", p.status, p.location, p.body)
	}
	if _, found, err := s.Store().UserByEmail(context.Background(), email); err != nil || found {
		t.Fatalf("free sign-up created the account before the link was used (%v)", err)
	}
	followLink(t, c, s.Mail.waitLink(t, email, 1))
	return c
}

// TestFreeQuota walks the free plan end to end: sign up without Checkout
// (email, link, dashboard on the free plan), make the day's 100 requests,
// get a 429 quota-exceeded problem naming the plan with Retry-After at
// midnight UTC, upgrade on the dashboard (dev mode switches at once) and
// be served on the very next request.
func TestFreeQuota(t *testing.T) {
	// The free plan's 1/s would make this test take 100 s: RATE_LIMIT
	// replaces it, and leaves the quota.
	s := startServer(t, sqliteDB, app.Config{RateLimit: ratelimit.MustParseLimit("1000/s")})
	// The day's quota refills at midnight UTC: not in the middle of this.
	if now := time.Now().UTC(); now.Hour() == 23 && now.Minute() == 59 {
		time.Sleep(time.Minute - time.Duration(now.Second())*time.Second)
	}
	web := signUpFree(t, s, "free@example.com")
	dash := get(t, web, s.URL+"/app")
	if !strings.Contains(dash.body, `id="plan-name">free<`) || !strings.Contains(dash.body, `id="plan-status">none<`) {
		t.Fatalf("the dashboard after a free sign-up does not show the free plan:\n%s", dash.body)
	}
	token := createKey(t, s, web, "free key")
	for i := range 100 {
		r := call(t, s.URL, token, "GET", "/v1/favorites", "")
		if r.status != 200 || quotaLeft(t, r, "100/day") != int64(99-i) {
			t.Fatalf("request %d: %d %q", i+1, r.status, items(r.header, "RateLimit"))
		}
	}
	r := call(t, s.URL, token, "GET", "/v1/me", "")
	now := time.Now().UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	if r.status != 429 {
		t.Fatalf("the 101st request of the day: %d %s, want 429", r.status, r.body)
	}
	p := r.problem(t)
	if p["type"] != plan.QuotaExceededType || p["code"] != "quota_exceeded" || p["plan"] != "free" {
		t.Errorf("problem %v, want quota-exceeded on plan free", p)
	}
	ra, err := strconv.ParseInt(r.header.Get("Retry-After"), 10, 64)
	if want := int64(midnight.Sub(now).Seconds()); err != nil || ra < want-2 || ra > want+2 {
		t.Errorf("Retry-After %q, want about %d s (midnight UTC)", r.header.Get("Retry-After"), want)
	}
	if got := items(r.header, "RateLimit-Policy"); len(got) != 2 || got[1] != `"100/day";q=100;w=86400` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	// The problem type, relative to the API, is a page that explains it.
	if doc := get(t, browser(t), resolve(t, s.URL+"/v1/me", p["type"].(string))); doc.status != 200 || !strings.Contains(doc.body, "Quota exceeded") ||
		!strings.Contains(doc.body, "<td>100 requests a day</td>") {
		t.Errorf("GET %s = %d:\n%s", p["type"], doc.status, doc.body)
	}
	if d := get(t, web, s.URL+"/app"); !strings.Contains(d.body, `id="quota-used">100<`) || !strings.Contains(d.body, `id="quota-remaining">0<`) {
		t.Errorf("the dashboard does not show the spent quota:\n%s", d.body)
	}

	// Upgrade on the dashboard: dev mode switches at once, and the next
	// request is decided under hobby.
	up := submit(t, web, get(t, web, s.URL+"/app"), "/billing/plan", url.Values{"plan": {"hobby"}})
	if up.status != http.StatusSeeOther || up.location != "/app" {
		t.Fatalf("switching to hobby = %d to %q:\n%s", up.status, up.location, up.body)
	}
	r = call(t, s.URL, token, "GET", "/v1/me", "")
	var me meBody
	if r.status != 200 {
		t.Fatalf("the first request after upgrading: %d %s", r.status, r.body)
	}
	if r.json(t, &me); me.Plan.Name != "hobby" || me.Plan.Status != "active" || me.Plan.Quota == nil || me.Plan.Quota.Name != "10000/month" {
		t.Errorf("after upgrading, /v1/me plan %+v", me.Plan)
	}
	if d := get(t, web, s.URL+"/app"); !strings.Contains(d.body, `id="plan-name">hobby<`) {
		t.Errorf("the dashboard after upgrading:\n%s", d.body)
	}
	// And back down: the free plan's quota is still spent today.
	down := submit(t, web, get(t, web, s.URL+"/app"), "/billing/plan", url.Values{"plan": {"free"}})
	if down.status != http.StatusSeeOther {
		t.Fatalf("switching to free = %d:\n%s", down.status, down.body)
	}
	if r := call(t, s.URL, token, "GET", "/v1/me", ""); r.status != 429 || r.problem(t)["plan"] != "free" {
		t.Errorf("after downgrading with the day's free quota spent: %d %s, want 429 on free", r.status, r.body)
	}
}

// TestNoFreePlan: with plans that declare no free plan, a key whose user
// has no subscription is refused with 403, as before plans.
func TestNoFreePlan(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{Plans: plan.MustCatalog(
		plan.Plan{Name: "only", Prices: []string{"price_dev_hobby"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(10)}},
	)})
	r := call(t, s.URL, supportKey(t, s, "nosub@example.com"), "GET", "/v1/me", "")
	if r.status != 403 {
		t.Fatalf("unsubscribed key without a free plan: %d %s, want 403", r.status, r.body)
	}
	detail, _ := r.problem(t)["detail"].(string)
	if !strings.HasSuffix(detail, "/app.") || strings.HasSuffix(detail, "..") {
		t.Errorf("403 detail %q; want one sentence ending in one period", detail)
	}
	// A subscriber is on the plan.
	web := signUpPlan(t, s, "sub@example.com", "only")
	var me meBody
	if r := call(t, s.URL, createKey(t, s, web, "k"), "GET", "/v1/me", ""); r.status != 200 {
		t.Fatalf("subscriber: %d %s", r.status, r.body)
	} else if r.json(t, &me); me.Plan.Name != "only" || me.Plan.Quota != nil {
		t.Errorf("subscriber's plan %+v", me.Plan)
	}
}

// TestDashboardPlan: the dashboard shows the plan, its limits and the
// quota used this period, without spending any of it, and offers the
// other plans.
func TestDashboardPlan(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	c := newCustomer(t, s, "dash@example.com")
	c.call(t, "POST", "/v1/favorites", `{"name":"Go","url":"https://go.dev/"}`)
	c.call(t, "GET", "/v1/favorites", "")
	for range 2 { // looking twice spends nothing
		p := get(t, c.web, s.URL+"/app")
		for _, want := range []string{
			`id="plan-name">hobby<`, `10/s, 10,000 requests a month`, `id="quota-used">6<`, `id="quota-remaining">9,994<`,
			`All your keys share one budget`, `action="/billing/plan"`, `value="free"`, `value="pro"`,
		} {
			if !strings.Contains(p.body, want) {
				t.Errorf("the dashboard does not show %s:\n%s", want, p.body)
			}
		}
		if strings.Contains(p.body, `id="switch-hobby"`) {
			t.Error("the dashboard offers to switch to the current plan")
		}
	}
	if r := c.call(t, "GET", "/v1/me", ""); quotaLeft(t, r, "10000/month") != 9993 {
		t.Errorf("after two dashboard views: %q, want 9993 left", items(r.header, "RateLimit"))
	}
	// The landing page offers every plan.
	landing := get(t, browser(t), s.URL+"/").body
	for _, name := range []string{"free", "hobby", "pro"} {
		if !strings.Contains(landing, fmt.Sprintf(`name="plan" id="plan-%s" value="%s"`, name, name)) {
			t.Errorf("the landing page does not offer %s", name)
		}
	}
}

// TestQuotaSurvivesRestart: quota usage is written to the database (in
// batches, and all of it on Close), so a restarted server does not hand
// out a fresh quota mid-period.
func TestQuotaSurvivesRestart(t *testing.T) {
	for _, b := range []backend{sqliteDB, postgresDB} {
		t.Run(string(b), func(t *testing.T) { testQuotaSurvivesRestart(t, b) })
	}
}

func testQuotaSurvivesRestart(t *testing.T, b backend) {
	if now := time.Now().UTC(); now.Hour() == 23 && now.Minute() == 59 {
		time.Sleep(time.Minute - time.Duration(now.Second())*time.Second)
	}
	cfg := app.Config{DatabaseURL: databaseURL(t, b), RateLimit: ratelimit.MustParseLimit("1000/s")}
	first := startServer(t, b, cfg)
	ctx := context.Background()
	uid, _, err := first.Store().CreateUser(ctx, "durable@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := first.Keys().Issue(ctx, uid, apikey.IssueOptions{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		call(t, first.URL, tok.Reveal(), "GET", "/v1/favorites", "")
	}
	call(t, first.URL, tok.Reveal(), "POST", "/v1/favorites", `{"name":"Go","url":"https://go.dev/"}`) // 5
	if err := first.Close(ctx); err != nil {                                                           // a graceful shutdown
		t.Fatal(err)
	}
	second := startServer(t, b, cfg)
	r := call(t, second.URL, tok.Reveal(), "GET", "/v1/me", "")
	if r.status != 200 || quotaLeft(t, r, "100/day") != 100-3-5-1 {
		t.Errorf("after a restart: %d %q, want %d of 100/day left", r.status, items(r.header, "RateLimit"), 100-3-5-1)
	}
}

// TestFreePlanWrites uses the free plan as declared (no RATE_LIMIT): its
// 1 a second has room for one write, which costs 5, so a free user can
// save a favorite; the next write at once waits for the limit to refill.
func TestFreePlanWrites(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	web := signUpFree(t, s, "writer@example.com")
	token := createKey(t, s, web, "free key")
	body := `{"name":"Go spec","url":"https://go.dev/ref/spec"}`
	if r := call(t, s.URL, token, "POST", "/v1/favorites", body); r.status != http.StatusCreated {
		t.Fatalf("a free user's first write: %d %s, want 201", r.status, r.body)
	}
	r := call(t, s.URL, token, "POST", "/v1/favorites", body)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Errorf("a second write at once: %d %s, want 429 with Retry-After", r.status, r.body)
	}
}

// items returns the list members of a Structured Field List header (such
// as RateLimit or RateLimit-Policy), across its field lines.
func items(h http.Header, name string) []string {
	var out []string
	for _, line := range h.Values(name) {
		for _, it := range strings.Split(line, ",") {
			if it = strings.TrimSpace(it); it != "" {
				out = append(out, it)
			}
		}
	}
	return out
}
