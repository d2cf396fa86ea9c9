package app_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/usage"
)

// usageFlush is the usage meter's flush interval in these tests: a call
// shows in GET /v1/usage within it.
const usageFlush = 100 * time.Millisecond

// fastUsage makes the server write its usage counts every usageFlush.
func fastUsage(o *app.Options) { o.UsageFlushInterval = usageFlush }

// waitUsage polls GET /v1/usage (with query) with the token until ok
// accepts the answer, for at most a few flush intervals.
func waitUsage(t *testing.T, s *testServer, token, query string, ok func(usage.Response) bool) usage.Response {
	t.Helper()
	deadline := time.Now().Add(20 * usageFlush)
	var resp usage.Response
	for {
		r := call(t, s.URL, token, "GET", "/v1/usage"+query, "")
		if r.status != 200 {
			t.Fatalf("GET /v1/usage%s = %d %s", query, r.status, r.body)
		}
		r.json(t, &resp)
		if ok(resp) {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/usage%s did not show the calls within %v: %s", query, 20*usageFlush, r.body)
		}
		time.Sleep(usageFlush / 4)
	}
}

func keyUsage(r usage.Response, id string) (usage.KeyUsage, bool) {
	for _, k := range r.Keys {
		if k.KeyID == id {
			return k, true
		}
	}
	return usage.KeyUsage{}, false
}

// keyID returns the id part of a token: fav_test_<id>_<secret>.
func keyID(token string) string { return strings.Split(token, "_")[2] }

// TestUsageEndToEnd: calls through the API, by outcome and cost, show up
// in GET /v1/usage within the flush interval, per key and in total, with
// the plan and its quota; only the caller's own keys; and on the
// dashboard's charts.
func TestUsageEndToEnd(t *testing.T) {
	for _, b := range []backend{sqliteDB, postgresDB} {
		t.Run(string(b), func(t *testing.T) { testUsageEndToEnd(t, b) })
	}
}

func testUsageEndToEnd(t *testing.T, db backend) {
	s := startServer(t, db, app.Config{RateLimit: ratelimit.MustParseLimit("1000/s")}, fastUsage)
	c := newCustomer(t, s, "usage@example.com")
	second := createKey(t, s, c.web, "second key")
	k1, k2 := keyID(c.token), keyID(second)

	for range 3 {
		if r := c.call(t, "GET", "/v1/favorites", ""); r.status != 200 {
			t.Fatalf("GET /v1/favorites: %d", r.status)
		}
	}
	if r := c.call(t, "POST", "/v1/favorites", `{"name":"Example","url":"https://example.com/"}`); r.status != 201 {
		t.Fatalf("POST /v1/favorites: %d %s", r.status, r.body)
	}
	if r := call(t, s.URL, second, "GET", "/v1/favorites/0123456789abcdef", ""); r.status != 404 {
		t.Fatalf("GET a missing favorite: %d", r.status)
	}

	// The first key's own usage calls count too (1 each): wait for the
	// second key's 404 and the first key's 4 calls.
	resp := waitUsage(t, s, c.token, "", func(r usage.Response) bool {
		a, _ := keyUsage(r, k1)
		b, _ := keyUsage(r, k2)
		return a.Totals.OK >= 4 && b.Totals.Requests == 1
	})
	b, _ := keyUsage(resp, k2)
	if b.Totals.ClientError != 1 || b.Totals.Cost != 1 || len(b.Series) != 1 {
		t.Errorf("second key's usage %+v, want one 4xx costing 1", b)
	}
	a, _ := keyUsage(resp, k1)
	// 3 reads, a write (5) and the usage calls before this answer (1 each).
	if want := int64(3 + 5 + (a.Totals.OK - 4)); a.Totals.Cost != want || a.Totals.ClientError != 0 {
		t.Errorf("first key's usage %+v, want cost %d", a.Totals, want)
	}
	if resp.Totals.Requests != a.Totals.Requests+b.Totals.Requests || resp.Totals.Cost != a.Totals.Cost+b.Totals.Cost {
		t.Errorf("totals %+v are not the sum of the keys'", resp.Totals)
	}
	if resp.Plan != "hobby" || resp.Quota == nil || resp.Quota.Limit != 10_000 || resp.Quota.Used < resp.Totals.Cost ||
		resp.Granularity != "day" || !resp.Period.End.After(resp.Period.Start) {
		t.Errorf("plan %q quota %+v granularity %q period %+v, want hobby's 10,000 a month by the day", resp.Plan, resp.Quota, resp.Granularity, resp.Period)
	}

	// By the hour, one key.
	hour := waitUsage(t, s, c.token, "?granularity=hour&key_id="+k2+"&from="+time.Now().UTC().Format(time.DateOnly), func(r usage.Response) bool { return len(r.Keys) == 1 })
	if hour.Keys[0].KeyID != k2 || hour.Granularity != "hour" || hour.Keys[0].Series[0].Start.Minute() != 0 {
		t.Errorf("one key by the hour: %+v", hour)
	}
	// Another account sees none of these keys, even by id.
	other := newCustomer(t, s, "other-usage@example.com")
	if r := other.call(t, "GET", "/v1/usage?key_id="+k1, ""); r.status != 200 || strings.Contains(string(r.body), k1) {
		t.Errorf("another account's GET /v1/usage?key_id=<not theirs> = %d %s", r.status, r.body)
	}
	if r := c.call(t, "GET", "/v1/usage?granularity=minute", ""); r.status != 400 || r.problem(t)["invalid-params"] == nil {
		t.Errorf("granularity=minute: %d %s, want 400 listing the parameter", r.status, r.body)
	}

	// The dashboard charts the same numbers: today's bar, per key and in
	// total, with a title, the quota bar and the table fallback.
	dash := get(t, c.web, s.URL+"/app")
	for _, want := range []string{
		`id="chart-total"`, `<title id="total-title">`, `id="chart-key-` + k1 + `"`, `id="chart-key-` + k2 + `"`,
		`class="quota-bar"`, `class="usage-table"`, `role="img"`,
	} {
		if !strings.Contains(dash.body, want) {
			t.Errorf("the dashboard has no %s", want)
		}
	}
	if n := len(regexp.MustCompile(`<rect class="bar-`).FindAllString(dash.body, -1)); n < 3 {
		t.Errorf("the dashboard's charts have %d bars, want at least 3 (today's, in total and per key)", n)
	}
	if strings.Contains(dash.body, "<script") {
		t.Error("the dashboard has a script")
	}
}

