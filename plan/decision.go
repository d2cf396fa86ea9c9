package plan

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apikit/apikit/ratelimit"
)

// Errors of a [Decider].
var (
	// ErrInvalidRequest is wrapped by the errors of a Decider given a
	// request that can never be decided: no plan, no identity, an invalid
	// plan or override, or a cost that no policy could ever admit (more
	// than a limit's burst or the quota). It is a programming or
	// configuration error (500), not a refusal.
	ErrInvalidRequest = errors.New("plan: invalid request")
	// ErrUnavailable is wrapped by the errors of a Decider that cannot
	// decide because its backend (Redis, or the usage store restoring a
	// quota) failed; answer 503. It wraps [ratelimit.ErrUnavailable], so
	// ratelimit's error handling applies.
	ErrUnavailable = fmt.Errorf("plan: decider unavailable (%w)", ratelimit.ErrUnavailable)
)

// Decider decides requests against a plan's limits and quota together, in
// one step: a request is admitted only if every limit and the quota admit
// its cost, and then the cost is spent from all of them; a refused request
// spends nothing. [Memory] decides in this process; package plan/redisplan
// decides in Redis, for a fleet. Both make the same decisions for the same
// requests at the same times. Implementations are safe for concurrent use.
type Decider interface {
	// Decide admits or refuses req and, if admitted, spends its cost.
	// With req.Deferred, it only admits or refuses, spending nothing: the
	// first half of charge-after (see Charge).
	Decide(ctx context.Context, req Request) (Decision, error)
	// Charge spends req.Cost unconditionally: the second half of
	// charge-after, for a request admitted by Decide with Deferred whose
	// cost became known only once its handler ran (an item count, a
	// response size). Limits and the quota may go below zero; later
	// requests then wait until they have refilled past zero. Since Deferred
	// admits only with at least one unit left in every policy, a quota is
	// overdrawn by less than one request's cost for each request admitted
	// but not yet charged. The Decision reports the state after the charge,
	// with Allowed true.
	Charge(ctx context.Context, req Request) (Decision, error)
	// Peek reports the state of req's budgets without deciding: every
	// limit's and the quota's remaining units and reset (the quota used
	// this period, for a dashboard or GET /v1/me), spending nothing and
	// counting nothing in the decider's statistics. Allowed and Refusal
	// say whether a request of req.Cost (1 if Deferred) would be admitted
	// now. Like Decide, it may restore a quota counter from the usage
	// store.
	Peek(ctx context.Context, req Request) (Decision, error)
}

// Request is one request to decide. Plan and the identity its Budget names
// (User or Key) are required.
type Request struct {
	// Plan is the plan the request is decided under.
	Plan *Plan
	// User and Key identify the caller: the user's id and the API key's
	// id. The plan's Budget chooses which one the budget belongs to; only
	// that one is required.
	User, Key string
	// Cost is what the request spends from every limit and the quota; 0
	// means 1. It may not exceed a limit's burst or the quota's count
	// (such a request could never be admitted).
	Cost int
	// Deferred asks Decide to admit the request if every policy has at
	// least one unit left, and to spend nothing; Cost is ignored. Call
	// Charge with the real cost once it is known.
	Deferred bool
	// Anchor is the subscription's billing cycle anchor, for quotas per
	// BillingPeriod; the zero time makes them monthly.
	Anchor time.Time
	// Now is the time of the request; the zero time means the decider's
	// clock.
	Now time.Time
}

// Identity returns whose budget the request spends: the user's or the
// key's, as the plan's Budget says. It is the zero Identity without a plan.
func (r *Request) Identity() Identity {
	if r.Plan == nil {
		return Identity{}
	}
	if r.Plan.Budget == PerKey {
		return Identity{PerKey, r.Key}
	}
	return Identity{PerUser, r.User}
}

// cost returns the units to spend: Cost, 0 meaning 1.
func (r *Request) cost() int {
	if r.Cost == 0 {
		return 1
	}
	return r.Cost
}

// Identity is the owner of a budget: a user or an API key. It is a small
// comparable value, usable as a map key.
type Identity struct {
	Budget Budget // PerUser: ID is a user id; PerKey: a key id
	ID     string
}

// String returns "user:" or "key:" followed by the ID: the identity's name
// in stores and Redis keys.
func (i Identity) String() string { return i.Budget.String() + ":" + i.ID }

