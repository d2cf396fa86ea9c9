package usage

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/apikit/apikit/problem"
)

// Quota is a user's plan and quota in its current period, as
// [HandlerOptions].Quota reports it for GET /v1/usage.
type Quota struct {
	// Plan is the plan's name; empty if the user has none.
	Plan string
	// PeriodStart and PeriodEnd bound the current period: the quota's,
	// or the billing period. Zero times mean the current calendar month.
	PeriodStart, PeriodEnd time.Time
	// Limit is the quota (requests or cost units per period); 0 means
	// none (an unlimited plan).
	Limit int64
	// Used is what the user used of it this period.
	Used int64
}

// HandlerOptions configures [NewHandler]. User is required.
type HandlerOptions struct {
	// User returns the user whose usage the request reads: the owner of
	// the API key it was made with. ok false answers 401 (the handler is
	// meant to sit behind authentication, which answers first).
	User func(r *http.Request) (userID string, ok bool)
	// Quota, if set, reports the user's plan and quota (typically from
	// package plan's decision for the request). Its error answers 503.
	Quota func(r *http.Request, userID string) (Quota, error)
	// Limits bound the range a query may ask for.
	Limits QueryLimits
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives store failures; nil means none.
	Logger *slog.Logger
}

// Response is the JSON body of GET /v1/usage.
type Response struct {
	Period      Period      `json:"period"`
	Plan        string      `json:"plan,omitempty"`
	Quota       *QuotaUsage `json:"quota"`
	From        time.Time   `json:"from"`
	To          time.Time   `json:"to"`
	Granularity string      `json:"granularity"`
	Totals      Totals      `json:"totals"`
	Keys        []KeyUsage  `json:"keys"`
}

// Period is the user's current period.
type Period struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// QuotaUsage is the quota of the current period; null without one.
type QuotaUsage struct {
	Limit     int64 `json:"limit"`
	Used      int64 `json:"used"`
	Remaining int64 `json:"remaining"`
}

// Totals are counts over a range, with the number of requests.
type Totals struct {
	Requests int64 `json:"requests"`
	Counts
}

// KeyUsage is one key's usage over the range: its totals and its points,
// one per hour or day with usage (points without usage are left out).
type KeyUsage struct {
	KeyID  string  `json:"key_id"`
	Totals Totals  `json:"totals"`
	Series []Point `json:"series"`
}

// Point is the usage of one hour or day.
type Point struct {
	Start    time.Time `json:"start"`
	Requests int64     `json:"requests"`
	Counts
}

