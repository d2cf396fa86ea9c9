// Package redisplan is a [plan.Decider] that keeps budgets in Redis, so
// that every instance of a server fleet enforces one budget per identity:
// the three keys of a user on a per-user plan share one budget whichever
// instance serves them.
//
// Each decision is one Lua script run with EVALSHA: one round trip that
// checks every limit (GCRA, as package ratelimit/redislimit) and the quota
// of the request, and spends the cost from all of them only if all admit
// it. An identity's state is one string, Prefix + "{user:42}:s", read
// once (GET) and written once (SET with its expiry) per decision: packed
// doubles (Lua's struct library) with each limit's theoretical arrival
// time, in whole microseconds, and the quota's count with the period it
// counts. It expires when its buckets are full again and its quota's
// period is over. The braces are a hash tag, so that a Redis Cluster
// places each identity in one slot. The script of each plan (its limits
// and quota) is generated with the plan's constants in its source, so
// that a decision sends only the mode, the cost, the quota's period and,
// with Options.Now, the time.
//
// Times are whole microseconds and each limit's emission interval is
// rounded down to one (a limit of 3/s admits 3 requests per 0.999999 s);
// a limit over 1,000,000 a second is not enforced in Redis.
//
// When the quota's counter is missing mid-period (Redis restarted or was
// flushed) and the decider has a [plan.Flusher], the counter is restored
// from the usage store before the request is decided: a second round
// trip, once per identity and period.
//
// It is a package of its own so that programs using plans in memory do not
// link the Redis client.
package redisplan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/internal/logthrottle"
	"github.com/apikit/apikit/internal/redisdeadline"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// Defaults of [Options].
const (
	// DefaultPrefix starts every key the Decider writes.
	DefaultPrefix = "apikit:plan:"
	// DefaultTimeout bounds each decision.
	DefaultTimeout = 100 * time.Millisecond
)

// Options configures [New]. The zero value gives the defaults: keys under
// [DefaultPrefix], decisions bounded by [DefaultTimeout], failing open,
// Redis's clock, no overrides, quotas in Redis only, and silent.
type Options struct {
	// Prefix starts every Redis key, so that applications can share one
	// Redis; "" means [DefaultPrefix]. It must not contain '{'. The
	// state of an identity is at Prefix + "{user:42}:s".
	Prefix string
	// Timeout bounds each decision, including waiting for a connection;
	// 0 means [DefaultTimeout]. A decision that takes longer fails (see
	// FailClosed). Give the client ContextTimeoutEnabled: it then gives up
	// at the decision's deadline by itself. A client without it (go-redis
	// then waits for its ReadTimeout, 3 s by default) costs a goroutine
	// per decision, which waits for it in the background.
	Timeout time.Duration
	// FailClosed chooses the decision when Redis fails or times out, as in
	// package ratelimit/redislimit: false (the default) admits the request
	// as if its budgets were full (Decision.FailedOpen, counted in Stats,
	// logged; its quota usage is still recorded in Usage); true returns
	// an error wrapping [plan.ErrUnavailable] (503).
	FailClosed bool
	// Logger receives a warning when Redis fails, at most one a second;
	// nil means no logging.
	Logger *slog.Logger
	// Now, if set, is the clock of every decision, limits included, for
	// tests; nil means Redis's clock for the limits (the servers' clocks
	// then do not matter) and time.Now for the quota's period bounds.
	Now func() time.Time
	// Overrides, if set, replaces a plan's limits or quota for some
	// identities.
	Overrides plan.Overrides
	// Usage, if set, makes quotas durable: admitted usage is recorded in
	// it, and a counter missing from Redis mid-period is restored from it.
	Usage *plan.Flusher
	// Trace, if set, is called as each Redis round trip starts, with its
	// name ([TraceDecide], [TraceCharge] or [TracePeek]), and the function
	// it returns when the round trip ends, with its error: Redis's error
	// (or context.DeadlineExceeded at the timeout) whatever FailClosed then
	// makes of it, so that a trace shows the decisions that failed open. A
	// decision that restores a quota counter makes two round trips, with
	// the store's read between them (traced by
	// [plan.FlusherOptions].Trace). It lets a tracer, such as
	// OpenTelemetry's, time the round trips without this package depending
	// on one; the context it returns is the one the command is sent with.
	// The name carries no identity. nil costs nothing.
	Trace func(ctx context.Context, name string) (context.Context, func(error))
}

