package plan

import (
	"context"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/apikit/apikit/ratelimit"
)

// Defaults of [MemoryOptions].
const (
	// DefaultMaxIdentities is the number of identities a Memory tracks at
	// most unless MemoryOptions.MaxIdentities says otherwise.
	DefaultMaxIdentities = 100_000
	// DefaultShards is the number of independently locked parts of a
	// Memory.
	DefaultShards = 256
	// DefaultSweepInterval is how often each shard forgets identities that
	// carry no state.
	DefaultSweepInterval = time.Minute
)

// MemoryOptions configures [NewMemory]. The zero value gives the defaults:
// no overrides, quotas kept in memory only.
type MemoryOptions struct {
	// MaxIdentities is the most identities the decider tracks at once; 0
	// means [DefaultMaxIdentities]. The bound is enforced per shard, as in
	// [ratelimit.MemoryOptions].MaxKeys: at a full shard, identities that
	// carry no state are forgotten, and if there are none, the new
	// identity is refused (RateLimited, counted in [Stats].Overflowed)
	// rather than forgetting one that has spent part of its budget. An
	// identity carries state while any of its limits is refilling, and,
	// without a Flusher, while it has used part of its quota this period;
	// with a Flusher its quota is restored from the store, so a spent
	// quota does not pin it.
	MaxIdentities int
	// Shards is the number of independently locked parts, rounded up to a
	// power of two; 0 means [DefaultShards].
	Shards int
	// SweepInterval is how often each shard forgets identities that carry
	// no state; 0 means [DefaultSweepInterval].
	SweepInterval time.Duration
	// Now returns the current time for requests without Request.Now; nil
	// means the system clock (read once, then advanced by the monotonic
	// clock, as in [ratelimit.NewMemory]).
	Now func() time.Time
	// Overrides, if set, replaces a plan's limits or quota for some
	// identities.
	Overrides Overrides
	// Usage, if set, makes quotas durable: admitted usage is recorded in
	// it (written to its store in batches), and an identity's quota
	// counter is restored from it when the decider has none (after a
	// restart, or when the identity was forgotten). Restoring reads the
	// store, once per identity and period; if that fails, Decide returns
	// an error wrapping [ErrUnavailable].
	Usage *Flusher
}

// Memory is a [Decider] that keeps every identity's limits and quota in
// this process: one lock, one map lookup and no allocation per decision
// for an identity already tracked. It suits one server instance; a fleet
// shares budgets with package plan/redisplan.
//
// Limits are token buckets (GCRA), decided with the arithmetic of
// [ratelimit.Decide], so a plan's limit and the same [ratelimit.Limit] in
// a [ratelimit.Memory] agree. A limit's state carries over when the
// identity's plan changes if the new plan has the same limit; the quota's
// used count carries over if the new plan's quota has the same period.
//
// A Memory must be created with [NewMemory]; it is safe for concurrent use.
type Memory struct {
	shards     []memShard
	mask       uint64
	seed       maphash.Seed
	perShard   int
	sweepEvery int64
	now        func() time.Time
	overrides  Overrides
	usage      *Flusher
}

type memShard struct {
	mu            sync.Mutex
	m             map[Identity]*memEntry
	root          memEntry // sentinel of the recency list
	nextSweep     int64
	nextFullSweep int64
	stats         Stats
	_             [32]byte
}

// memEntry is one tracked identity.
type memEntry struct {
	prev, next *memEntry
	id         Identity
	buckets    [MaxLimits]bucket
	nb         int
	q          quotaState
	keepUntil  int64 // Unix ns until which the entry carries state
}

// bucket is one limit's token bucket: tokens at time last (may be
// negative after a Charge).
type bucket struct {
	limit  ratelimit.Limit
	tokens float64
	last   int64
}

// quotaState is the counter of the current quota period.
type quotaState struct {
	period     Period
	anchor     int64 // Unix ns of the anchor, 0 for none
	start, end int64 // Unix ns
	used       int64
}

var _ Decider = (*Memory)(nil)

