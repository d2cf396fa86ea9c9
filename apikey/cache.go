package apikey

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// cache holds recently looked-up keys, and briefly the ids that were not
// found, in shards so that concurrent verifications rarely contend. Each
// shard holds at most a fixed number of entries; a full shard evicts the
// entry closest to expiry among a small sample (a cheap approximation of
// LRU that needs no bookkeeping on the read path). Unknown ids have their
// own, smaller budget, so a flood of forged ids cannot push hot keys out.
//
// Misses for one id share one store query (single flight). Invalidate
// removes an id and detaches any query in flight for it, so that a stale
// result read before a revocation is never cached after it.
type cache struct {
	seed   maphash.Seed
	shards []shard
	posCap int // per shard
	negCap int // per shard
	ttl    time.Duration
	negTTL time.Duration

	// Entries loaded before distrust (unix nanoseconds) are served for at
	// most fallback after they were loaded; see Verifier.ShortenTTL.
	distrust atomic.Int64
	fallback int64
}

const cacheShards = 32

// evictSample is how many entries a full shard examines to pick a victim.
const evictSample = 8

type shard struct {
	mu       sync.RWMutex
	pos      map[string]*entry
	neg      map[string]int64 // id -> expiry (unix nanoseconds)
	inflight map[string]*call
}

type entry struct {
	key     Key
	loaded  int64 // when it was read from the store (unix nanoseconds)
	expires int64 // unix nanoseconds
	// touched is the last use (unix nanoseconds) queued for writing to
	// the store; see Verifier.touch.
	touched atomic.Int64
}

// call is one store query for the callers of [cache.load]. It holds the
// entry that caches its answer, so that a miss allocates one of them, not
// two.
type call struct {
	done  chan struct{}
	entry entry // entry.key is the query's answer
	found bool
	err   error
	stale bool // invalidated while in flight: do not cache the result
	// abandoned: the query failed because its first caller's context
	// ended; the callers that joined it ask again.
	abandoned bool
}

func newCache(size int, ttl, negTTL, fallback time.Duration) *cache {
	c := &cache{seed: maphash.MakeSeed(), ttl: ttl, negTTL: negTTL, fallback: int64(fallback), shards: make([]shard, cacheShards)}
	c.distrust.Store(math.MinInt64)
	c.posCap = max(1, (size+cacheShards-1)/cacheShards)
	c.negCap = max(1, c.posCap/4)
	for i := range c.shards {
		c.shards[i].pos = make(map[string]*entry)
		c.shards[i].neg = make(map[string]int64)
		c.shards[i].inflight = make(map[string]*call)
	}
	return c
}

func (c *cache) shard(id string) *shard {
	return &c.shards[maphash.String(c.seed, id)%cacheShards]
}

// get returns the cached entry for id: e != nil for a known key, known ==
// false with ok for a remembered unknown id, ok == false on a miss.
func (c *cache) get(id string, now int64) (e *entry, ok bool) {
	s := c.shard(id)
	s.mu.RLock()
	e = s.pos[id]
	negExp, neg := s.neg[id]
	s.mu.RUnlock()
	if e != nil && c.fresh(e, now) {
		return e, true
	}
	if neg && now < negExp {
		return nil, true
	}
	return nil, false
}

// fresh reports whether e may be served at now: within the TTL and, if it
// was loaded before the distrust mark, within the fallback TTL.
func (c *cache) fresh(e *entry, now int64) bool {
	return now < e.expires && (e.loaded >= c.distrust.Load() || now-e.loaded < c.fallback)
}

