package plan

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/apikit/apikit/ratelimit"
)

// MaxLimits is the most rate limits one [Plan] (or [Override]) may have. It
// keeps a [Decision] a fixed-size value that is decided without allocating.
const MaxLimits = 4

// ErrInvalidPlan is wrapped by every error of [NewCatalog], [Plan.Validate]
// and [ReadCatalog] about a plan's contents.
var ErrInvalidPlan = errors.New("plan: invalid plan")

// Budget says whose budget a plan's limits and quota are: each API key's
// own, or one shared by all the keys of a user.
type Budget uint8

const (
	// PerUser shares one budget between all the keys of a user, so that a
	// customer cannot multiply the plan by creating keys. It is the zero
	// Budget, and what a plan file means when it omits "budget".
	PerUser Budget = iota
	// PerKey gives every API key a budget of its own.
	PerKey
)

// String returns "user" or "key", as in a plan file.
func (b Budget) String() string {
	switch b {
	case PerUser:
		return "user"
	case PerKey:
		return "key"
	}
	return fmt.Sprintf("Budget(%d)", uint8(b))
}

// ParseBudget parses "user" or "key".
func ParseBudget(s string) (Budget, error) {
	switch s {
	case "user":
		return PerUser, nil
	case "key":
		return PerKey, nil
	}
	return 0, fmt.Errorf("%q is not \"user\" or \"key\"", s)
}

// Plan is what a customer may use: the scopes their keys may be granted,
// the rate limits and the quota their requests are decided against, and
// whether their usage is billed by the unit. Plans are data: declare them
// in Go or load them with [ReadCatalog], and collect them in a [Catalog],
// which validates them.
//
// A Plan is a plain value; the [Catalog] keeps its own copy, so changing a
// Plan after NewCatalog changes nothing. The zero Plan is invalid (it has
// no name and no limit).
type Plan struct {
	// Name identifies the plan: 1 to 64 letters, digits, '-', '_' or '.'.
	// It is shown to customers (in quota-exceeded responses) and stored.
	Name string
	// Prices are the Stripe price ids whose subscription grants the plan.
	// A plan with no prices is the free plan, for users without an active
	// subscription; a Catalog has at most one.
	Prices []string
	// Scopes are the scopes keys on this plan may be granted.
	Scopes []string
	// Limits are the plan's rate limits, 1 to [MaxLimits], all enforced
	// together: a request is admitted only if every limit admits it. Each
	// is named by its [ratelimit.Limit.String] in the RateLimit headers, so
	// no two may be equal.
	Limits []ratelimit.Limit
	// Quota is the number of requests (or, with weighted costs, units) the
	// plan allows per period; the zero Quota means none.
	Quota Quota
	// Budget says whether the limits and the quota are per user (shared by
	// all of a user's keys, the zero value) or per key.
	Budget Budget
	// Metered marks a plan whose usage is billed by the unit (reported to
	// Stripe as meter events); it changes no decision.
	Metered bool
	// MeterEvent is the event name of the Stripe Billing Meter that a
	// metered plan's usage is reported to (the meter's event_name, such as
	// "api_requests"): at most [MaxMeterEventLen] bytes of printable UTF-8
	// without spaces. It may be set only when Metered is; empty on a metered plan
	// means the application's default meter, so that plans declared before
	// this field keep their meaning. A plan file names it as "meter_event".
	MeterEvent string
}

// MaxMeterEventLen is the length in bytes of the longest
// [Plan].MeterEvent, Stripe's limit for a meter's event name.
const MaxMeterEventLen = 100

// MeterEventOr returns p's meter event name, or def if p names none. It is
// for applications with a default meter.
func (p *Plan) MeterEventOr(def string) string {
	if p.MeterEvent != "" {
		return p.MeterEvent
	}
	return def
}

// IsFree reports whether p is granted without a subscription: it has no
// prices.
func (p *Plan) IsFree() bool { return len(p.Prices) == 0 }

// HasScope reports whether p grants scope.
func (p *Plan) HasScope(scope string) bool {
	for _, s := range p.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// Validate reports the first thing wrong with p, as an error wrapping
// [ErrInvalidPlan] that names the field ("limits[1]: ..."), or nil. It
// checks p alone; [NewCatalog] also checks that names and prices are unique.
func (p *Plan) Validate() error {
	if err := p.validate(); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalidPlan, p.Name, err)
	}
	return nil
}

// fieldError is a problem with one field of a plan; its text starts with
// the field's name.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func fieldErr(field, format string, args ...any) error {
	return &fieldError{field, fmt.Errorf(format, args...)}
}

func (p *Plan) validate() error {
	if err := validName(p.Name); err != nil {
		return &fieldError{"name", err}
	}
	for i, price := range p.Prices {
		if price == "" || strings.TrimSpace(price) != price {
			return fieldErr(fmt.Sprintf("prices[%d]", i), "%q is not a price id", price)
		}
		for _, q := range p.Prices[:i] {
			if q == price {
				return fieldErr(fmt.Sprintf("prices[%d]", i), "%q is listed twice", price)
			}
		}
	}
	for i, s := range p.Scopes {
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fieldErr(fmt.Sprintf("scopes[%d]", i), "%q is not a scope (empty, or contains spaces or control characters)", s)
		}
		for _, q := range p.Scopes[:i] {
			if q == s {
				return fieldErr(fmt.Sprintf("scopes[%d]", i), "%q is listed twice", s)
			}
		}
	}
	if err := validLimits(p.Limits); err != nil {
		return err
	}
	if !p.Quota.IsZero() {
		if err := p.Quota.Validate(); err != nil {
			return &fieldError{"quota", err}
		}
	}
	if p.Budget != PerUser && p.Budget != PerKey {
		return fieldErr("budget", "%v is not PerUser or PerKey", p.Budget)
	}
	if p.MeterEvent != "" {
		if !p.Metered {
			return fieldErr("meter_event", "%q is set, but the plan is not metered", p.MeterEvent)
		}
		if err := validMeterEvent(p.MeterEvent); err != nil {
			return &fieldError{"meter_event", err}
		}
	}
	return nil
}

