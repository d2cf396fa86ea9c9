package plan_test

import (
	"testing"
	"time"

	"github.com/apikit/apikit/plan"
)

func date(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, time.UTC)
}

func TestBounds(t *testing.T) {
	jan31 := date(2024, time.January, 31, 12, 0) // anchor at a month end, in a leap year
	tests := []struct {
		name       string
		p          plan.Period
		t, anchor  time.Time
		start, end time.Time
	}{
		{"DayMidday", plan.Day, date(2025, 3, 9, 15, 4), time.Time{}, date(2025, 3, 9, 0, 0), date(2025, 3, 10, 0, 0)},
		{"DayAtMidnight", plan.Day, date(2025, 3, 9, 0, 0), time.Time{}, date(2025, 3, 9, 0, 0), date(2025, 3, 10, 0, 0)},
		{"DayYearEnd", plan.Day, date(2025, 12, 31, 23, 59), time.Time{}, date(2025, 12, 31, 0, 0), date(2026, 1, 1, 0, 0)},
		{"DayLeap", plan.Day, date(2024, 2, 29, 1, 0), time.Time{}, date(2024, 2, 29, 0, 0), date(2024, 3, 1, 0, 0)},
		{"DayNotLocal", plan.Day, time.Date(2025, 3, 30, 1, 30, 0, 0, time.FixedZone("CEST", 2*3600)), time.Time{}, date(2025, 3, 29, 0, 0), date(2025, 3, 30, 0, 0)},
		{"Month", plan.Month, date(2025, 2, 14, 8, 0), time.Time{}, date(2025, 2, 1, 0, 0), date(2025, 3, 1, 0, 0)},
		{"MonthDecember", plan.Month, date(2025, 12, 31, 23, 0), time.Time{}, date(2025, 12, 1, 0, 0), date(2026, 1, 1, 0, 0)},
		{"PeriodWithoutAnchorIsMonth", plan.BillingPeriod, date(2025, 2, 14, 8, 0), time.Time{}, date(2025, 2, 1, 0, 0), date(2025, 3, 1, 0, 0)},
		{"PeriodAtAnchor", plan.BillingPeriod, jan31, jan31, jan31, date(2024, 2, 29, 12, 0)},
		{"PeriodLeapFeb", plan.BillingPeriod, date(2024, 3, 1, 0, 0), jan31, date(2024, 2, 29, 12, 0), date(2024, 3, 31, 12, 0)},
		{"PeriodFeb", plan.BillingPeriod, date(2025, 2, 28, 11, 59), jan31, date(2025, 1, 31, 12, 0), date(2025, 2, 28, 12, 0)},
		{"PeriodAfterFeb", plan.BillingPeriod, date(2025, 2, 28, 12, 0), jan31, date(2025, 2, 28, 12, 0), date(2025, 3, 31, 12, 0)},
		{"PeriodApril", plan.BillingPeriod, date(2025, 4, 30, 13, 0), jan31, date(2025, 4, 30, 12, 0), date(2025, 5, 31, 12, 0)},
		{"PeriodBeforeTimeOfDay", plan.BillingPeriod, date(2025, 6, 15, 9, 0), date(2025, 1, 15, 10, 0), date(2025, 5, 15, 10, 0), date(2025, 6, 15, 10, 0)},
		{"PeriodYearWrap", plan.BillingPeriod, date(2026, 1, 2, 0, 0), date(2025, 3, 20, 0, 0), date(2025, 12, 20, 0, 0), date(2026, 1, 20, 0, 0)},
		{"PeriodBeforeAnchor", plan.BillingPeriod, date(2023, 12, 31, 0, 0), jan31, date(2023, 11, 30, 12, 0), date(2023, 12, 31, 12, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := tt.p.Bounds(tt.t, tt.anchor)
			if !start.Equal(tt.start) || !end.Equal(tt.end) {
				t.Errorf("Bounds(%v, %v) = %v, %v; want %v, %v", tt.t, tt.anchor, start, end, tt.start, tt.end)
			}
			if start.After(tt.t) || !end.After(tt.t) {
				t.Errorf("%v is not in [%v, %v)", tt.t, start, end)
			}
		})
	}
}

// TestBoundsContiguous walks three years hour by hour: periods never
// overlap, never leave gaps, and always contain the time.
func TestBoundsContiguous(t *testing.T) {
	for _, anchor := range []time.Time{{}, date(2024, 1, 31, 23, 59), date(2023, 5, 29, 0, 0), date(2024, 2, 29, 6, 0)} {
		for _, p := range []plan.Period{plan.Day, plan.Month, plan.BillingPeriod} {
			_, prevEnd := p.Bounds(date(2023, 6, 1, 0, 0), anchor)
			for tm := date(2023, 6, 1, 0, 0); tm.Year() < 2026; tm = tm.Add(time.Hour) {
				start, end := p.Bounds(tm, anchor)
				if start.After(tm) || !end.After(tm) {
					t.Fatalf("%v %v anchor %v: %v not in [%v, %v)", p, tm, anchor, tm, start, end)
				}
				if !tm.Before(prevEnd) && !start.Equal(prevEnd) {
					t.Fatalf("%v anchor %v: period after %v starts at %v", p, anchor, prevEnd, start)
				}
				prevEnd = end
			}
		}
	}
}

func TestParseQuota(t *testing.T) {
	for in, want := range map[string]plan.Quota{
		"100/day":        {100, plan.Day},
		" 10000 / month": {10000, plan.Month},
		"5/period":       {5, plan.BillingPeriod},
	} {
		q, err := plan.ParseQuota(in)
		if err != nil || q != want {
			t.Errorf("ParseQuota(%q) = %v, %v; want %v", in, q, err, want)
		}
	}
	for _, in := range []string{"", "100", "100/week", "0/day", "-1/day", "1e3/day", "100/Day", "1000000000001/day", "99999999999999999999/day", "100/d"} {
		if q, err := plan.ParseQuota(in); err == nil {
			t.Errorf("ParseQuota(%q) = %v; want an error", in, q)
		}
	}
}

func FuzzParseQuota(f *testing.F) {
	for _, s := range []string{"100/day", "1/month", "5/period", "0/day", " 7 /day", "1/", "/day"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := plan.ParseQuota(s)
		if err != nil {
			return
		}
		if err := q.Validate(); err != nil {
			t.Fatalf("ParseQuota(%q) = %v, invalid: %v", s, q, err)
		}
		back, err := plan.ParseQuota(q.String())
		if err != nil || back != q {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, q, q.String(), back, err)
		}
	})
}