// NewMemory returns a Memory configured by opts. It panics, with a message
// starting "plan: ", if an option is negative.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxIdentities < 0 || opts.Shards < 0 || opts.SweepInterval < 0 {
		panic("plan: MemoryOptions.MaxIdentities, Shards and SweepInterval must not be negative")
	}
	if opts.MaxIdentities == 0 {
		opts.MaxIdentities = DefaultMaxIdentities
	}
	if opts.Shards == 0 {
		opts.Shards = DefaultShards
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.Now == nil {
		start := time.Now()
		opts.Now = func() time.Time { return start.Add(time.Since(start)) }
	}
	n := 1 << bits.Len(uint(opts.Shards-1))
	for n > 1 && n > opts.MaxIdentities {
		n >>= 1
	}
	m := &Memory{
		shards:     make([]memShard, n),
		mask:       uint64(n - 1),
		seed:       maphash.MakeSeed(),
		perShard:   opts.MaxIdentities / n,
		sweepEvery: int64(opts.SweepInterval),
		now:        opts.Now,
		overrides:  opts.Overrides,
		usage:      opts.Usage,
	}
	for i := range m.shards {
		s := &m.shards[i]
		s.m = make(map[Identity]*memEntry)
		s.root.prev, s.root.next = &s.root, &s.root
	}
	return m
}

// Decide implements [Decider]. It blocks only on a short in-memory lock,
// except to restore a quota counter it does not hold (see
// MemoryOptions.Usage).
func (m *Memory) Decide(ctx context.Context, req Request) (d Decision, err error) {
	err = m.decide(ctx, &req, modeDecide, &d)
	return d, err
}

// Charge implements [Decider].
func (m *Memory) Charge(ctx context.Context, req Request) (d Decision, err error) {
	err = m.decide(ctx, &req, modeCharge, &d)
	return d, err
}

// Peek implements [Decider]. It does not start tracking an identity it
// does not hold, and counts nothing in [Memory.Stats].
func (m *Memory) Peek(ctx context.Context, req Request) (d Decision, err error) {
	err = m.decide(ctx, &req, modePeek, &d)
	return d, err
}

// mode is what Memory.decide does.
type mode uint8

const (
	modeDecide mode = iota
	modeCharge
	modePeek
)

func (m *Memory) decide(ctx context.Context, req *Request, mode mode, d *Decision) error {
	charge := mode == modeCharge
	r, err := Resolve(req, m.overrides, charge)
	s := &m.shards[(maphash.String(m.seed, r.Identity.ID)+uint64(r.Identity.Budget))&m.mask]
	if err != nil {
		if mode != modePeek {
			s.mu.Lock()
			s.stats.Errors++
			s.mu.Unlock()
		}
		return err
	}
	var anchor int64
	if !req.Anchor.IsZero() {
		anchor = req.Anchor.UnixNano()
	}
	restored, haveRestored := int64(0), false
	var rStart int64
	s.mu.Lock()
	for {
		now := req.Now
		if now.IsZero() {
			now = m.now()
		}
		ns := now.UnixNano()
		if ns >= s.nextSweep {
			s.sweep(ns)
			s.nextSweep = ns + m.sweepEvery
		}
		e := s.m[r.Identity]
		if e == nil && mode == modePeek {
			e = &memEntry{id: r.Identity} // a stand-in, not tracked
		} else if e == nil {
			if e = s.add(r.Identity, ns, m.perShard); e == nil {
				s.stats.Overflowed++
				s.stats.Limited++
				s.mu.Unlock()
				overflowDecision(req, &r, now, d)
				return nil
			}
		} else if mode != modePeek {
			s.moveToFront(e)
		}
		if !r.Quota.IsZero() && !e.q.holds(r.Quota.Period, anchor, ns) {
			start, end := r.Quota.Period.Bounds(now, req.Anchor)
			q := quotaState{period: r.Quota.Period, anchor: anchor, start: start.UnixNano(), end: end.UnixNano()}
			if e.q.period == q.period && e.q.start == q.start {
				e.q.anchor, e.q.end = q.anchor, q.end // the same counter
			} else if m.usage == nil {
				e.q = q
			} else if haveRestored && rStart == q.start {
				q.used = restored
				e.q = q
			} else {
				// Restore the counter from the store, without the lock.
				s.mu.Unlock()
				n, err := m.usage.Restore(ctx, r.Identity, q.period, start)
				s.mu.Lock()
				if err != nil {
					if mode != modePeek {
						s.stats.Errors++
					}
					s.mu.Unlock()
					return err
				}
				restored, haveRestored, rStart = n, true, q.start
				continue // the shard may have changed meanwhile
			}
		}
		m.apply(e, &r, req, mode, now, ns, d)
		if mode != modePeek {
			s.stats.count(d)
		}
		s.mu.Unlock()
		return nil
	}
}

