package redislimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/internal/redisdeadline"
	"github.com/apikit/apikit/ratelimit"
)

// DefaultSyncInterval is how often a [Local] limiter syncs with Redis by
// default.
const DefaultSyncInterval = 100 * time.Millisecond

// DefaultMaxKeys is how many keys a [Local] limiter tracks in memory by
// default.
const DefaultMaxKeys = 100_000

// LocalOptions configures [NewLocal]. The zero value gives the defaults:
// the Redis keys and failure policy of [Options]' zero value, a sync every
// [DefaultSyncInterval], and at most [DefaultMaxKeys] keys in memory.
type LocalOptions struct {
	// Options are the Redis keys, timeout, failure policy and logger, as
	// for [New]. Limiters of both kinds with the same Redis and Prefix
	// share each key's budget: the state in Redis is the same.
	Options
	// SyncInterval is how often the limiter sends what it admitted to
	// Redis and reads back every key's budget: one pipelined round trip
	// for all the keys used since the previous sync. 0 means
	// [DefaultSyncInterval]. Longer intervals cost Redis less and allow
	// more overshoot (see [Local]).
	SyncInterval time.Duration
	// MaxKeys bounds the keys whose budget the limiter holds in memory; a
	// key beyond it is decided exactly, with a round trip. 0 means
	// [DefaultMaxKeys].
	MaxKeys int
}

// Local is a [ratelimit.Limiter] over Redis that decides from a local
// budget: most decisions take no round trip. It keeps a view of each
// key's bucket (as Redis had it at the last sync, plus what this instance
// admitted since) and admits from it; in the background, every
// SyncInterval, it sends the units it admitted to Redis and reads back
// each key's bucket, for all keys in one pipelined round trip. Units
// admitted locally are charged in Redis unconditionally, so an overshoot
// is repaid: every instance then refuses until the bucket has refilled,
// and over time a key gets exactly its rate.
//
// # Overshoot
//
// Each instance admits locally at most b = max(1, ⌊Count × SyncInterval
// / Period⌋) units per key per sync interval (what the key earns in one
// interval); past that, and for a key it has no view of, a decision is
// exact: one round trip, as with [Limiter]. A unit admitted locally is in
// Redis at the instance's next sync and in every other instance's view
// at theirs, so it is unseen for at most two intervals. With I instances,
// the units a key is admitted over any span T are therefore at most
//
//	burst + T × Count / Period + 2 × I × b
//
// against burst + T × Count / Period for the exact limiter: for a limit
// of Count per Period with the default burst (Count), at most
// Count × (1 + T/Period + 2 × I × SyncInterval / Period). With 4 instances
// syncing every 100 ms, a key limited to 100/s gets at most 80 units
// more than its budget in any span, and in a span of one minute (6,100
// units) 1.3 % more; with 10/min, b is 1 and the excess at most 8.
//
// A refusal is never wrong: views miss other instances' spending, never
// refills, so a key refused locally would be refused by Redis too. (The
// one exception is a unit that refilled while the reply that set the
// view was on its way: at most a round trip's worth.) Units this
// instance has sent and not heard back about count against a local
// admission; for a local refusal, only those sent after the reply that
// set the view came, since a script that ran after the others' may
// already count them. A request that falls between the two takes a
// round trip.
//
// While Redis is down, refusals and the allowance left from the last
// sync are still decided locally; the units admitted are kept and sent
// once Redis is back; every other decision is exact and follows
// Options.FailClosed. Give the client ContextTimeoutEnabled, so that an
// exact decision gives up at Options.Timeout without a goroutine of its
// own.
//
// A Local must be created with [NewLocal] and stopped with
// [Local.Close]; it is safe for concurrent use.
type Local struct {
	client   redis.UniversalClient
	prefix   string
	interval time.Duration
	maxKeys  int
	direct   bool // the client honours context deadlines
	trace    func(ctx context.Context, name string) (context.Context, func(error))
	epoch    time.Time // the local clock is the monotonic time since epoch

	seed   maphash.Seed
	shards [localShards]localShard
	keys   atomic.Int64

	stop    chan struct{}
	done    chan struct{}
	closeMu sync.Once
	closed  atomic.Bool

	allowed, limited, exact, syncs atomic.Uint64
	failure
}

const localShards = 64

type localShard struct {
	mu sync.Mutex
	m  map[string]*localEntry
}