// TestQuotaAlerts: a free-plan user who crosses 80 % and then 100 % of the
// day's 100 requests gets exactly one email for each, sent in the
// background through the service's mailer, whatever they do after.
func TestQuotaAlerts(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{RateLimit: ratelimit.MustParseLimit("1000/s")}, fastUsage)
	if now := time.Now().UTC(); now.Hour() == 23 && now.Minute() == 59 {
		time.Sleep(time.Minute - time.Duration(now.Second())*time.Second)
	}
	const email = "alerts@example.com"
	web := signUpFree(t, s, email)
	token := createKey(t, s, web, "free key")
	subjects := func() (eighty, hundred int) {
		s.Alerts().Drain()
		s.Mail.mu.Lock()
		defer s.Mail.mu.Unlock()
		for _, m := range s.Mail.msgs {
			if !strings.Contains(m.To, email) {
				continue
			}
			switch m.Subject {
			case "You have used 80% of your API quota":
				eighty++
			case "You have used all of your API quota":
				hundred++
			}
		}
		return
	}
	for i := range 79 {
		if r := call(t, s.URL, token, "GET", "/v1/favorites", ""); r.status != 200 {
			t.Fatalf("request %d: %d", i+1, r.status)
		}
	}
	if e, h := subjects(); e != 0 || h != 0 {
		t.Fatalf("after 79 of 100: %d 80%% and %d 100%% alerts, want none", e, h)
	}
	for i := 79; i < 99; i++ {
		call(t, s.URL, token, "GET", "/v1/favorites", "")
	}
	if e, h := subjects(); e != 1 || h != 0 {
		t.Fatalf("after 99 of 100: %d 80%% and %d 100%% alerts, want 1 and 0", e, h)
	}
	call(t, s.URL, token, "GET", "/v1/favorites", "")
	for range 5 { // refused: 429
		if r := call(t, s.URL, token, "GET", "/v1/favorites", ""); r.status != 429 {
			t.Fatalf("past the quota: %d", r.status)
		}
	}
	if e, h := subjects(); e != 1 || h != 1 {
		t.Fatalf("after the quota: %d 80%% and %d 100%% alerts, want exactly 1 and 1", e, h)
	}
	text := s.Mail.waitMail(t, email, s.Mail.count(email))
	if !strings.Contains(text, "100 of the 100 units") || !strings.Contains(text, s.URL+"/app") {
		t.Errorf("the 100%% alert says:\n%s", text)
	}
	// The 429s are counted as rate limited, at no cost.
	ctx := context.Background()
	if err := s.Metering().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	uid, _, _ := s.Store().UserByEmail(ctx, email)
	today := usage.Day.Truncate(time.Now())
	counts, err := s.Store().Counts(ctx, usage.Query{UserID: strconv.FormatInt(uid, 10), From: today, To: today.AddDate(0, 0, 1), Granularity: usage.Day})
	if err != nil || len(counts) != 1 {
		t.Fatalf("counts %+v, %v", counts, err)
	}
	if c := counts[0].Counts; c.OK != 100 || c.Limited != 5 || c.Cost != 100 {
		t.Errorf("counted %+v, want 100 ok and 5 rate limited costing 100", c)
	}
}