// Override replaces parts of a plan for one identity, such as a customer
// with a negotiated higher limit. A nil field keeps the plan's.
type Override struct {
	// Limits, if not nil, replace the plan's limits (1 to [MaxLimits]).
	Limits []ratelimit.Limit
	// Quota, if not nil, replaces the plan's quota; a pointer to the zero
	// Quota removes it.
	Quota *Quota
}

// Validate reports why o cannot be applied, or nil.
func (o Override) Validate() error {
	if o.Limits != nil {
		if err := validLimits(o.Limits); err != nil {
			return err
		}
	}
	if o.Quota != nil && !o.Quota.IsZero() {
		if err := o.Quota.Validate(); err != nil {
			return &fieldError{"quota", err}
		}
	}
	return nil
}

// Overrides finds the override of an identity. Deciders call it on every
// request, so it must answer from memory, quickly and without blocking; an
// implementation backed by a store keeps a cache. It must be safe for
// concurrent use.
type Overrides interface {
	Override(id Identity) (Override, bool)
}

// OverrideMap is an [Overrides] held in a map. It must not be modified
// while a decider uses it; replace it instead.
type OverrideMap map[Identity]Override

// Override implements [Overrides].
func (m OverrideMap) Override(id Identity) (Override, bool) {
	o, ok := m[id]
	return o, ok
}

// Refusal says why a request was refused.
type Refusal uint8

const (
	// NotRefused is the Refusal of an admitted request.
	NotRefused Refusal = iota
	// RateLimited: a rate limit refused the request (429, problem code
	// "rate_limited"); it may be retried in seconds.
	RateLimited
	// QuotaExceeded: the quota is spent (429, problem type
	// quota-exceeded); Retry-After is the next refill. When both a limit
	// and the quota refuse, the quota is what the client must wait for.
	QuotaExceeded
)

// String returns "", "rate_limited" or "quota_exceeded".
func (r Refusal) String() string {
	switch r {
	case RateLimited:
		return "rate_limited"
	case QuotaExceeded:
		return "quota_exceeded"
	}
	return ""
}

// maxPolicies is the most policies a Decision holds: the limits and a
// quota.
const maxPolicies = MaxLimits + 1

// Policy is the state of one limit or the quota after a decision.
type Policy struct {
	// Limit is the rate limit, for a limit; the zero Limit for the quota.
	Limit ratelimit.Limit
	// Quota is the quota, for the quota; the zero Quota for a limit.
	Quota Quota
	// Remaining is what the policy would still admit: whole units for a
	// limit, never negative; for the quota, Count minus the units used this
	// period, also clamped at 0.
	Remaining int64
	// Reset is the time until the policy is whole again: a limit's bucket
	// full, or the quota's next refill.
	Reset time.Duration
	// RetryAfter is, if the policy refused the request, the time until it
	// would admit it; 0 otherwise.
	RetryAfter time.Duration
	// Window is the policy's w in the RateLimit-Policy header: the limit's
	// Period, or the length of the quota's current period (see
	// [Decision].PeriodStart and PeriodEnd).
	Window time.Duration
}

// IsQuota reports whether p is the quota rather than a rate limit.
func (p *Policy) IsQuota() bool { return !p.Quota.IsZero() }

// Name returns the policy's name in the RateLimit headers: the limit or the
// quota in plan file syntax ("10/s", "10000/month").
func (p *Policy) Name() string {
	if p.IsQuota() {
		return p.Quota.String()
	}
	return p.Limit.String()
}

// Count returns the policy's q: the limit's Count or the quota's Count.
func (p *Policy) Count() int64 {
	if p.IsQuota() {
		return p.Quota.Count
	}
	return int64(p.Limit.Count)
}