// localEntry is the view of one key, guarded by its shard's lock.
//
// base is when Redis's bucket is full again as of the reply that set it,
// in ns of the local clock (the reply's wait from the time it came). It
// counts the units sent before that reply's request and never the pending
// ones. Of the units in flight, those sent after the reply came (sure) are
// not in it either; the others may be, if their script ran first. So base
// + pending + sure is a lower bound of the spending (but for what refilled
// while the reply was on its way), and a refusal from it is right; base +
// pending + inflight bounds this instance's own spending from above, so
// an admission from it overshoots only by what other instances spent (see
// [Local]). Between the two a decision is exact.
type localEntry struct {
	limit    ratelimit.Limit
	base     int64  // see above
	gen      uint64 // counts the changes of base
	pending  int64  // units admitted locally, not yet sent
	inflight int64  // units sent by round trips under way
	sure     int64  // those of them sent since base last changed
	left     int64  // units this instance may still admit locally before the next sync
	used     bool   // used since the last sync
	synced   bool   // base is from Redis
}

// send moves the pending units to a round trip, and returns them and the
// generation of base they were sent in, for [localEntry.done].
func (e *localEntry) send() (sent int64, gen uint64) {
	sent, gen = e.pending, e.gen
	e.inflight += sent
	e.sure += sent
	e.pending = 0
	return sent, gen
}

// done ends a round trip that carried sent units, sent in generation gen;
// if it failed, they are pending again.
func (e *localEntry) done(sent int64, gen uint64, failed bool) {
	e.inflight -= sent
	if gen == e.gen {
		e.sure -= sent
	}
	if failed {
		e.pending += sent
	}
}

// rebase takes a reply's base. A later base may count every unit in
// flight: none is sure any more.
func (e *localEntry) rebase(base int64) {
	if !e.synced || base > e.base {
		e.base = base
		e.gen++
		e.sure = 0
	}
}

var _ ratelimit.Limiter = (*Local)(nil)

// NewLocal returns a Local limiter over the Redis that client reaches (a
// *redis.Client, *redis.ClusterClient or *redis.Ring) and starts its sync
// loop. It panics, with a message starting "ratelimit: ", if client is
// nil or a duration or MaxKeys is negative.
func NewLocal(client redis.UniversalClient, opts LocalOptions) *Local {
	if client == nil {
		panic("ratelimit: redislimit.NewLocal needs a Redis client")
	}
	if opts.Timeout < 0 || opts.SyncInterval < 0 || opts.MaxKeys < 0 {
		panic("ratelimit: redislimit.LocalOptions: Timeout, SyncInterval and MaxKeys must not be negative")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	l := &Local{
		client:   client,
		prefix:   "rate:" + opts.Prefix,
		interval: opts.SyncInterval,
		maxKeys:  opts.MaxKeys,
		direct:   redisdeadline.Honoured(client),
		trace:    opts.Trace,
		epoch:    time.Now(),
		seed:     maphash.MakeSeed(),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	l.timeout, l.failClosed, l.log = opts.Timeout, opts.FailClosed, opts.Logger
	for i := range l.shards {
		l.shards[i].m = make(map[string]*localEntry)
	}
	go l.loop()
	return l
}

// Close stops the sync loop after one last sync, which sends what was
// admitted since the previous one (within ctx). Decisions after Close are
// exact. It is safe to call more than once.
func (l *Local) Close(ctx context.Context) error {
	var err error
	l.closeMu.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		<-l.done
		err = l.Sync(ctx)
	})
	return err
}

func (l *Local) now() int64 { return int64(time.Since(l.epoch)) }

// Allow is AllowN(ctx, key, limit, 1).
func (l *Local) Allow(ctx context.Context, key string, limit ratelimit.Limit) (ratelimit.Decision, error) {
	return l.AllowN(ctx, key, limit, 1)
}

// AllowN implements [ratelimit.Limiter]: from the key's view when it can
// (see [Local]), else with one round trip.
func (l *Local) AllowN(ctx context.Context, key string, limit ratelimit.Limit, n int) (ratelimit.Decision, error) {
	if err := ratelimit.CheckCost(limit, n); err != nil {
		l.errors.Add(1)
		return ratelimit.Decision{}, err
	}
	sh := &l.shards[maphash.String(l.seed, key)%localShards]
	iv := float64(limit.Period) / float64(limit.Count)
	burst := float64(limit.BurstSize())
	sh.mu.Lock()
	e := sh.m[key]
	if e != nil && e.synced && e.limit == limit && !l.closed.Load() {
		now := l.now()
		// The most units the bucket can hold now, and the fewest.
		most := burst - (float64(max(e.base, now)-now)/iv + float64(e.pending+e.sure))
		least := most - float64(e.inflight-e.sure)
		if float64(n) > most+1e-9 {
			// Refused by the view: Redis, which knows at least as much
			// spending, would refuse too.
			e.used = true
			sh.mu.Unlock()
			l.limited.Add(1)
			return ratelimit.Decide(limit, most, n), nil
		}
		if e.left >= int64(n) && float64(n) <= least+1e-9 {
			avail := least
			e.pending += int64(n)
			e.left -= int64(n)
			e.used = true
			sh.mu.Unlock()
			l.allowed.Add(1)
			return ratelimit.Decide(limit, avail, n), nil
		}
	}
	// Exact: the units admitted here and not yet sent go with the
	// decision, so that Redis decides knowing them.
	var sent int64
	var gen uint64
	if e != nil && e.limit == limit {
		sent, gen = e.send()
	}
	sh.mu.Unlock()
	return l.exactly(ctx, sh, key, limit, n, sent, gen)
}