// holds reports whether q is the counter of the period of p with anchor
// that contains ns.
func (q *quotaState) holds(p Period, anchor, ns int64) bool {
	return q.period == p && q.anchor == anchor && q.start <= ns && ns < q.end
}

// apply decides for e and spends. The shard's lock must be held.
func (m *Memory) apply(e *memEntry, r *Resolved, req *Request, mode mode, now time.Time, ns int64, d *Decision) {
	charge := mode == modeCharge
	e.setLimits(r.Limits, ns)
	cost := float64(r.Cost)
	var avail [MaxLimits]float64
	var ok [MaxLimits + 1]bool
	allowed := true
	for i := 0; i < e.nb; i++ {
		avail[i] = e.buckets[i].at(ns)
		ok[i] = charge || avail[i] >= cost
		allowed = allowed && ok[i]
	}
	hasQuota := !r.Quota.IsZero()
	quotaOK := charge || !hasQuota || e.q.used+int64(r.Cost) <= r.Quota.Count
	allowed = allowed && quotaOK
	spend := charge || allowed && !req.Deferred && mode != modePeek
	b := BuildDecision(d, req.Plan.Name, r.Cost, now)
	var keep int64
	for i := 0; i < e.nb; i++ {
		bk := &e.buckets[i]
		if spend {
			bk.tokens, bk.last = avail[i]-cost, ns
		}
		b.Limit(bk.limit, avail[i], cost, spend, ok[i])
		keep = max(keep, ns+int64(durationOf(bk.limit, float64(bk.limit.BurstSize())-bk.at(ns))))
	}
	if hasQuota {
		if spend {
			e.q.used += int64(r.Cost)
			if m.usage != nil {
				m.usage.Record(r.Identity, e.q.period, time.Unix(0, e.q.start), int64(r.Cost))
			}
		}
		b.Quota(r.Quota, e.q.used, time.Unix(0, e.q.start).UTC(), time.Unix(0, e.q.end).UTC(), quotaOK)
		if e.q.used != 0 && m.usage == nil {
			keep = max(keep, e.q.end)
		}
	}
	e.keepUntil = keep
	b.Finish(allowed || charge)
}

// setLimits makes e's buckets those of limits, in order, carrying over the
// state of a limit e already has.
func (e *memEntry) setLimits(limits []ratelimit.Limit, ns int64) {
	same := e.nb == len(limits)
	for i := 0; same && i < e.nb; i++ {
		same = e.buckets[i].limit == limits[i]
	}
	if same {
		return
	}
	var nb [MaxLimits]bucket
	for i, l := range limits {
		nb[i] = bucket{limit: l, tokens: float64(l.BurstSize()), last: ns}
		for j := 0; j < e.nb; j++ {
			if e.buckets[j].limit == l {
				nb[i] = e.buckets[j]
			}
		}
	}
	e.buckets, e.nb = nb, len(limits)
}

// at returns the tokens in b at ns: refilled at the limit's rate, up to
// its burst.
func (b *bucket) at(ns int64) float64 {
	burst := float64(b.limit.BurstSize())
	t := b.tokens
	if ns > b.last {
		t += float64(ns-b.last) * float64(b.limit.Count) / float64(b.limit.Period)
	}
	return min(t, burst)
}

