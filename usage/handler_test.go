package usage_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/usage"
)

func newHandler(s usage.Store) http.Handler {
	return usage.NewHandler(s, usage.HandlerOptions{
		User: func(r *http.Request) (string, bool) { u := r.Header.Get("X-User"); return u, u != "" },
		Quota: func(r *http.Request, user string) (usage.Quota, error) {
			return usage.Quota{Plan: "hobby", PeriodStart: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
				PeriodEnd: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), Limit: 10_000, Used: 1234}, nil
		},
		Now: func() time.Time { return t0 },
	})
}

func get(h http.Handler, user, query string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/v1/usage?"+query, nil)
	if user != "" {
		r.Header.Set("X-User", user)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHandler(t *testing.T) {
	s := newMemStore()
	m := newMeter(t, s, usage.Options{})
	m.Record(t0, "1", "k1", usage.OK, 5)
	m.Record(t0, "1", "k1", usage.Limited, 0)
	m.Record(t0.Add(-24*time.Hour), "1", "k2", usage.OK, 1)
	m.Record(t0, "2", "theirs", usage.OK, 1)
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := newHandler(s)

	w := get(h, "1", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/usage = %d %s", w.Code, w.Body)
	}
	var resp usage.Response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Plan != "hobby" || resp.Quota == nil || resp.Quota.Remaining != 10_000-1234 || resp.Granularity != "day" ||
		!resp.From.Equal(resp.Period.Start) || !resp.To.Equal(resp.Period.End) {
		t.Errorf("response header fields: %+v", resp)
	}
	if resp.Totals.Requests != 3 || resp.Totals.Cost != 6 || resp.Totals.Limited != 1 {
		t.Errorf("totals = %+v; want 3 requests costing 6", resp.Totals)
	}
	if len(resp.Keys) != 2 || resp.Keys[0].KeyID != "k1" || resp.Keys[1].KeyID != "k2" || len(resp.Keys[0].Series) != 1 {
		t.Errorf("keys = %+v", resp.Keys)
	}
	for _, want := range []string{`"period":{"start":"2026-03-01T00:00:00Z"`, `"quota":{"limit":10000,"used":1234,"remaining":8766}`, `"totals":{"requests":3,"ok":2,"client_error":0,"rate_limited":1,"server_error":0,"cost":6}`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("body lacks %s:\n%s", want, w.Body)
		}
	}

	// Another user's key answers like a missing one: no keys.
	other := get(h, "1", "key_id=theirs").Body.String()
	missing := get(h, "1", "key_id=nokey").Body.String()
	if other != missing || !strings.Contains(other, `"keys":[]`) {
		t.Errorf("another user's key:\n%s\na missing key:\n%s", other, missing)
	}
	hourly := get(h, "1", "granularity=hour&from=2026-03-10&to=2026-03-11&key_id=k1")
	if !strings.Contains(hourly.Body.String(), `"start":"2026-03-10T10:00:00Z"`) {
		t.Errorf("hourly: %s", hourly.Body)
	}
}

func TestHandlerRefuses(t *testing.T) {
	h := newHandler(newMemStore())
	for _, c := range []struct {
		query, param string
	}{
		{"granularity=minute", "granularity"},
		{"from=yesterday", "from"},
		{"from=2026-03-10&to=2026-03-01", "to"},
		{"from=2020-01-01&to=2026-01-01", "to"},
		{"granularity=hour&from=2026-01-01&to=2026-12-01", "granularity"},
		{"key_id=a%20b", "key_id"},
		{"key_id=a&key_id=b", "key_id"},
		{"limit=3", "limit"},
	} {
		w := get(h, "1", c.query)
		if w.Code != 400 || w.Header().Get("Content-Type") != "application/problem+json" || !strings.Contains(w.Body.String(), `"name":"`+c.param+`"`) {
			t.Errorf("?%s = %d %s; want 400 naming %s", c.query, w.Code, w.Body, c.param)
		}
	}
	if w := get(h, "", ""); w.Code != 401 {
		t.Errorf("without a user: %d", w.Code)
	}
	r := httptest.NewRequest("POST", "/v1/usage", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 405 {
		t.Errorf("POST = %d", w.Code)
	}
	down := newMemStore()
	down.setFail(errDown, false)
	if w := get(newHandler(down), "1", ""); w.Code != 503 || strings.Contains(w.Body.String(), "store down") {
		t.Errorf("store down: %d %s", w.Code, w.Body)
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "from=2026-03-01&to=2026-04-01", "granularity=hour&from=2026-03-01T10:00:00Z&to=2026-03-02T00:00:00%2B02:00",
		"key_id=4tQ2x9LmZpB7", "from=9999-12-31", "to=2000-01-01", "granularity=day&granularity=hour", "%zz", "a=b"} {
		f.Add(s)
	}
	def0, def1 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := usage.ParseQuery(v, "1", def0, def1, usage.QueryLimits{})
		if err != nil {
			return
		}
		if !q.To.After(q.From) || q.To.Sub(q.From) > usage.DefaultMaxRange ||
			q.To.Sub(q.From)/q.Granularity.Duration() > usage.DefaultMaxPoints ||
			!q.From.Equal(q.Granularity.Truncate(q.From)) || !q.To.Equal(q.Granularity.Truncate(q.To)) || q.UserID != "1" {
			t.Errorf("ParseQuery(%q) = %+v: outside its contract", raw, q)
		}
	})
}

func TestReportErrors(t *testing.T) {
	ctx := context.Background()
	s := newMemStore()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	_, err := usage.Report(ctx, s, "42", url.Values{"from": {"yesterday"}}, usage.Quota{}, usage.ReportOptions{Now: now})
	var pe *usage.ParamError
	if !errors.Is(err, usage.ErrInvalidQuery) || !errors.As(err, &pe) || pe.Name != "from" {
		t.Errorf("bad from: %v; want ErrInvalidQuery naming from", err)
	}
	down := errors.New("store down")
	s.fail = down
	_, err = usage.Report(ctx, s, "42", nil, usage.Quota{}, usage.ReportOptions{Now: now})
	if !errors.Is(err, down) || errors.Is(err, usage.ErrInvalidQuery) {
		t.Errorf("store down: %v; want the store's error", err)
	}
	// The default range is the quota's period, else the calendar month.
	s.fail = nil
	resp, err := usage.Report(ctx, s, "42", nil, usage.Quota{}, usage.ReportOptions{Now: now})
	if err != nil || !resp.From.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) || !resp.To.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) || resp.Quota != nil {
		t.Errorf("default range: %+v, %v", resp, err)
	}
	start := time.Date(2026, 2, 15, 0, 0, 0, 0, time.UTC)
	resp, err = usage.Report(ctx, s, "42", nil, usage.Quota{PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0), Limit: 10, Used: 12}, usage.ReportOptions{Now: now})
	if err != nil || !resp.From.Equal(start) || resp.Quota == nil || resp.Quota.Remaining != 0 {
		t.Errorf("quota's period: %+v, %v", resp, err)
	}
}