// exactly decides with one round trip that also carries sent units (of
// generation gen), and updates the key's view.
func (l *Local) exactly(ctx context.Context, sh *localShard, key string, limit ratelimit.Limit, n int, sent int64, gen uint64) (ratelimit.Decision, error) {
	l.exact.Add(1)
	res, err := l.run(ctx, key, limit, sent, n)
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected reply from the script: %v", res)
	}
	var debt int64 // until the bucket is full, after this decision
	if err == nil {
		debt = res[1] * int64(time.Microsecond)
	}
	now := l.now()
	// One critical section, so that no decision sees the units sent
	// neither in flight nor in base.
	sh.mu.Lock()
	e := sh.m[key]
	if e != nil && sent > 0 {
		e.done(sent, gen, err != nil) // on failure, sent at the next sync
	}
	if err != nil {
		sh.mu.Unlock()
		return l.fail(ctx, key, limit, n, err)
	}
	if e == nil && int(l.keys.Load()) < l.maxKeys {
		e = &localEntry{}
		sh.m[key] = e
		l.keys.Add(1)
	}
	if e != nil {
		if e.limit != limit {
			*e = localEntry{limit: limit, gen: e.gen + 1, pending: e.pending, inflight: e.inflight}
		}
		if !e.synced {
			e.left = l.allowance(limit)
		}
		e.rebase(now + debt)
		e.synced, e.used = true, true
	}
	sh.mu.Unlock()
	iv := float64(limit.Period) / float64(limit.Count)
	avail := float64(limit.BurstSize()) - float64(debt)/iv
	if res[0] == 1 {
		l.allowed.Add(1)
		avail += float64(n) // before this decision
		avail = max(avail, float64(n))
	} else {
		l.limited.Add(1)
		avail = min(avail, math.Nextafter(float64(n), 0))
	}
	if whole := math.Round(avail); math.Abs(avail-whole)*iv < float64(2*time.Microsecond) {
		avail = whole
	}
	return ratelimit.Decide(limit, avail, n), nil
}

// run runs the script for one exact decision within the timeout; as
// [Limiter] does, on a goroutine of its own if the client does not give
// up at the context's deadline by itself.
func (l *Local) run(ctx context.Context, key string, limit ratelimit.Limit, charge int64, n int) ([]int64, error) {
	if l.trace == nil {
		return l.runTimeout(ctx, key, limit, charge, n)
	}
	ctx, end := l.trace(ctx, TraceAllow)
	res, err := l.runTimeout(ctx, key, limit, charge, n)
	end(err)
	return res, err
}

func (l *Local) runTimeout(ctx context.Context, key string, limit ratelimit.Limit, charge int64, n int) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	keys, args := []string{l.prefix + key}, scriptArgs(limit, charge, n)
	if l.direct {
		return syncScript.Run(ctx, l.client, keys, args...).Int64Slice()
	}
	return redisdeadline.Wait(ctx, func() ([]int64, error) {
		return syncScript.Run(ctx, l.client, keys, args...).Int64Slice()
	})
}

// allowance is b: the units a key earns in one sync interval, at least 1.
func (l *Local) allowance(limit ratelimit.Limit) int64 {
	return max(1, int64(float64(limit.Count)*float64(l.interval)/float64(limit.Period)))
}

func (l *Local) loop() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(l.timeout, l.interval))
			l.Sync(ctx)
			cancel()
		}
	}
}

// syncItem is one key of a sync.
type syncItem struct {
	sh    *localShard
	key   string
	e     *localEntry
	limit ratelimit.Limit
	sent  int64
	gen   uint64
	cmd   *redis.Cmd
}

