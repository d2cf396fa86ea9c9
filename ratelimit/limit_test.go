package ratelimit_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/ratelimit"
)

func TestParseLimit(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in   string
		want ratelimit.Limit
	}{
		{"100/min", ratelimit.Limit{Count: 100, Period: time.Minute}},
		{"100/m", ratelimit.Limit{Count: 100, Period: time.Minute}},
		{"100/1m", ratelimit.Limit{Count: 100, Period: time.Minute}},
		{"100/minute", ratelimit.Limit{Count: 100, Period: time.Minute}},
		{"50/15m", ratelimit.Limit{Count: 50, Period: 15 * time.Minute}},
		{"50/15min", ratelimit.Limit{Count: 50, Period: 15 * time.Minute}},
		{"10/s", ratelimit.Limit{Count: 10, Period: time.Second}},
		{"10/sec", ratelimit.Limit{Count: 10, Period: time.Second}},
		{"10/seconds", ratelimit.Limit{Count: 10, Period: time.Second}},
		{"1000/h", ratelimit.Limit{Count: 1000, Period: time.Hour}},
		{"5/hour", ratelimit.Limit{Count: 5, Period: time.Hour}},
		{"5/2hrs", ratelimit.Limit{Count: 5, Period: 2 * time.Hour}},
		{"100/day", ratelimit.Limit{Count: 100, Period: day}},
		{"100/7d", ratelimit.Limit{Count: 100, Period: 7 * day}},
		{"1/366d", ratelimit.Limit{Count: 1, Period: 366 * day}},
		{"100/90s", ratelimit.Limit{Count: 100, Period: 90 * time.Second}},
		{"  100 / min  ", ratelimit.Limit{Count: 100, Period: time.Minute}},
		{"100/min burst 20", ratelimit.Limit{Count: 100, Period: time.Minute, Burst: 20}},
		{"100/min  burst  200", ratelimit.Limit{Count: 100, Period: time.Minute, Burst: 200}},
		{"1000000000/s", ratelimit.Limit{Count: 1e9, Period: time.Second}},
	}
	for _, tt := range tests {
		got, err := ratelimit.ParseLimit(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseLimitErrors(t *testing.T) {
	tests := []struct{ in, says string }{
		{"", `no "/"`},
		{"100", `no "/"`},
		{"100/", "no period"},
		{"/min", "count: missing number"},
		{"0/min", "count 0"},
		{"-5/min", "not a whole number"},
		{"+5/min", "not a whole number"},
		{"1.5/min", "not a whole number"},
		{"1e3/min", "not a whole number"},
		{"1000000001/s", "larger than"},
		{"99999999999999999999/s", "larger than"},
		{"100/0m", "not between 1s and 366d"},
		{"100/367d", "not between 1s and 366d"},
		{"100/9999999999999d", "larger than"},
		{"100/1.5h", "unknown period unit"},
		{"100/ms", "unknown period unit"},
		{"100/500ms", "unknown period unit"},
		{"100/fortnight", "unknown period unit"},
		{"100/MIN", "unknown period unit"},
		{"100/15", "has no unit"},
		{"100/15 m", `unexpected "m"`},
		{"100/min/s", "unknown period unit"},
		{"100/min burst", `unexpected "burst"`},
		{"100/min burst 0", "burst must be at least 1"},
		{"100/min burst -1", "not a whole number"},
		{"100/min burst x", "not a whole number"},
		{"100/min burst 2000000000", "larger than"},
		{"100/min rate 20", `unexpected "rate 20"`},
	}
	for _, tt := range tests {
		_, err := ratelimit.ParseLimit(tt.in)
		if !errors.Is(err, ratelimit.ErrInvalidLimit) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("ParseLimit(%q) error = %v; want ErrInvalidLimit saying %q", tt.in, err, tt.says)
		}
	}
}

func TestLimitStringRoundTrips(t *testing.T) {
	tests := []struct {
		l    ratelimit.Limit
		want string
	}{
		{ratelimit.PerMinute(100), "100/min"},
		{ratelimit.PerSecond(10), "10/s"},
		{ratelimit.PerHour(1000), "1000/h"},
		{ratelimit.Limit{Count: 50, Period: 15 * time.Minute}, "50/15min"},
		{ratelimit.Limit{Count: 100, Period: 24 * time.Hour}, "100/d"},
		{ratelimit.Limit{Count: 100, Period: 90 * time.Second}, "100/90s"},
		{ratelimit.Limit{Count: 100, Period: 36 * time.Hour}, "100/36h"},
		{ratelimit.Limit{Count: 100, Period: time.Minute, Burst: 20}, "100/min burst 20"},
		{ratelimit.Limit{Count: 100, Period: time.Minute, Burst: 100}, "100/min burst 100"},
	}
	for _, tt := range tests {
		if got := tt.l.String(); got != tt.want {
			t.Errorf("%+v.String() = %q; want %q", tt.l, got, tt.want)
		}
		back, err := ratelimit.ParseLimit(tt.l.String())
		if err != nil || back != tt.l {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", tt.l.String(), back, err, tt.l)
		}
	}
}

func TestLimitValidate(t *testing.T) {
	bad := []ratelimit.Limit{
		{},
		{Count: 1},
		{Count: 0, Period: time.Second},
		{Count: -1, Period: time.Second},
		{Count: 1, Period: 1500 * time.Millisecond},
		{Count: 1, Period: time.Millisecond},
		{Count: 1, Period: ratelimit.MaxPeriod + time.Second},
		{Count: ratelimit.MaxCount + 1, Period: time.Second},
		{Count: 1, Period: time.Second, Burst: -1},
		{Count: 1, Period: time.Second, Burst: ratelimit.MaxCount + 1},
	}
	for _, l := range bad {
		if err := l.Validate(); !errors.Is(err, ratelimit.ErrInvalidLimit) {
			t.Errorf("%+v.Validate() = %v; want ErrInvalidLimit", l, err)
		}
	}
	if err := ratelimit.PerMinute(100).Validate(); err != nil {
		t.Errorf("PerMinute(100).Validate() = %v", err)
	}
}

func TestLimitJSON(t *testing.T) {
	var cfg struct {
		PerKey ratelimit.Limit `json:"per_key"`
	}
	if err := json.Unmarshal([]byte(`{"per_key":"100/min burst 20"}`), &cfg); err != nil {
		t.Fatal(err)
	}
	if want := (ratelimit.Limit{Count: 100, Period: time.Minute, Burst: 20}); cfg.PerKey != want {
		t.Fatalf("unmarshalled %+v; want %+v", cfg.PerKey, want)
	}
	out, err := json.Marshal(cfg)
	if err != nil || string(out) != `{"per_key":"100/min burst 20"}` {
		t.Fatalf("Marshal = %s, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"per_key":"lots"}`), &cfg); !errors.Is(err, ratelimit.ErrInvalidLimit) {
		t.Fatalf("Unmarshal of a bad limit = %v; want ErrInvalidLimit", err)
	}
	if _, err := json.Marshal(struct{ L ratelimit.Limit }{}); !errors.Is(err, ratelimit.ErrInvalidLimit) {
		t.Fatalf("Marshal of the zero Limit = %v; want ErrInvalidLimit", err)
	}
}

func TestMustParseLimitPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(r.(error).Error(), "ratelimit: ") {
			t.Fatalf("recovered %v; want a ratelimit: error", r)
		}
	}()
	ratelimit.MustParseLimit("100 per minute")
}