// Names of the round trips given to [Options].Trace, by the method that
// makes them.
const (
	TraceDecide = "redisplan.decide"
	TraceCharge = "redisplan.charge"
	TracePeek   = "redisplan.peek"
)

// Decider is a [plan.Decider] over Redis. Deciders with the same Redis and
// Prefix, in one process or many, share each identity's budget. A Decider
// must be created with [New]; it is safe for concurrent use.
type Decider struct {
	client     redis.UniversalClient
	prefix     string
	timeout    time.Duration
	failClosed bool
	log        *slog.Logger
	now        func() time.Time
	overrides  plan.Overrides
	usage      *plan.Flusher
	trace      func(ctx context.Context, name string) (context.Context, func(error))

	direct bool // the client honours context deadlines
	// limits caches each limit's script arguments. It is copied on
	// write, so that reads take no lock and box no key.
	limits    atomic.Pointer[map[ratelimit.Limit]*limitArgs]
	limitsMu  sync.Mutex                // serialises writers of limits
	lastQuota atomic.Pointer[quotaArgs] // of the previous decision with a quota
	// scripts caches the scripts with their constants in the source, by
	// shape, copied on write as limits is.
	scripts   atomic.Pointer[map[shape]*redis.Script]
	scriptsMu sync.Mutex
	maxBaked  int // maxBakedScripts; tests set 0

	allowed, rateLimited, quotaExceeded, errors, failedOpen atomic.Uint64
	warned                                                  logthrottle.Throttle
}

var _ plan.Decider = (*Decider)(nil)

