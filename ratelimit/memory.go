package ratelimit

import (
	"context"
	"hash/maphash"
	"math/bits"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of [MemoryOptions].
const (
	// DefaultMaxKeys is the number of keys a Memory tracks at most unless
	// MemoryOptions.MaxKeys says otherwise: about 22 MB at the measured
	// cost of a key (see [Memory]), enough for 100,000 clients active
	// within one refill period.
	DefaultMaxKeys = 100_000
	// DefaultShards is the number of independently locked parts of a Memory.
	DefaultShards = 256
	// DefaultSweepInterval is how often each shard forgets its idle keys.
	DefaultSweepInterval = time.Minute
)

// MemoryOptions configures [NewMemory]. The zero value gives the defaults.
type MemoryOptions struct {
	// MaxKeys is the most keys the limiter tracks at once; 0 means
	// [DefaultMaxKeys]. The bound is enforced per shard (MaxKeys/Shards
	// each, at least 1), so a shard may be full slightly before the limiter
	// holds MaxKeys keys, and the limiter never holds more. When a key
	// arrives at a full shard, the shard forgets keys whose bucket has
	// refilled (they carry no information); if none has, the new key is
	// refused (fail closed, counted in [Stats].Overflowed) rather than
	// forgetting a key that has spent part of its quota, which would let
	// anyone who can send many distinct keys reset other clients' limits.
	// Size MaxKeys above the number of keys active within one refill
	// period.
	MaxKeys int
	// Shards is the number of independently locked parts the keys are
	// spread over, rounded up to a power of two; 0 means [DefaultShards].
	// More shards mean less lock contention between concurrent requests.
	Shards int
	// SweepInterval is how often each shard drops the keys whose bucket has
	// refilled (counted in [Stats].Expired); 0 means
	// [DefaultSweepInterval]. A shard sweeps during the first call it gets
	// once the interval has passed, so no goroutine needs stopping; a
	// shard that gets no calls does not grow either.
	SweepInterval time.Duration
	// Now returns the current time; nil means the system's monotonic clock
	// (time.Now without the wall clock reading, which costs as much again).
	// Tests set it to control the clock.
	Now func() time.Time
}

// Memory is a [Limiter] that keeps each key's token bucket (a
// golang.org/x/time/rate.Limiter) in this process. It suits a single server
// instance; a fleet that must share one limit needs a shared store (see
// package ratelimit/redislimit).
//
// Keys are spread over shards, each with its own lock, so concurrent
// requests for different keys rarely wait for one another. A key whose
// bucket has refilled is the same as an unknown key, so it is forgotten at
// the next sweep; and the number of keys is capped by MemoryOptions.MaxKeys,
// so a flood of distinct keys (such as spoofed addresses) cannot grow memory
// without bound, nor make the limiter forget a key that has spent part of
// its quota: at a full shard, new keys are refused until tracked ones have
// refilled (see MemoryOptions.MaxKeys). A tracked key costs about 216 bytes of heap with a 12-byte
// key (measured by BenchmarkMemoryAllow/1M-keys), so a million keys take
// about 216 MB.
//
// Deciding for a key already tracked allocates nothing. A Memory must be
// created with [NewMemory]; it is safe for concurrent use.
type Memory struct {
	shards     []shard
	mask       uint64
	seed       maphash.Seed
	perShard   int
	sweepEvery int64
	now        func() time.Time
}

// shard is one independently locked part of a Memory: a map for lookup and
// a doubly linked list in recency order for eviction.
type shard struct {
	mu        sync.Mutex
	m         map[string]*entry
	root      *entry // sentinel of the recency list: root.next is the most recent
	nextSweep int64
	// nextFullSweep is when a full shard may sweep again for a new key:
	// at most once a second, so that a flood of new keys at a full shard
	// costs one sweep a second, not one per key.
	nextFullSweep int64
	allowed       uint64
	limited       uint64
	errors        uint64
	expired       uint64
	overflowed    uint64
	_             [48]byte // 128 bytes a shard: no false sharing between shards
}

// entry is one tracked key.
type entry struct {
	prev, next *entry
	lim        rate.Limiter
	key        string
	limit      Limit
	fullAt     int64 // Unix nanoseconds at which the bucket is full again
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns a Memory configured by opts. It panics if an option is
// negative.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxKeys < 0 || opts.Shards < 0 || opts.SweepInterval < 0 {
		panic("ratelimit: MemoryOptions.MaxKeys, Shards and SweepInterval must not be negative")
	}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Shards == 0 {
		opts.Shards = DefaultShards
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.Now == nil {
		opts.Now = monotonicNow()
	}
	n := 1 << bits.Len(uint(opts.Shards-1))
	for n > 1 && n > opts.MaxKeys {
		n >>= 1
	}
	m := &Memory{
		shards:     make([]shard, n),
		mask:       uint64(n - 1),
		seed:       maphash.MakeSeed(),
		perShard:   opts.MaxKeys / n,
		sweepEvery: int64(opts.SweepInterval),
		now:        opts.Now,
	}
	for i := range m.shards {
		s := &m.shards[i]
		s.m = make(map[string]*entry)
		s.root = new(entry)
		s.root.prev, s.root.next = s.root, s.root
	}
	return m
}

// Allow is AllowN(ctx, key, limit, 1).
func (m *Memory) Allow(ctx context.Context, key string, limit Limit) (Decision, error) {
	return m.AllowN(ctx, key, limit, 1)
}

// AllowN implements [Limiter]. It never blocks on anything but a short
// in-memory lock, and ignores ctx.
func (m *Memory) AllowN(_ context.Context, key string, limit Limit, n int) (Decision, error) {
	s := &m.shards[maphash.String(m.seed, key)&m.mask]
	if err := CheckCost(limit, n); err != nil {
		s.mu.Lock()
		s.errors++
		s.mu.Unlock()
		return Decision{}, err
	}
	s.mu.Lock()
	// Reading the clock under the lock keeps each key's times in order.
	now := m.now()
	ns := now.UnixNano()
	if ns >= s.nextSweep {
		s.sweep(ns)
		s.nextSweep = ns + m.sweepEvery
	}
	e := s.m[key]
	if e == nil {
		if e = s.add(key, limit, now, m.perShard); e == nil {
			// The shard is full of keys that still carry state: refuse
			// the newcomer as if its bucket were empty.
			s.overflowed++
			s.limited++
			s.mu.Unlock()
			return Decide(limit, 0, n), nil
		}
	} else {
		s.moveToFront(e)
		if e.limit != limit {
			e.lim.SetLimitAt(now, rateOf(limit))
			e.lim.SetBurstAt(now, limit.BurstSize())
			e.limit = limit
		}
	}
	d := Decide(limit, e.lim.TokensAt(now), n)
	if d.Allowed {
		e.lim.AllowN(now, n) // cannot fail: the same tokens, under the same lock
		s.allowed++
	} else {
		s.limited++
	}
	e.fullAt = ns + int64(d.ResetAfter)
	s.mu.Unlock()
	return d, nil
}

// Stats returns a snapshot of m's counters.
func (m *Memory) Stats() Stats {
	var st Stats
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		st.Allowed += s.allowed
		st.Limited += s.limited
		st.Errors += s.errors
		st.Expired += s.expired
		st.Overflowed += s.overflowed
		st.Keys += len(s.m)
		s.mu.Unlock()
	}
	return st
}