// Sync sends every key's locally admitted units to Redis and refreshes
// the views of the keys used since the previous sync, in one pipelined
// round trip; the sync loop calls it every SyncInterval. Keys unused for
// a whole interval whose buckets are full are forgotten. On failure, the
// units are kept for the next sync.
func (l *Local) Sync(ctx context.Context) error {
	var items []syncItem
	now := l.now()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for key, e := range sh.m {
			if !e.used && e.pending == 0 && e.inflight == 0 {
				if e.base <= now {
					delete(sh.m, key)
					l.keys.Add(-1)
				}
				continue
			}
			it := syncItem{sh: sh, key: key, e: e, limit: e.limit}
			it.sent, it.gen = e.send()
			items = append(items, it)
			e.used = false
		}
		sh.mu.Unlock()
	}
	if len(items) == 0 {
		return nil
	}
	var end func(error)
	if l.trace != nil {
		ctx, end = l.trace(ctx, TraceSync)
	}
	err := l.pipeline(ctx, items)
	if err != nil && isNoScript(err) {
		if err = syncScript.Load(ctx, l.client).Err(); err == nil {
			err = l.pipeline(ctx, items)
		}
	}
	now = l.now()
	for _, it := range items {
		var res []int64
		var rerr error
		if err == nil {
			res, rerr = it.cmd.Int64Slice()
			if rerr == nil && len(res) != 2 {
				rerr = fmt.Errorf("unexpected reply from the script: %v", res)
			}
		}
		it.sh.mu.Lock()
		e := it.e
		failed := err != nil || rerr != nil
		e.done(it.sent, it.gen, failed) // on failure, sent next time
		if !failed && e.limit == it.limit {
			e.rebase(now + res[1]*int64(time.Microsecond))
			e.left = l.allowance(it.limit)
		}
		it.sh.mu.Unlock()
		if err == nil && rerr != nil {
			err = rerr
		}
	}
	if end != nil {
		end(err)
	}
	l.syncs.Add(1)
	if err != nil {
		l.errors.Add(1)
		l.warn(ctx, fmt.Errorf("sync: %w", err), items[0].key, l.errors.Load())
	}
	return err
}

func (l *Local) pipeline(ctx context.Context, items []syncItem) error {
	pipe := l.client.Pipeline()
	for i := range items {
		it := &items[i]
		it.cmd = pipe.EvalSha(ctx, syncScript.Hash(), []string{l.prefix + it.key}, scriptArgs(it.limit, it.sent, 0)...)
	}
	_, err := pipe.Exec(ctx)
	if err != nil && !isNoScript(err) {
		return err
	}
	for _, it := range items {
		if err := it.cmd.Err(); err != nil {
			return err
		}
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Stats returns a snapshot of l's counters. Keys is the number of keys
// whose views it holds; Errors counts failed syncs too.
func (l *Local) Stats() ratelimit.Stats {
	return ratelimit.Stats{
		Allowed:    l.allowed.Load(),
		Limited:    l.limited.Load(),
		Errors:     l.errors.Load(),
		FailedOpen: l.failedOpen.Load(),
		Keys:       int(l.keys.Load()),
	}
}

// LocalStats are the counters of a [Local] limiter's own work.
type LocalStats struct {
	// Exact counts decisions that took a round trip; Syncs the syncs.
	Exact, Syncs uint64
}

// LocalStats returns a snapshot of l's round trips.
func (l *Local) LocalStats() LocalStats {
	return LocalStats{Exact: l.exact.Load(), Syncs: l.syncs.Load()}
}

// scriptArgs are the sync script's arguments: the limit's period in
// nanoseconds, count and burst, the units to charge unconditionally and
// the units to decide.
func scriptArgs(limit ratelimit.Limit, charge int64, n int) []any {
	return []any{int64(limit.Period), limit.Count, limit.BurstSize(), charge, n}
}

// syncScript charges ARGV[4] units unconditionally, then decides ARGV[5]
// units (0: none), and replies {1 if they were admitted, microseconds
// until the bucket is full}. It keeps the state as redis_rate's GCRA
// script (package [Limiter]) does: the theoretical arrival time, in
// seconds since 2017 by Redis's clock, in a string that expires when the
// bucket is full, so that both limiters share the budget of a key.
var syncScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local iv = tonumber(ARGV[1]) / 1e9 / tonumber(ARGV[2])
local t = redis.call('TIME')
local now = (t[1] - 1483228800) + t[2] / 1000000
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local old = tat
tat = tat + tonumber(ARGV[4]) * iv
local n = tonumber(ARGV[5])
local ok = 0
if n > 0 and tat - now + n * iv <= tonumber(ARGV[3]) * iv + 1e-9 then
  tat = tat + n * iv
  ok = 1
end
if tat > old then
  redis.call('SET', KEYS[1], tat, 'EX', math.ceil(tat - now))
end
return {ok, math.floor((tat - now) * 1000000)}
`)