func validMeterEvent(name string) error {
	if len(name) > MaxMeterEventLen {
		return fmt.Errorf("%q is longer than %d bytes", name, MaxMeterEventLen)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f || r == utf8.RuneError }) {
		return fmt.Errorf("%q is not a meter event name (contains spaces, control characters or invalid UTF-8)", name)
	}
	return nil
}

func validLimits(limits []ratelimit.Limit) error {
	if len(limits) == 0 || len(limits) > MaxLimits {
		return fieldErr("limits", "a plan has 1 to %d limits, not %d", MaxLimits, len(limits))
	}
	for i, l := range limits {
		if err := l.Validate(); err != nil {
			return &fieldError{fmt.Sprintf("limits[%d]", i), err}
		}
		for _, m := range limits[:i] {
			if m == l {
				return fieldErr(fmt.Sprintf("limits[%d]", i), "%s is listed twice", l)
			}
		}
	}
	return nil
}

func validName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("a name is 1 to 64 characters")
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q has a character other than letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// clone returns a deep copy of p, with nil for empty lists.
func (p Plan) clone() Plan {
	p.Prices = cloneSlice(p.Prices)
	p.Scopes = cloneSlice(p.Scopes)
	p.Limits = cloneSlice(p.Limits)
	return p
}

func cloneSlice[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}

// Catalog is a validated set of plans: every plan valid, names and prices
// unique, at most one free plan. A Catalog never changes after
// [NewCatalog], so it is safe for concurrent use; the plans it returns
// must not be modified. To change plans, build a new Catalog.
type Catalog struct {
	plans   []*Plan
	byName  map[string]*Plan
	byPrice map[string]*Plan
	free    *Plan
}

// NewCatalog validates plans and returns them as a Catalog, in the order
// given. Its error wraps [ErrInvalidPlan] and names the plan and the field,
// as in `plan: invalid plan: plans[1].quota (plan "hobby"): ...`.
func NewCatalog(plans ...Plan) (*Catalog, error) {
	c := &Catalog{
		byName:  make(map[string]*Plan, len(plans)),
		byPrice: make(map[string]*Plan),
	}
	for i := range plans {
		p := plans[i].clone()
		fail := func(err error) (*Catalog, error) {
			field, why := "", err
			if fe, ok := err.(*fieldError); ok {
				field, why = "."+fe.field, fe.err
			}
			return nil, fmt.Errorf("%w: plans[%d]%s (plan %q): %w", ErrInvalidPlan, i, field, p.Name, why)
		}
		if err := p.validate(); err != nil {
			return fail(err)
		}
		if other, dup := c.byName[p.Name]; dup {
			return fail(fieldErr("name", "%q is also the name of plans[%d]", p.Name, c.index(other)))
		}
		for j, price := range p.Prices {
			if other, dup := c.byPrice[price]; dup {
				return fail(fieldErr(fmt.Sprintf("prices[%d]", j), "%q also grants plan %q", price, other.Name))
			}
		}
		if p.IsFree() && c.free != nil {
			return fail(fieldErr("prices", "none, so the plan is free, but plan %q is free already; a catalog has at most one free plan", c.free.Name))
		}
		pp := &p
		c.plans = append(c.plans, pp)
		c.byName[p.Name] = pp
		for _, price := range p.Prices {
			c.byPrice[price] = pp
		}
		if p.IsFree() {
			c.free = pp
		}
	}
	return c, nil
}

// MustCatalog is like [NewCatalog] but panics on invalid plans. It is for
// plans declared in the program's source.
func MustCatalog(plans ...Plan) *Catalog {
	c, err := NewCatalog(plans...)
	if err != nil {
		panic(err)
	}
	return c
}

func (c *Catalog) index(p *Plan) int {
	for i, q := range c.plans {
		if q == p {
			return i
		}
	}
	return -1
}

// Plan returns the plan named name.
func (c *Catalog) Plan(name string) (*Plan, bool) {
	p, ok := c.byName[name]
	return p, ok
}

// ForPrice returns the plan that the Stripe price priceID grants.
func (c *Catalog) ForPrice(priceID string) (*Plan, bool) {
	p, ok := c.byPrice[priceID]
	return p, ok
}

// Free returns the free plan (the one with no prices), if there is one: the
// plan of users without an active subscription. Without one, such users
// get no plan (the API answers 403).
func (c *Catalog) Free() (*Plan, bool) { return c.free, c.free != nil }

// Plans returns the plans in the order they were declared. The slice is
// the caller's; the plans are shared and must not be modified.
func (c *Catalog) Plans() []*Plan { return append([]*Plan(nil), c.plans...) }

// Len returns the number of plans.
func (c *Catalog) Len() int { return len(c.plans) }