// monotonicNow returns a clock that reads only the monotonic clock: half
// the cost of time.Now, which also reads the wall clock, and immune to the
// wall clock being set. Its times are time.Now's at the start, plus the
// time elapsed since.
func monotonicNow() func() time.Time {
	start := time.Now()
	return func() time.Time { return start.Add(time.Since(start)) }
}

func rateOf(l Limit) rate.Limit {
	return rate.Limit(float64(l.Count) / l.Period.Seconds())
}

// add tracks a new key with a full bucket. If the shard is full, it first
// forgets keys whose bucket has refilled (the least recently used one, or,
// at most once a second, all of them); if none has, it tracks nothing and
// returns nil. s.mu must be held.
func (s *shard) add(key string, limit Limit, now time.Time, capacity int) *entry {
	if len(s.m) >= capacity {
		ns := now.UnixNano()
		if lru := s.root.prev; lru != s.root && lru.fullAt <= ns {
			s.remove(lru)
			s.expired++
		} else if ns >= s.nextFullSweep {
			s.sweep(ns)
			s.nextFullSweep = ns + int64(time.Second)
		}
		if len(s.m) >= capacity {
			return nil
		}
	}
	// Clone so that the map does not keep alive a larger string the key
	// was cut from, such as a request header.
	e := &entry{key: strings.Clone(key), limit: limit}
	// A zero rate.Limiter has no tokens. Filling it without copying one
	// (it holds a mutex): with an infinite rate, any elapsed time fills the
	// bucket to its burst; then set the real rate.
	e.lim.SetBurstAt(now.Add(-2), limit.BurstSize())
	e.lim.SetLimitAt(now.Add(-1), rate.Inf)
	e.lim.SetLimitAt(now, rateOf(limit))
	s.m[e.key] = e
	s.pushFront(e)
	return e
}

// sweep forgets the keys whose bucket is full at ns. s.mu must be held.
func (s *shard) sweep(ns int64) {
	root := s.root
	for e := root.next; e != root; {
		next := e.next
		if e.fullAt <= ns {
			s.remove(e)
			s.expired++
		}
		e = next
	}
}

func (s *shard) pushFront(e *entry) {
	root := s.root
	e.prev, e.next = root, root.next
	root.next.prev = e
	root.next = e
}

func (s *shard) moveToFront(e *entry) {
	root := s.root
	if root.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	s.pushFront(e)
}

func (s *shard) remove(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(s.m, e.key)
}
