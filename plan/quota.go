package plan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxQuota is the largest Count a [Quota] may have.
const MaxQuota = 1_000_000_000_000

// Period is how often a [Quota] refills.
type Period uint8

const (
	// Day refills at every midnight UTC.
	Day Period = iota + 1
	// Month refills at midnight UTC on the first of every calendar month.
	Month
	// BillingPeriod refills on the subscription's billing cycle anchor
	// every month, as Stripe's monthly billing does: the anchor's day and
	// time of day each month, clamped to the month's last day (an anchor
	// on January 31 gives February 28 or 29, then March 31). Without an
	// anchor (no subscription) it is [Month].
	BillingPeriod
)

// String returns "day", "month" or "period", as in a plan file.
func (p Period) String() string {
	switch p {
	case Day:
		return "day"
	case Month:
		return "month"
	case BillingPeriod:
		return "period"
	}
	return fmt.Sprintf("Period(%d)", uint8(p))
}

// Bounds returns the start of the period that contains t and its end (the
// next refill, and the start of the next period), both in UTC, with
// start <= t < end. anchor is the subscription's billing cycle anchor; only
// BillingPeriod uses it, and the zero anchor makes it Month. Bounds of an
// invalid Period are both t.
func (p Period) Bounds(t, anchor time.Time) (start, end time.Time) {
	t = t.UTC()
	switch p {
	case Day:
		y, m, d := t.Date()
		start = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case BillingPeriod:
		if !anchor.IsZero() {
			return billingBounds(t, anchor.UTC())
		}
		fallthrough
	case Month:
		y, m, _ := t.Date()
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC), time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
	}
	return t, t
}

// billingBounds finds k with anchorMonth(k) <= t < anchorMonth(k+1).
func billingBounds(t, anchor time.Time) (start, end time.Time) {
	k := (t.Year()-anchor.Year())*12 + int(t.Month()) - int(anchor.Month())
	start = anchorMonth(anchor, k)
	if start.After(t) {
		k--
		start = anchorMonth(anchor, k)
	}
	end = anchorMonth(anchor, k+1)
	if !end.After(t) {
		start, end = end, anchorMonth(anchor, k+2)
	}
	return start, end
}

// anchorMonth returns the anchor moved k months, its day clamped to the
// length of the month it lands in.
func anchorMonth(anchor time.Time, k int) time.Time {
	y, m := anchor.Year(), int(anchor.Month())-1+k
	y += m / 12
	if m %= 12; m < 0 {
		m += 12
		y--
	}
	month := time.Month(m + 1)
	day := min(anchor.Day(), daysIn(y, month))
	return time.Date(y, month, day, anchor.Hour(), anchor.Minute(), anchor.Second(), anchor.Nanosecond(), time.UTC)
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// Quota is a number of requests, or of cost units when requests are
// weighted, allowed per [Period]. Unlike a rate limit, a quota does not
// trickle back: it refills all at once at the period's end. The zero Quota
// means no quota.
type Quota struct {
	Count  int64
	Period Period
}

// IsZero reports whether q is the zero Quota: no quota.
func (q Quota) IsZero() bool { return q == Quota{} }

// Validate reports why q is not a usable quota, or nil. The zero Quota is
// not usable (it means "none"; check [Quota.IsZero] first).
func (q Quota) Validate() error {
	if q.Count < 1 || q.Count > MaxQuota {
		return fmt.Errorf("count %d is not between 1 and %d", q.Count, int64(MaxQuota))
	}
	if q.Period < Day || q.Period > BillingPeriod {
		return fmt.Errorf("%v is not Day, Month or BillingPeriod", q.Period)
	}
	return nil
}

// String returns q in the syntax of [ParseQuota]: "100/day",
// "10000/month", "5000/period"; "" for the zero Quota.
func (q Quota) String() string {
	if q.IsZero() {
		return ""
	}
	return strconv.FormatInt(q.Count, 10) + "/" + q.Period.String()
}

// errQuotaSyntax is wrapped by ParseQuota's errors.
var errQuotaSyntax = errors.New(`want N/day, N/month or N/period, such as "100/day"`)

// ParseQuota parses a quota written as COUNT "/" PERIOD, where COUNT is a
// decimal integer from 1 to [MaxQuota] and PERIOD is "day", "month" or
// "period" (the billing period): "100/day", "10000/month". Spaces around
// the parts are allowed. [Quota.String] turns the result back into the
// same Quota.
func ParseQuota(s string) (Quota, error) {
	fail := func(why string) (Quota, error) {
		return Quota{}, fmt.Errorf("%q: %s; %w", s, why, errQuotaSyntax)
	}
	count, period, ok := strings.Cut(s, "/")
	if !ok {
		return fail(`no "/" between the count and the period`)
	}
	count = strings.TrimSpace(count)
	if count == "" || strings.Trim(count, "0123456789") != "" {
		return fail("the count " + strconv.Quote(count) + " is not a whole number")
	}
	n, err := strconv.ParseInt(count, 10, 64)
	if err != nil || n < 1 || n > MaxQuota {
		return fail("the count " + count + " is not between 1 and " + strconv.FormatInt(MaxQuota, 10))
	}
	q := Quota{Count: n}
	switch strings.TrimSpace(period) {
	case "day":
		q.Period = Day
	case "month":
		q.Period = Month
	case "period":
		q.Period = BillingPeriod
	default:
		return fail("unknown period " + strconv.Quote(strings.TrimSpace(period)))
	}
	return q, nil
}

// MarshalText implements [encoding.TextMarshaler] with [Quota.String].
func (q Quota) MarshalText() ([]byte, error) {
	if q.IsZero() {
		return nil, nil
	}
	if err := q.Validate(); err != nil {
		return nil, err
	}
	return []byte(q.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseQuota];
// empty text is the zero Quota.
func (q *Quota) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*q = Quota{}
		return nil
	}
	v, err := ParseQuota(string(text))
	if err != nil {
		return err
	}
	*q = v
	return nil
}