// New returns a Decider over the Redis that client reaches (a
// *redis.Client, *redis.ClusterClient or *redis.Ring; Redis 2.6 or newer).
// It panics, with a message starting "plan: ", if client is nil,
// opts.Timeout is negative or opts.Prefix contains '{'.
func New(client redis.UniversalClient, opts Options) *Decider {
	if client == nil {
		panic("plan: redisplan.New needs a Redis client")
	}
	if opts.Timeout < 0 {
		panic("plan: redisplan.Options.Timeout must not be negative")
	}
	for _, c := range []byte(opts.Prefix) {
		if c == '{' || c == '}' {
			panic("plan: redisplan.Options.Prefix must not contain '{' or '}': the hash tag is the identity's")
		}
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Decider{
		client:     client,
		prefix:     opts.Prefix,
		timeout:    opts.Timeout,
		failClosed: opts.FailClosed,
		log:        opts.Logger,
		now:        opts.Now,
		overrides:  opts.Overrides,
		usage:      opts.Usage,
		trace:      opts.Trace,
		direct:     redisdeadline.Honoured(client),
		maxBaked:   maxBakedScripts,
	}
}

// Decide implements [plan.Decider] with one Redis round trip (two when a
// quota counter is restored). It returns within Options.Timeout, or sooner
// if ctx ends.
func (r *Decider) Decide(ctx context.Context, req plan.Request) (plan.Decision, error) {
	return r.decide(ctx, &req, modeDecide)
}

// Charge implements [plan.Decider] with one Redis round trip.
func (r *Decider) Charge(ctx context.Context, req plan.Request) (plan.Decision, error) {
	return r.decide(ctx, &req, modeCharge)
}

// Peek implements [plan.Decider] with one Redis round trip (two when a
// quota counter is restored). It counts nothing in [Decider.Stats].
func (r *Decider) Peek(ctx context.Context, req plan.Request) (plan.Decision, error) {
	return r.decide(ctx, &req, modePeek)
}

const (
	modeDecide = "d"
	modeAdmit  = "a"
	modeCharge = "c"
	modePeek   = "p" // check req.Cost as "d" does, spend nothing
)

// modeArg returns mode as a script argument, without allocating.
func modeArg(mode string) any {
	switch mode {
	case modeDecide:
		return modeDecide
	case modeAdmit:
		return modeAdmit
	case modeCharge:
		return modeCharge
	}
	return modePeek
}

// call is one decision's inputs, resolved.
type call struct {
	id         plan.Identity
	limits     []ratelimit.Limit
	quota      plan.Quota
	cost       int
	now        time.Time
	start, end time.Time
}

func (r *Decider) decide(ctx context.Context, req *plan.Request, mode string) (plan.Decision, error) {
	if mode == modeDecide && req.Deferred {
		mode = modeAdmit
	}
	c, err := r.resolve(req, mode == modeCharge)
	if err != nil {
		if mode != modePeek {
			r.errors.Add(1)
		}
		return plan.Decision{}, err
	}
	keys := []string{r.prefix + "{" + c.id.Budget.String() + ":" + c.id.ID + "}:s"}
	sh := shape{limits: len(c.limits), quota: !c.quota.IsZero(), clock: r.now != nil || !req.Now.IsZero()}
	var las [plan.MaxLimits]*limitArgs
	for i, l := range c.limits {
		las[i] = r.limitArgs(l)
		sh.ids[i], sh.ivs[i], sh.caps[i] = las[i].id, las[i].iv, las[i].capacity
	}
	if sh.quota {
		sh.count = c.quota.Count
	}
	script := r.scriptFor(&sh)
	args := make([]any, 0, 6+3*plan.MaxLimits+1)
	args = append(args, modeArg(mode), c.cost)
	if sh.clock {
		args = append(args, c.now.UnixMicro())
	}
	baseArg := -1
	var qa *quotaArgs
	if sh.quota {
		qa = r.quotaArgs(c.quota, c.start, c.end)
		base := int64(0)
		if r.usage != nil {
			base = -1 // unknown: the script asks for it if the counter is missing
		}
		args = append(args, qa.period, qa.endMicros, base)
		baseArg = len(args) - 1
	}
	if !sh.baked {
		for _, la := range las[:len(c.limits)] {
			args = append(args, la.idArg, la.ivArg, la.capArg)
		}
		if sh.quota {
			args = append(args, qa.count)
		}
	}
	res, err := r.run(ctx, mode, script, keys, args)
	if err == nil && len(res) == 1 && baseArg >= 0 {
		// The quota counter is missing: restore it from the store and
		// run again.
		n, rerr := r.usage.Restore(ctx, c.id, c.quota.Period, c.start)
		if rerr != nil {
			return r.fail(ctx, req, &c, mode, rerr)
		}
		args[baseArg] = n
		res, err = r.run(ctx, mode, script, keys, args)
	}
	if err == nil && len(res) != 2+len(c.limits) {
		err = fmt.Errorf("unexpected reply from the script: %v", res)
	}
	if err != nil {
		return r.fail(ctx, req, &c, mode, err)
	}
	d := r.decision(req, &c, mode, res)
	if mode == modePeek {
		return d, nil
	}
	switch d.Refusal {
	case plan.NotRefused:
		r.allowed.Add(1)
		if mode != modeAdmit && !c.quota.IsZero() && r.usage != nil {
			r.usage.Record(c.id, c.quota.Period, c.start, int64(c.cost))
		}
	case plan.RateLimited:
		r.rateLimited.Add(1)
	case plan.QuotaExceeded:
		r.quotaExceeded.Add(1)
	}
	return d, nil
}

// resolve checks the request, applies its override and computes the
// quota's period.
func (r *Decider) resolve(req *plan.Request, charge bool) (call, error) {
	res, err := plan.Resolve(req, r.overrides, charge)
	if err != nil {
		return call{}, err
	}
	c := call{id: res.Identity, limits: res.Limits, quota: res.Quota, cost: res.Cost, now: req.Now}
	if c.now.IsZero() {
		if r.now != nil {
			c.now = r.now()
		} else {
			c.now = time.Now()
		}
	}
	if !c.quota.IsZero() {
		c.start, c.end = c.quota.Period.Bounds(c.now, req.Anchor)
	}
	return c, nil
}

// intervalMicros is the whole microseconds one unit of l takes to come
// back, rounded down: 0 for limits over 1,000,000 a second, which Redis
// then does not enforce.
func intervalMicros(l ratelimit.Limit) int64 {
	return int64(l.Period/time.Microsecond) / int64(l.Count)
}

// maxCachedLimits bounds the cache of limits' script arguments.
const maxCachedLimits = 1024

// limitArgs are a limit's constants in the script, and its arguments
// boxed once.
type limitArgs struct {
	id       int64 // limitID of the limit's text, so that its state carries over to a new plan with the same limit
	iv       int64 // intervalMicros
	capacity int64 // the burst times the interval

	idArg, ivArg, capArg any
}

// quotaArgs are a quota period's arguments to the script, boxed once.
type quotaArgs struct {
	quota      plan.Quota
	start, end time.Time
	count      any // the quota's count
	period     any // the period's id: limitID of its name, "month:" and its start in Unix seconds
	endMicros  any // the period's end in microseconds
}

// quotaArgs returns the arguments of quota q in the period [start, end),
// reusing those of the previous decision when they are the same (as
// they are for most requests).
func (r *Decider) quotaArgs(q plan.Quota, start, end time.Time) *quotaArgs {
	if qa := r.lastQuota.Load(); qa != nil && qa.quota == q && qa.start.Equal(start) && qa.end.Equal(end) {
		return qa
	}
	qa := &quotaArgs{
		quota: q, start: start, end: end,
		count:     q.Count,
		period:    limitID(q.Period.String() + ":" + strconv.FormatInt(start.Unix(), 10)),
		endMicros: end.UnixMicro(),
	}
	r.lastQuota.Store(qa)
	return qa
}

// limitArgs returns l's arguments, from the cache if they are there.
func (r *Decider) limitArgs(l ratelimit.Limit) *limitArgs {
	if m := r.limits.Load(); m != nil {
		if la := (*m)[l]; la != nil {
			return la
		}
	}
	iv := intervalMicros(l)
	la := &limitArgs{id: limitID(l.String()), iv: iv, capacity: iv * int64(l.BurstSize())}
	la.idArg, la.ivArg, la.capArg = la.id, la.iv, la.capacity
	r.limitsMu.Lock()
	defer r.limitsMu.Unlock()
	old := r.limits.Load()
	if old != nil && len(*old) >= maxCachedLimits {
		return la
	}
	m := make(map[ratelimit.Limit]*limitArgs, 1)
	if old != nil {
		m = maps.Clone(*old)
	}
	m[l] = la
	r.limits.Store(&m)
	return la
}

// maxBakedScripts bounds the scripts a Decider generates with their
// constants in the source (and so the scripts it loads into Redis): one
// per distinct set of limits and quota, that is per plan and override.
// Other shapes run a script that takes the constants as arguments.
const maxBakedScripts = 64

// generic holds the scripts that take their constants as arguments, by
// number of limits, quota and clock, generated when first used.
var generic [plan.MaxLimits + 1][2][2]struct {
	once sync.Once
	s    *redis.Script
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// scriptFor returns the script of shape s, with its constants in the
// source if the cache has room (setting s.baked), else the generic one.
func (r *Decider) scriptFor(s *shape) *redis.Script {
	s.baked = true
	if m := r.scripts.Load(); m != nil {
		if sc := (*m)[*s]; sc != nil {
			return sc
		}
	}
	r.scriptsMu.Lock()
	defer r.scriptsMu.Unlock()
	old := r.scripts.Load()
	if old != nil {
		if sc := (*old)[*s]; sc != nil {
			return sc
		}
	}
	n := 0
	if old != nil {
		n = len(*old)
	}
	if n < r.maxBaked {
		sc := newScript(*s)
		m := make(map[shape]*redis.Script, 1)
		if old != nil {
			m = maps.Clone(*old)
		}
		m[*s] = sc
		r.scripts.Store(&m)
		return sc
	}
	s.baked = false
	g := shape{limits: s.limits, quota: s.quota, clock: s.clock}
	e := &generic[g.limits][boolIndex(g.quota)][boolIndex(g.clock)]
	e.once.Do(func() { e.s = newScript(g) })
	return e.s
}

// decision builds the Decision from the script's reply: {flags, used,
// wait1, wait2, ...} where flags has bit 0 set if the request is admitted
// and bit i if limit i admits it, wait is the microseconds until the
// limit's bucket was full (before spending), and used the quota's units
// used (after spending).
func (r *Decider) decision(req *plan.Request, c *call, mode string, res []any) plan.Decision {
	flags := asInt(res[0])
	allowed := flags&1 == 1
	used := asInt(res[1])
	spend := mode == modeCharge || allowed && mode == modeDecide
	cost := float64(c.cost)
	var d plan.Decision
	b := plan.BuildDecision(&d, req.Plan.Name, c.cost, c.now)
	for i, l := range c.limits {
		ok := flags&(2<<i) != 0
		avail := float64(l.BurstSize())
		if iv := float64(intervalMicros(l)); iv > 0 {
			avail -= float64(asInt(res[2+i])) / iv
			// Snap to a whole unit what is within 2µs of one, and
			// agree with Redis's verdict.
			if whole := math.Round(avail); math.Abs(avail-whole)*iv < 2 {
				avail = whole
			}
		}
		need := cost
		if mode == modeAdmit {
			need = 1
		}
		if ok {
			avail = max(avail, need)
		} else if mode != modeCharge {
			avail = min(avail, math.Nextafter(need, 0))
		}
		b.Limit(l, avail, need, spend, ok)
	}
	if !c.quota.IsZero() {
		quotaOK := mode == modeCharge || used+int64(c.cost) <= c.quota.Count
		if mode == modeAdmit {
			quotaOK = used < c.quota.Count
		}
		if spend {
			quotaOK = true
		}
		b.Quota(c.quota, used, c.start, c.end, quotaOK)
	}
	b.Finish(allowed || mode == modeCharge)
	return d
}

// run runs the script within the timeout, inside Options.Trace if there
// is one.
func (r *Decider) run(ctx context.Context, mode string, script *redis.Script, keys []string, args []any) ([]any, error) {
	if r.trace == nil {
		return r.runTimeout(ctx, script, keys, args)
	}
	name := TraceDecide
	switch mode {
	case modeCharge:
		name = TraceCharge
	case modePeek:
		name = TracePeek
	}
	ctx, end := r.trace(ctx, name)
	res, err := r.runTimeout(ctx, script, keys, args)
	end(err)
	return res, err
}

// runTimeout runs the script within the timeout. A client that honours
// context deadlines (ContextTimeoutEnabled) is trusted to return at the
// deadline; for another, the command runs on a goroutine of its own, so
// that the decision still ends at the timeout.
func (r *Decider) runTimeout(ctx context.Context, script *redis.Script, keys []string, args []any) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if r.direct {
		return script.Run(ctx, r.client, keys, args...).Slice()
	}
	return redisdeadline.Wait(ctx, func() ([]any, error) {
		return script.Run(ctx, r.client, keys, args...).Slice()
	})
}

func (r *Decider) fail(ctx context.Context, req *plan.Request, c *call, mode string, err error) (plan.Decision, error) {
	var failures uint64
	if mode != modePeek {
		failures = r.errors.Add(1)
	}
	if ctx.Err() != nil {
		return plan.Decision{}, ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer from Redis within %v", r.timeout)
	}
	if r.log != nil {
		if r.warned.Allow() {
			policy := "failing open"
			if r.failClosed {
				policy = "failing closed"
			}
			r.log.LogAttrs(ctx, slog.LevelWarn, "plan: Redis failed; "+policy,
				slog.String("error", err.Error()), slog.String("identity", c.id.String()), slog.Uint64("failures", failures))
		}
	}
	if r.failClosed {
		if errors.Is(err, plan.ErrUnavailable) {
			return plan.Decision{}, err
		}
		return plan.Decision{}, fmt.Errorf("%w: %w", plan.ErrUnavailable, err)
	}
	if mode != modePeek {
		r.failedOpen.Add(1)
		r.allowed.Add(1)
	}
	spend := mode == modeDecide || mode == modeCharge
	var d plan.Decision
	b := plan.BuildDecision(&d, req.Plan.Name, c.cost, c.now)
	for _, l := range c.limits {
		b.Limit(l, float64(l.BurstSize()), float64(c.cost), spend, true)
	}
	if !c.quota.IsZero() {
		used := int64(0)
		if spend {
			used = int64(c.cost)
			if r.usage != nil {
				r.usage.Record(c.id, c.quota.Period, c.start, used)
			}
		}
		b.Quota(c.quota, used, c.start, c.end, true)
	}
	b.Finish(true)
	d.FailedOpen = true
	return d, nil
}

// Stats returns a snapshot of r's counters. Identities, Expired and
// Overflowed are 0: the state is in Redis, where it expires.
func (r *Decider) Stats() plan.Stats {
	st := plan.Stats{
		Allowed:       r.allowed.Load(),
		RateLimited:   r.rateLimited.Load(),
		QuotaExceeded: r.quotaExceeded.Load(),
		Errors:        r.errors.Load(),
		FailedOpen:    r.failedOpen.Load(),
	}
	st.Limited = st.RateLimited + st.QuotaExceeded
	return st
}

func asInt(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}