// fillLimitPolicy sets a limit's Remaining and Reset for tokens left,
// rounding as [ratelimit.Decide] does.
func fillLimitPolicy(p *Policy, tokens float64) {
	p.Remaining = int64(math.Floor(max(tokens, 0) + 1e-9))
	p.Reset = durationOf(p.Limit, float64(p.Limit.BurstSize())-tokens)
}

// durationOf returns how long tokens take to come back at l's rate,
// rounded up to the nanosecond, as ratelimit does.
func durationOf(l ratelimit.Limit, tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(tokens * float64(l.Period) / float64(l.Count)))
}

// overflowDecision refuses a request the decider has no room to track, as
// if every limit were empty.
func overflowDecision(req *Request, r *Resolved, now time.Time, d *Decision) {
	b := BuildDecision(d, req.Plan.Name, r.Cost, now)
	for _, l := range r.Limits {
		b.Limit(l, 0, float64(r.Cost), false, false)
	}
	b.Finish(false)
}

// Stats is a snapshot of a decider's counters. The zero Stats is a decider
// that has decided nothing.
type Stats struct {
	// Allowed counts admitted requests (and charges); RateLimited and
	// QuotaExceeded the refused ones, by Refusal.
	Allowed, RateLimited, QuotaExceeded uint64
	// Limited is RateLimited + QuotaExceeded.
	Limited uint64
	// Errors counts calls that returned an error, or failed open.
	Errors uint64
	// FailedOpen counts backend failures answered by admitting (a subset
	// of Errors).
	FailedOpen uint64
	// Identities is the number of identities held in memory.
	Identities int
	// Expired counts identities forgotten because they carried no state.
	Expired uint64
	// Overflowed counts requests refused because the decider was full
	// (counted in Limited and RateLimited too).
	Overflowed uint64
}

func (st *Stats) count(d *Decision) {
	switch d.Refusal {
	case NotRefused:
		st.Allowed++
	case RateLimited:
		st.RateLimited++
		st.Limited++
	case QuotaExceeded:
		st.QuotaExceeded++
		st.Limited++
	}
}

// Stats returns a snapshot of m's counters.
func (m *Memory) Stats() Stats {
	var st Stats
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		st.Allowed += s.stats.Allowed
		st.RateLimited += s.stats.RateLimited
		st.QuotaExceeded += s.stats.QuotaExceeded
		st.Limited += s.stats.Limited
		st.Errors += s.stats.Errors
		st.Expired += s.stats.Expired
		st.Overflowed += s.stats.Overflowed
		st.Identities += len(s.m)
		s.mu.Unlock()
	}
	return st
}

// add tracks a new identity, first forgetting identities without state if
// the shard is full; it returns nil if there is no room.
func (s *memShard) add(id Identity, ns int64, capacity int) *memEntry {
	if len(s.m) >= capacity {
		if lru := s.root.prev; lru != &s.root && lru.keepUntil <= ns {
			s.remove(lru)
			s.stats.Expired++
		} else if ns >= s.nextFullSweep {
			s.sweep(ns)
			s.nextFullSweep = ns + int64(time.Second)
		}
		if len(s.m) >= capacity {
			return nil
		}
	}
	e := &memEntry{id: Identity{id.Budget, cloneString(id.ID)}}
	s.m[e.id] = e
	s.pushFront(e)
	return e
}

// cloneString copies s, so that the map does not keep alive a larger
// string it was cut from.
func cloneString(s string) string { return string([]byte(s)) }

func (s *memShard) sweep(ns int64) {
	root := &s.root
	for e := root.next; e != root; {
		next := e.next
		if e.keepUntil <= ns {
			s.remove(e)
			s.stats.Expired++
		}
		e = next
	}
}

func (s *memShard) pushFront(e *memEntry) {
	root := &s.root
	e.prev, e.next = root, root.next
	root.next.prev = e
	root.next = e
}

func (s *memShard) moveToFront(e *memEntry) {
	if s.root.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	s.pushFront(e)
}

func (s *memShard) remove(e *memEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(s.m, e.id)
}