// Decision is a [Decider]'s answer for one request, with the state of
// every policy (each limit, then the quota) for the response headers. It is
// a plain value, safe to copy; the zero Decision refuses with no policies.
type Decision struct {
	// Allowed reports whether the request may proceed; if so, its cost has
	// been spent.
	Allowed bool
	// Refusal says, for a refused request, what refused it.
	Refusal Refusal
	// RetryAfter is, for a refused request, the time until it would be
	// admitted: the longest RetryAfter of the policies that refused it.
	RetryAfter time.Duration
	// Plan is the name of the plan the request was decided under.
	Plan string
	// Cost is the cost the decision spent (or, if refused, would have).
	Cost int
	// At is when the decision was made, for X-RateLimit-Reset.
	At time.Time
	// PeriodStart and PeriodEnd bound the quota's current period, if the
	// plan has a quota: PeriodEnd is its next refill.
	PeriodStart, PeriodEnd time.Time
	// FailedOpen reports that the backend failed and the request was
	// admitted without a decision (see the deciders' fail-open options);
	// the policies then show full budgets.
	FailedOpen bool

	policies [maxPolicies]Policy
	n        uint8
}

// Policies returns the state of each of the decision's limits, in the
// plan's order, followed by its quota if there is one. The slice shares
// d's memory.
func (d *Decision) Policies() []Policy { return d.policies[:d.n] }

// Quota returns the state of the quota, if the plan has one.
func (d *Decision) Quota() (Policy, bool) {
	if d.n > 0 && d.policies[d.n-1].IsQuota() {
		return d.policies[d.n-1], true
	}
	return Policy{}, false
}

// Closest returns the policy closest to exhaustion, the one the
// X-RateLimit-* headers describe: for a refused request, the refusing
// policy with the longest RetryAfter; otherwise the one with the fewest
// units remaining (the longest Reset among equals). ok is false if the
// decision has no policies.
func (d *Decision) Closest() (p Policy, ok bool) {
	i := d.closest()
	if i < 0 {
		return Policy{}, false
	}
	return d.policies[i], true
}

func (d *Decision) closest() int {
	best := -1
	for i := 0; i < int(d.n); i++ {
		p, b := &d.policies[i], (*Policy)(nil)
		if best >= 0 {
			b = &d.policies[best]
		}
		switch {
		case b == nil:
			best = i
		case p.RetryAfter != b.RetryAfter:
			if p.RetryAfter > b.RetryAfter {
				best = i
			}
		case p.Remaining != b.Remaining:
			if p.Remaining < b.Remaining {
				best = i
			}
		case p.Reset > b.Reset:
			best = i
		}
	}
	return best
}

// finish sets Allowed, Refusal and RetryAfter from the policies.
func (d *Decision) finish(allowed bool) {
	d.Allowed = allowed
	d.Refusal, d.RetryAfter = NotRefused, 0
	if allowed {
		return
	}
	for i := range d.Policies() {
		p := &d.policies[i]
		if p.RetryAfter <= 0 {
			continue
		}
		d.RetryAfter = max(d.RetryAfter, p.RetryAfter)
		if p.IsQuota() {
			d.Refusal = QuotaExceeded
		} else if d.Refusal == NotRefused {
			d.Refusal = RateLimited
		}
	}
}