// NewHandler returns the handler of GET /v1/usage: the usage of the
// caller's own user, read from s, as a [Response]. The query is parsed by
// [ParseQuery]; by default the range is the current period (from
// opts.Quota, else the calendar month) by the day. A key_id of a key the
// user does not have — another user's, or none at all — answers 200 with
// no keys, exactly as a key without usage does, so that the answer tells
// nothing about other users' keys. Invalid parameters answer 400 with an
// RFC 9457 problem listing them ("invalid-params"); a store failure 503.
// Methods other than GET and HEAD answer 405.
//
// Counts show up within the [Meter]'s FlushInterval. NewHandler panics,
// with a message starting "usage: ", if s or opts.User is nil.
func NewHandler(s Store, opts HandlerOptions) http.Handler {
	if s == nil || opts.User == nil {
		panic("usage: NewHandler needs a Store and HandlerOptions.User")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &handler{s: s, o: opts}
}

type handler struct {
	s Store
	o HandlerOptions
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.Write(w, problem.New(http.StatusMethodNotAllowed, "method_not_allowed", "Use GET."))
		return
	}
	user, ok := h.o.User(r)
	if !ok {
		problem.Write(w, problem.New(http.StatusUnauthorized, "unauthenticated", "An API key is required."))
		return
	}
	var quota Quota
	if h.o.Quota != nil {
		var err error
		if quota, err = h.o.Quota(r, user); err != nil {
			h.unavailable(w, r, err)
			return
		}
	}
	resp, err := Report(r.Context(), h.s, user, r.URL.Query(), quota, ReportOptions{Limits: h.o.Limits, Now: h.o.Now()})
	if err != nil {
		var qe queryErrors
		if !errors.As(err, &qe) {
			h.unavailable(w, r, err)
			return
		}
		p := problem.New(http.StatusBadRequest, "invalid_query", "The query parameters are invalid.")
		for _, e := range qe {
			p.InvalidParams = append(p.InvalidParams, problem.InvalidParam{Name: e.Name, Reason: e.Reason})
		}
		problem.Write(w, p)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "private, no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

// ReportOptions configures [Report]. The zero value gives the defaults.
type ReportOptions struct {
	// Limits bound the range a query may ask for.
	Limits QueryLimits
	// Now is the time of the report, which places the default period;
	// zero means time.Now().
	Now time.Time
}

// Report returns userID's usage as GET /v1/usage answers it (see
// [NewHandler]), for handlers and operator tools alike: params are the
// query's parameters, parsed by [ParseQuery] within opts.Limits, with the
// range defaulting to quota's period — the calendar month (UTC) of
// opts.Now if quota has none — by the day; the counts are read from s.
// quota is the user's plan and quota as the application knows them (the
// zero Quota: no plan, no quota). An error of an invalid parameter wraps
// [ErrInvalidQuery] (and every [*ParamError]); any other is the store's.
func Report(ctx context.Context, s Store, userID string, params url.Values, quota Quota, opts ReportOptions) (Response, error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	if quota.PeriodStart.IsZero() || !quota.PeriodEnd.After(quota.PeriodStart) {
		y, m, _ := now.Date()
		quota.PeriodStart = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
		quota.PeriodEnd = quota.PeriodStart.AddDate(0, 1, 0)
	}
	q, err := ParseQuery(params, userID, quota.PeriodStart, quota.PeriodEnd, opts.Limits)
	if err != nil {
		return Response{}, err
	}
	counts, err := s.Counts(ctx, q)
	if err != nil {
		return Response{}, err
	}
	resp := Response{
		Period:      Period{Start: quota.PeriodStart.UTC(), End: quota.PeriodEnd.UTC()},
		Plan:        quota.Plan,
		From:        q.From,
		To:          q.To,
		Granularity: q.Granularity.String(),
		Keys:        Series(counts),
	}
	if quota.Limit > 0 {
		resp.Quota = &QuotaUsage{Limit: quota.Limit, Used: quota.Used, Remaining: max(quota.Limit-quota.Used, 0)}
	}
	for _, k := range resp.Keys {
		resp.Totals.Counts.Add(k.Totals.Counts)
	}
	resp.Totals.Requests = resp.Totals.Counts.Requests()
	return resp, nil
}

func (h *handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if h.o.Logger != nil {
		h.o.Logger.LogAttrs(r.Context(), slog.LevelWarn, "usage: reading usage failed", slog.String("error", err.Error()))
	}
	problem.Write(w, problem.New(http.StatusServiceUnavailable, "usage_unavailable", "Usage cannot be read right now; try again shortly."))
}

// Series groups counts by key, as GET /v1/usage shows them: keys in
// order of their ids, each with its totals and its points in time order
// (points of one key and start are added up).
func Series(counts []Count) []KeyUsage {
	counts = slices.Clone(counts)
	slices.SortStableFunc(counts, func(a, b Count) int {
		if c := strings.Compare(a.KeyID, b.KeyID); c != 0 {
			return c
		}
		return a.Start.Compare(b.Start)
	})
	byKey := map[string]*KeyUsage{}
	keys := []KeyUsage{}
	var order []string
	for _, c := range counts {
		k := byKey[c.KeyID]
		if k == nil {
			k = &KeyUsage{KeyID: c.KeyID, Series: []Point{}}
			byKey[c.KeyID] = k
			order = append(order, c.KeyID)
		}
		k.Totals.Counts.Add(c.Counts)
		if n := len(k.Series); n > 0 && k.Series[n-1].Start.Equal(c.Start) { // two rows of one point
			k.Series[n-1].Counts.Add(c.Counts)
			k.Series[n-1].Requests = k.Series[n-1].Counts.Requests()
			continue
		}
		k.Series = append(k.Series, Point{Start: c.Start.UTC(), Requests: c.Requests(), Counts: c.Counts})
	}
	for _, id := range order {
		k := byKey[id]
		k.Totals.Requests = k.Totals.Counts.Requests()
		keys = append(keys, *k)
	}
	return keys
}
