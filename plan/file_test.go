package plan_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

const issueFile = `{"plans": [
  {"name": "free", "prices": [], "limits": ["1/s"], "quota": "100/day", "budget": "user", "scopes": [], "metered": false},
  {"name": "hobby", "prices": ["price_hobby"], "limits": ["10/s"], "quota": "10000/month", "budget": "user", "scopes": ["favorites:read", "favorites:write"], "metered": false},
  {"name": "pro", "prices": ["price_pro", "price_pro_yearly"], "limits": ["100/s", "100000/h burst 500"], "budget": "key", "scopes": ["favorites:read"], "metered": true, "meter_event": "api_requests"}
]}`

func TestReadCatalog(t *testing.T) {
	c, err := plan.ReadCatalog(strings.NewReader(issueFile))
	if err != nil {
		t.Fatal(err)
	}
	free, ok := c.Free()
	if !ok || free.Name != "free" || free.Quota != (plan.Quota{Count: 100, Period: plan.Day}) || free.Budget != plan.PerUser {
		t.Errorf("free plan = %+v", free)
	}
	pro, ok := c.ForPrice("price_pro_yearly")
	want := []ratelimit.Limit{ratelimit.PerSecond(100), {Count: 100000, Period: 3600e9, Burst: 500}}
	if !ok || pro.Name != "pro" || !reflect.DeepEqual(pro.Limits, want) || !pro.Quota.IsZero() || pro.Budget != plan.PerKey || !pro.Metered || pro.MeterEvent != "api_requests" {
		t.Errorf("pro plan = %+v", pro)
	}
	if h, ok := c.Plan("hobby"); !ok || !h.HasScope("favorites:write") || h.HasScope("admin") {
		t.Errorf("hobby plan = %+v", h)
	}
	if _, ok := c.Plan("enterprise"); ok {
		t.Error("found a plan that is not declared")
	}

	// Round trip: printing and reading back gives the same plans.
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := plan.ReadCatalog(&buf)
	if err != nil {
		t.Fatalf("reading back %s: %v", buf.String(), err)
	}
	if !reflect.DeepEqual(back.Plans(), c.Plans()) {
		t.Errorf("round trip changed the plans:\n%s", buf.String())
	}
}

