package plan_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/plantest"
	"github.com/apikit/apikit/ratelimit"
)

// TestMemoryBounded: a full Memory refuses newcomers rather than forget an
// identity that has spent part of its budget; without a Flusher, a spent
// quota pins the identity until the period ends.
func TestMemoryBounded(t *testing.T) {
	ctx := context.Background()
	clock := plantest.NewClock(time.Date(2025, 5, 10, 23, 0, 0, 0, time.UTC))
	m := plan.NewMemory(plan.MemoryOptions{Now: clock.Now, MaxIdentities: 4, Shards: 1})
	p := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerMinute(2)}, Quota: plan.Quota{Count: 5, Period: plan.Day}}
	for i := range 4 {
		if d, _ := m.Decide(ctx, plan.Request{Plan: p, User: fmt.Sprint(i)}); !d.Allowed {
			t.Fatalf("identity %d refused", i)
		}
	}
	d, err := m.Decide(ctx, plan.Request{Plan: p, User: "newcomer"})
	if err != nil || d.Allowed || d.Refusal != plan.RateLimited {
		t.Fatalf("newcomer at a full decider: %+v, %v; want refused", d, err)
	}
	// Limits refilled, but the quotas are spent in part: still pinned.
	clock.Advance(time.Minute)
	if d, _ := m.Decide(ctx, plan.Request{Plan: p, User: "newcomer"}); d.Allowed {
		t.Fatal("an identity with a partly spent quota was forgotten")
	}
	// The next day, the old quotas are void: room again.
	clock.Advance(time.Hour)
	if d, _ := m.Decide(ctx, plan.Request{Plan: p, User: "newcomer"}); !d.Allowed {
		t.Fatal("newcomer refused after the period ended")
	}
	if st := m.Stats(); st.Overflowed != 2 || st.Identities > 4 {
		t.Errorf("stats = %+v", st)
	}
}

// TestPlanChange: a limit the new plan shares carries its state over; the
// quota counter carries over when the period is the same.
func TestPlanChange(t *testing.T) {
	ctx := context.Background()
	clock := plantest.NewClock(time.Date(2025, 5, 10, 12, 0, 0, 0, time.UTC))
	m := plan.NewMemory(plan.MemoryOptions{Now: clock.Now})
	hobby := &plan.Plan{Name: "hobby", Limits: []ratelimit.Limit{ratelimit.PerHour(10)}, Quota: plan.Quota{Count: 100, Period: plan.Month}}
	pro := &plan.Plan{Name: "pro", Limits: []ratelimit.Limit{ratelimit.PerSecond(100), ratelimit.PerHour(10)}, Quota: plan.Quota{Count: 1000, Period: plan.Month}}
	for range 4 {
		m.Decide(ctx, plan.Request{Plan: hobby, User: "u"})
	}
	d, _ := m.Decide(ctx, plan.Request{Plan: pro, User: "u"})
	pols := d.Policies()
	if d.Plan != "pro" || pols[0].Remaining != 99 || pols[1].Remaining != 5 || pols[2].Remaining != 995 {
		t.Errorf("after the upgrade: %+v", pols)
	}
}