// RetryAfterSeconds returns RetryAfter in whole seconds, rounded up, and at
// least 1 for a refused request: the value of a Retry-After header.
func (d *Decision) RetryAfterSeconds() int64 {
	if d.Allowed {
		return 0
	}
	return max(1, ceilSeconds(d.RetryAfter))
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Resolved is a [Request] checked and with its identity's [Override]
// applied: what a [Decider] decides. It is for implementations of Decider.
type Resolved struct {
	Identity Identity
	Limits   []ratelimit.Limit
	Quota    Quota // the zero Quota: none
	// Cost is the units to check and spend: Request.Cost, 0 meaning 1, and
	// 1 for a Deferred Decide.
	Cost int
}

// Resolve checks req and applies the override ov has for its identity (ov
// may be nil), for Decide or, with charge, for Charge (which may spend
// more than a limit's burst or the quota). Its error wraps
// [ErrInvalidRequest]. It is for implementations of [Decider], so that all
// of them refuse the same requests.
func Resolve(req *Request, ov Overrides, charge bool) (Resolved, error) {
	var r Resolved
	p := req.Plan
	if p == nil {
		return r, fmt.Errorf("%w: no plan", ErrInvalidRequest)
	}
	r.Identity = req.Identity()
	if r.Identity.ID == "" {
		return r, fmt.Errorf("%w: plan %q budgets per %s, and the request has no %s id", ErrInvalidRequest, p.Name, p.Budget, p.Budget)
	}
	r.Limits, r.Quota = p.Limits, p.Quota
	if ov != nil {
		if o, ok := ov.Override(r.Identity); ok {
			if o.Limits != nil {
				r.Limits = o.Limits
			}
			if o.Quota != nil {
				r.Quota = *o.Quota
			}
		}
	}
	if len(r.Limits) == 0 || len(r.Limits) > MaxLimits {
		return r, fmt.Errorf("%w: plan %q for %v has %d limits, not 1 to %d", ErrInvalidRequest, p.Name, r.Identity, len(r.Limits), MaxLimits)
	}
	r.Cost = req.cost()
	if req.Deferred && !charge {
		r.Cost = 1
	}
	if r.Cost < 0 || r.Cost > ratelimit.MaxCount {
		return r, fmt.Errorf("%w: cost %d is not between 0 and %d", ErrInvalidRequest, req.Cost, ratelimit.MaxCount)
	}
	for _, l := range r.Limits {
		if !validLimit(l) {
			return r, fmt.Errorf("%w: plan %q: %w", ErrInvalidRequest, p.Name, l.Validate())
		}
		if !charge && r.Cost > l.BurstSize() {
			return r, fmt.Errorf("%w: cost %d exceeds the burst of limit %s of plan %q", ErrInvalidRequest, r.Cost, l, p.Name)
		}
	}
	if !r.Quota.IsZero() {
		if err := r.Quota.Validate(); err != nil {
			return r, fmt.Errorf("%w: plan %q: quota: %w", ErrInvalidRequest, p.Name, err)
		}
		if !charge && int64(r.Cost) > r.Quota.Count {
			return r, fmt.Errorf("%w: cost %d exceeds the quota %s of plan %q", ErrInvalidRequest, r.Cost, r.Quota, p.Name)
		}
	}
	return r, nil
}

// DecisionBuilder assembles a [Decision] from the state of each policy, with
// the rounding every Decider in this module shares. It is for
// implementations of [Decider]: start it with [BuildDecision], add the
// limits in order, then the quota, then call Finish.
type DecisionBuilder struct {
	d *Decision
}

// BuildDecision resets *d to a Decision under the named plan for a request
// of cost at the time at, and returns a builder that fills it in place.
func BuildDecision(d *Decision, plan string, cost int, at time.Time) DecisionBuilder {
	*d = Decision{Plan: plan, Cost: cost, At: at}
	return DecisionBuilder{d}
}

// Limit adds the state of limit l, which had avail units (possibly
// fractional or negative) before this request needed need of them. spent
// says whether need was taken; ok whether the limit admitted the request
// (if not, its RetryAfter is the time until it would). Remaining is
// rounded down and durations up, as in [ratelimit.Decide].
func (b DecisionBuilder) Limit(l ratelimit.Limit, avail, need float64, spent, ok bool) {
	p := &b.d.policies[b.d.n]
	b.d.n++
	p.Limit, p.Window = l, l.Period
	tokens := min(avail, float64(l.BurstSize()))
	if spent {
		tokens -= need
	}
	if !ok {
		p.RetryAfter = max(durationOf(l, need-tokens), 1)
	}
	fillLimitPolicy(p, tokens)
}

// Quota adds the state of quota q with used units used this period (after
// this request, if it spent), in the period [start, end). ok says whether
// the quota admitted the request; if not, RetryAfter is the time to end.
func (b DecisionBuilder) Quota(q Quota, used int64, start, end time.Time, ok bool) {
	p := &b.d.policies[b.d.n]
	b.d.n++
	p.Quota = q
	p.Remaining = max(0, q.Count-used)
	p.Reset = max(end.Sub(b.d.At), 0)
	p.Window = end.Sub(start)
	if !ok {
		p.RetryAfter = max(p.Reset, 1)
	}
	b.d.PeriodStart, b.d.PeriodEnd = start, end
}

// Finish marks the Decision admitted if allowed, or else refused with the
// Refusal and RetryAfter of the policies that refused.
func (b DecisionBuilder) Finish(allowed bool) {
	b.d.finish(allowed)
}

// validLimit is ratelimit.Limit.Validate without the error value.
func validLimit(l ratelimit.Limit) bool {
	return l.Count >= 1 && l.Count <= ratelimit.MaxCount &&
		l.Period >= time.Second && l.Period <= ratelimit.MaxPeriod && l.Period%time.Second == 0 &&
		l.Burst >= 0 && l.Burst <= ratelimit.MaxCount
}