func TestReadCatalogErrors(t *testing.T) {
	plan1 := func(s string) string {
		return `{"plans": [{"name": "free", "limits": ["1/s"]}, ` + s + `]}`
	}
	tests := map[string]struct{ file, want string }{
		"UnknownTopField":   {`{"plans": [], "extra": 1}`, `unknown field "extra"`},
		"NoPlans":           {`{}`, `no "plans" list`},
		"Trailing":          {`{"plans": []} {}`, "unexpected data"},
		"NotJSON":           {`plans:`, "invalid character"},
		"UnknownPlanField":  {plan1(`{"name": "hobby", "limits": ["1/s"], "price": "x"}`), `plans[1] (plan "hobby"): unknown field "price"`},
		"BadQuota":          {plan1(`{"name": "hobby", "limits": ["1/s"], "quota": "100/week"}`), `plans[1].quota (plan "hobby"): "100/week": unknown period "week"`},
		"BadLimit":          {plan1(`{"name": "hobby", "limits": ["1/s", "10/fortnight"]}`), `plans[1].limits[1] (plan "hobby")`},
		"BadBudget":         {plan1(`{"name": "hobby", "limits": ["1/s"], "budget": "team"}`), `plans[1].budget (plan "hobby"): "team"`},
		"NoName":            {plan1(`{"limits": ["1/s"]}`), `plans[1].name (plan ""): missing`},
		"NoLimits":          {plan1(`{"name": "hobby", "prices": ["p"]}`), `plans[1].limits (plan "hobby"): missing`},
		"DuplicateName":     {plan1(`{"name": "free", "prices": ["p"], "limits": ["1/s"]}`), `plans[1].name (plan "free"): "free" is also the name of plans[0]`},
		"TwoFree":           {plan1(`{"name": "gratis", "limits": ["1/s"]}`), `plans[1].prices (plan "gratis"): none, so the plan is free, but plan "free" is free already`},
		"DuplicateLimit":    {plan1(`{"name": "hobby", "prices": ["p"], "limits": ["1/s", "1/sec"]}`), `plans[1].limits[1] (plan "hobby"): 1/s is listed twice`},
		"WrongType":         {plan1(`{"name": "hobby", "limits": "1/s"}`), `plans[1] (plan "hobby"): cannot unmarshal string`},
		"PlanNotAnObject":   {plan1(`"hobby"`), `plans[1] (plan ""): a plan is a JSON object`},
		"BadName":           {plan1(`{"name": "hobby plan", "prices": ["p"], "limits": ["1/s"]}`), `plans[1].name (plan "hobby plan")`},
		"BadScope":          {plan1(`{"name": "hobby", "prices": ["p"], "limits": ["1/s"], "scopes": ["a b"]}`), `plans[1].scopes[0] (plan "hobby")`},
		"TooManyLimits":     {plan1(`{"name": "h", "prices": ["p"], "limits": ["1/s", "2/s", "3/s", "4/s", "5/s"]}`), `plans[1].limits (plan "h"): a plan has 1 to 4 limits, not 5`},
		"MeterNotMetered":   {plan1(`{"name": "h", "prices": ["p"], "limits": ["1/s"], "meter_event": "api_requests"}`), `plans[1].meter_event (plan "h"): "api_requests" is set, but the plan is not metered`},
		"MeterEmpty":        {plan1(`{"name": "h", "prices": ["p"], "limits": ["1/s"], "metered": true, "meter_event": ""}`), `plans[1].meter_event (plan "h"): empty`},
		"MeterSpaces":       {plan1(`{"name": "h", "prices": ["p"], "limits": ["1/s"], "metered": true, "meter_event": "api requests"}`), `plans[1].meter_event (plan "h"): "api requests" is not a meter event name`},
		"MeterTooLong":      {plan1(`{"name": "h", "prices": ["p"], "limits": ["1/s"], "metered": true, "meter_event": "` + strings.Repeat("m", 101) + `"}`), `plans[1].meter_event (plan "h"): "mmm`},
		"MeterWrongType":    {plan1(`{"name": "h", "prices": ["p"], "limits": ["1/s"], "metered": true, "meter_event": 1}`), `plans[1] (plan "h"): cannot unmarshal number`},
		"DuplicatePriceAll": {`{"plans": [{"name": "a", "prices": ["p"], "limits": ["1/s"]}, {"name": "b", "prices": ["p"], "limits": ["1/s"]}]}`, `plans[1].prices[0] (plan "b"): "p" also grants plan "a"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := plan.ReadCatalog(strings.NewReader(tt.file))
			if !errors.Is(err, plan.ErrInvalidPlan) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant ErrInvalidPlan containing %s", err, tt.want)
			}
		})
	}
}

func TestNewCatalogCopies(t *testing.T) {
	p := plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(1)}, Scopes: []string{"read"}}
	c := plan.MustCatalog(p)
	p.Limits[0] = ratelimit.PerSecond(1000)
	p.Scopes[0] = "admin"
	if got, _ := c.Plan("free"); got.Limits[0] != ratelimit.PerSecond(1) || got.Scopes[0] != "read" {
		t.Errorf("the catalog shares the caller's slices: %+v", got)
	}
}

func FuzzReadCatalog(f *testing.F) {
	f.Add(issueFile)
	f.Add(`{"plans": []}`)
	f.Add(`{"plans": [{"name": "a", "limits": ["1/s"], "quota": null}]}`)
	f.Add(`{"plans": [{"name": "a", "limits": ["1/s burst 2"], "quota": "1/period", "budget": "key", "metered": true, "scopes": ["x"]}]}`)
	f.Add(`{"plans": [{"name": "a", "limits": ["1/s"], "metered": true, "meter_event": "api_requests"}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := plan.ReadCatalog(strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, plan.ErrInvalidPlan) {
				t.Fatalf("error %v does not wrap ErrInvalidPlan", err)
			}
			return
		}
		var buf bytes.Buffer
		if _, err := c.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		back, err := plan.ReadCatalog(&buf)
		if err != nil {
			t.Fatalf("cannot read back %s: %v", buf.String(), err)
		}
		if !reflect.DeepEqual(back.Plans(), c.Plans()) {
			t.Fatalf("round trip changed %q into %s", s, buf.String())
		}
	})
}

func TestMeterEvent(t *testing.T) {
	limits := []ratelimit.Limit{ratelimit.PerSecond(1)}
	tests := map[string]struct {
		p    plan.Plan
		want string // "" for valid
	}{
		"MeteredNamed":     {plan.Plan{Name: "pro", Limits: limits, Metered: true, MeterEvent: "api_requests"}, ""},
		"MeteredDefault":   {plan.Plan{Name: "pro", Limits: limits, Metered: true}, ""},
		"NotMetered":       {plan.Plan{Name: "pro", Limits: limits, MeterEvent: "api_requests"}, `meter_event (plan "pro"): "api_requests" is set, but the plan is not metered`},
		"ControlCharacter": {plan.Plan{Name: "pro", Limits: limits, Metered: true, MeterEvent: "api\nrequests"}, `meter_event (plan "pro")`},
		"InvalidUTF8":      {plan.Plan{Name: "pro", Limits: limits, Metered: true, MeterEvent: "api\xffrequests"}, `meter_event (plan "pro")`},
		"Longest":          {plan.Plan{Name: "pro", Limits: limits, Metered: true, MeterEvent: strings.Repeat("m", plan.MaxMeterEventLen)}, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := plan.NewCatalog(tt.p)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				p, _ := c.Plan("pro")
				if got := p.MeterEventOr("default"); got != tt.p.MeterEventOr("default") || (tt.p.MeterEvent == "" && got != "default") {
					t.Errorf("MeterEventOr = %q", got)
				}
				var buf bytes.Buffer
				c.WriteTo(&buf)
				back, err := plan.ReadCatalog(&buf)
				if err != nil || !reflect.DeepEqual(back.Plans(), c.Plans()) {
					t.Errorf("round trip: %v\n%s", err, buf.String())
				}
				return
			}
			if !errors.Is(err, plan.ErrInvalidPlan) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant ErrInvalidPlan containing %s", err, tt.want)
			}
		})
	}
}