// known reports whether id is in memory at all: a key verified before
// (fresh or expired, until evicted) or a remembered unknown id.
func (c *cache) known(id string, now int64) bool {
	s := c.shard(id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.pos[id] != nil {
		return true
	}
	exp, neg := s.neg[id]
	return neg && now < exp
}

// load looks id up with fetch, sharing the query with concurrent callers,
// and caches the result. The first caller runs the query on its own
// goroutine (whose stack has grown already: a fresh goroutine would grow
// one through the driver's calls on every miss), under its own context
// bounded by timeout. Each caller waits only as long as its own ctx
// allows; callers that joined a query whose first caller gave up (its
// context ended) ask again rather than share its error.
func (c *cache) load(ctx context.Context, id string, now func() time.Time, timeout time.Duration,
	fetch func(context.Context, string) (Key, bool, error)) (*entry, bool, error) {
	s := c.shard(id)
	for {
		// A caller whose context is already done gets its error, even
		// if a query happens to finish first.
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		s.mu.Lock()
		// A query that finished between the caller's miss and this lock
		// has cached its answer: use it rather than ask again.
		t := now().UnixNano()
		if e := s.pos[id]; e != nil && c.fresh(e, t) {
			s.mu.Unlock()
			return e, true, nil
		}
		if exp, ok := s.neg[id]; ok && t < exp {
			s.mu.Unlock()
			return nil, false, nil
		}
		cl := s.inflight[id]
		if cl == nil {
			cl = &call{done: make(chan struct{})}
			s.inflight[id] = cl
			s.mu.Unlock()
			return c.lead(ctx, s, id, cl, now, timeout, fetch)
		}
		s.mu.Unlock()

		select {
		case <-cl.done:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if cl.abandoned {
			continue
		}
		if cl.err != nil || !cl.found {
			return nil, false, cl.err
		}
		// Prefer the cached entry, so that last-use tracking goes through
		// it; a result that was not cached (invalidated in flight) stands
		// alone.
		s.mu.RLock()
		e := s.pos[id]
		s.mu.RUnlock()
		if e == nil {
			e = &entry{key: cl.entry.key}
		}
		return e, true, nil
	}
}

// errLookupTimeout is the cause of a query's context ending at the
// timeout of [cache.load] rather than with its caller's.
var errLookupTimeout = errors.New("apikey: store lookup timed out")

// lead runs the query of cl for the callers of load, caches its answer
// unless it was invalidated in flight, and releases the callers that
// joined.
func (c *cache) lead(ctx context.Context, s *shard, id string, cl *call, now func() time.Time,
	timeout time.Duration, fetch func(context.Context, string) (Key, bool, error)) (*entry, bool, error) {
	qctx, cancel := context.WithTimeoutCause(ctx, timeout, errLookupTimeout)
	defer cancel()
	// The entry counts as loaded when the query started: a change made
	// while it ran may be missing from its answer.
	start := now().UnixNano()
	finished := false
	defer func() {
		if !finished { // fetch panicked: release the callers that joined
			s.mu.Lock()
			if s.inflight[id] == cl {
				delete(s.inflight, id)
			}
			cl.abandoned = true
			s.mu.Unlock()
			close(cl.done)
		}
	}()
	cl.entry.key, cl.found, cl.err = fetch(qctx, id)
	finished = true

	var e *entry
	s.mu.Lock()
	if s.inflight[id] == cl {
		delete(s.inflight, id)
	}
	cl.abandoned = cl.err != nil && ctx.Err() != nil
	if !cl.stale && cl.err == nil {
		t := now().UnixNano()
		if cl.found {
			if _, ok := s.pos[id]; !ok && len(s.pos) >= c.posCap {
				evictPos(s.pos, t)
			}
			e = &cl.entry
			e.loaded, e.expires = start, t+int64(c.ttl)
			s.pos[id] = e
			delete(s.neg, id)
		} else {
			if _, ok := s.neg[id]; !ok && len(s.neg) >= c.negCap {
				evictNeg(s.neg)
			}
			s.neg[id] = t + int64(c.negTTL)
		}
	}
	s.mu.Unlock()
	close(cl.done)
	if cl.err != nil || !cl.found {
		return nil, false, cl.err
	}
	if e == nil {
		e = &entry{key: cl.entry.key}
	}
	return e, true, nil
}

// invalidate forgets id, and makes a lookup of id that is in flight neither
// cached nor joined by later callers.
func (c *cache) invalidate(id string) {
	s := c.shard(id)
	s.mu.Lock()
	delete(s.pos, id)
	delete(s.neg, id)
	if cl := s.inflight[id]; cl != nil {
		cl.stale = true
		delete(s.inflight, id)
	}
	s.mu.Unlock()
}

// invalidateWhere forgets every known key for which drop is true, and
// detaches every lookup in flight (whose key is not known yet).
func (c *cache) invalidateWhere(drop func(*Key) bool) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for id, e := range s.pos {
			if drop(&e.key) {
				delete(s.pos, id)
			}
		}
		for id, cl := range s.inflight {
			cl.stale = true
			delete(s.inflight, id)
		}
		s.mu.Unlock()
	}
}

// invalidateAll forgets every key and unknown id, and detaches every lookup
// in flight.
func (c *cache) invalidateAll() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.pos)
		clear(s.neg)
		for id, cl := range s.inflight {
			cl.stale = true
			delete(s.inflight, id)
		}
		s.mu.Unlock()
	}
}

// forget removes e from the cache if it is still the entry for id, so that
// the next lookup reads the store; it reports whether it did. Unlike
// invalidate it leaves a lookup in flight alone: that one is newer than e.
func (c *cache) forget(id string, e *entry) bool {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pos[id] != e {
		return false
	}
	delete(s.pos, id)
	return true
}

// len returns the number of cached known keys and unknown ids.
func (c *cache) len() (known, unknown int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		known += len(s.pos)
		unknown += len(s.neg)
		s.mu.RUnlock()
	}
	return known, unknown
}

// evictPos removes an expired entry or, failing that, the one closest to
// expiry among the first few that map iteration (randomised) yields.
func evictPos(m map[string]*entry, now int64) {
	var victim string
	var soonest int64
	n := 0
	for id, e := range m {
		if e.expires <= now {
			delete(m, id)
			return
		}
		if n == 0 || e.expires < soonest {
			victim, soonest = id, e.expires
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(m, victim)
}

func evictNeg(m map[string]int64) {
	var victim string
	var soonest int64
	n := 0
	for id, exp := range m {
		if n == 0 || exp < soonest {
			victim, soonest = id, exp
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(m, victim)
}
