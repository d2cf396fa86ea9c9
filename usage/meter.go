package usage

import (
	"context"
	"crypto/rand"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/internal/drain"
)

// Defaults of [Options].
const (
	// DefaultFlushInterval is how often a Meter writes its counts: a
	// request shows in the store, and in GET /v1/usage, within it.
	DefaultFlushInterval = 10 * time.Second
	// DefaultFlushTimeout bounds one periodic write.
	DefaultFlushTimeout = 5 * time.Second
	// DefaultMaxCounters bounds the counters a Meter holds in memory.
	DefaultMaxCounters = 100_000
	// DefaultCloseTimeout bounds [Meter.Close] when its context has no
	// deadline.
	DefaultCloseTimeout = 30 * time.Second
)

// Options configures [NewMeter]. The zero value gives the defaults.
type Options struct {
	// FlushInterval is how often counts are written to the store; 0 means
	// [DefaultFlushInterval]. It bounds what a crash loses.
	FlushInterval time.Duration
	// FlushTimeout bounds each periodic write; 0 means
	// [DefaultFlushTimeout].
	FlushTimeout time.Duration
	// MaxCounters bounds the (user, key, hour) counters held in memory,
	// written or not; 0 means [DefaultMaxCounters] (about 25 MB at most:
	// 100,000 counters of 12-byte key ids took 23 MB of heap).
	// When half of them are in use, the Meter writes at once instead of
	// waiting for the interval; when all are (the store has been failing
	// for a while), requests of a counter not yet held are not counted,
	// and [Stats].Dropped says how many.
	MaxCounters int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a warning when a write fails (the counts are kept
	// and written later) and when requests were dropped; nil means no
	// logging.
	Logger *slog.Logger
}

// numShards is the number of independently locked parts of a Meter's
// counters: enough that requests on a few cores rarely wait for each
// other, few enough that a flush visits them quickly.
const numShards = 64

type counterKey struct {
	user, key string
	hour      int64 // Unix seconds
}

type shard struct {
	mu sync.Mutex
	m  map[counterKey]*Counts
	_  [40]byte // keep shards on separate cache lines
}

// Meter counts requests per API key, user and hour in memory, and writes
// the counts to a [Store] in batches: every FlushInterval, when its
// memory is half full, on [Meter.Flush] and on [Meter.Close]. Counting
// ([Meter.Record]) takes a striped lock and allocates only for the first
// request of a (user, key, hour); it does no I/O.
//
// # What is written, and what may be lost
//
// Each write is a [Batch] with a random id, applied by the store in one
// transaction. A write that fails is kept and retried as it is (same id)
// before anything newer, so a write that the store committed but
// reported as failed (a connection dropped after the commit) is not
// counted twice: the store recognises the id. Counts are therefore
// written exactly once while the process lives. A graceful shutdown
// ([Meter.Close]) writes everything, retrying until its context ends; a
// crash loses what was not written: at most one FlushInterval of
// counts (plus, if the store was failing, what waited for it). Once
// MaxCounters counters are held, requests of new counters are dropped
// and counted in [Stats].Dropped.
//
// A Meter must be created with NewMeter and closed with Close; it is safe
// for concurrent use.
type Meter struct {
	store    Store
	timeout  time.Duration
	max      int64
	now      func() time.Time
	log      *slog.Logger
	seed     maphash.Seed
	shards   [numShards]shard
	held     atomic.Int64 // counters in shards and in failed
	dropped  atomic.Uint64
	reported uint64 // dropped as last logged; under flushMu

	flushMu sync.Mutex
	failed  *Batch // a write to retry before any other; under flushMu

	statsMu sync.Mutex
	stats   Stats // but Dropped and Pending, which are atomics

	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed sync.Once
}

// Stats is a snapshot of a Meter's counters.
type Stats struct {
	// Pending is the number of counters held, not yet written.
	Pending int
	// Flushes counts writes to the store, Failures the failed ones.
	Flushes, Failures uint64
	// Written is the number of counters written successfully.
	Written uint64
	// Dropped counts requests not counted because MaxCounters counters
	// were held, or because they had no user.
	Dropped uint64
}

// NewMeter returns a Meter writing to store every opts.FlushInterval
// until closed. It panics, with a message starting "usage: ", if store
// is nil or an option is negative.
func NewMeter(store Store, opts Options) *Meter {
	if store == nil {
		panic("usage: NewMeter needs a Store")
	}
	if opts.FlushInterval < 0 || opts.FlushTimeout < 0 || opts.MaxCounters < 0 {
		panic("usage: Options.FlushInterval, FlushTimeout and MaxCounters must not be negative")
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.FlushTimeout == 0 {
		opts.FlushTimeout = DefaultFlushTimeout
	}
	if opts.MaxCounters == 0 {
		opts.MaxCounters = DefaultMaxCounters
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Meter{
		store:   store,
		timeout: opts.FlushTimeout,
		max:     int64(opts.MaxCounters),
		now:     opts.Now,
		log:     opts.Logger,
		seed:    maphash.MakeSeed(),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range m.shards {
		m.shards[i].m = make(map[counterKey]*Counts)
	}
	go drain.Every(m.stop, m.kick, m.done, opts.FlushInterval, m.timeout, m.Flush, m.flushFailed)
	return m
}

// flushFailed logs a failed background write; the counts are kept for
// the next.
func (m *Meter) flushFailed(ctx context.Context, err error) {
	if m.log != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "usage: writing usage counts failed; they are kept for the next write",
			slog.String("error", err.Error()))
	}
}

// Record counts one request of the API key keyID of user userID, made at
// time at, with the given outcome and cost. It does no I/O, and allocates
// only for the first request of a (user, key, hour) since the last write.
// Requests without a key (a user's session, say) may pass an empty keyID;
// a request without a user (an empty userID) is not counted, and counts
// as dropped in [Stats].
func (m *Meter) Record(at time.Time, userID, keyID string, o Outcome, cost int64) {
	if userID == "" {
		m.dropped.Add(1) // a store refuses it, and would refuse the whole batch
		return
	}
	sec := at.Unix()
	r := sec % 3600
	if r < 0 {
		r += 3600
	}
	k := counterKey{user: userID, key: keyID, hour: sec - r}
	// A key belongs to one user, so its id spreads the counters alone;
	// requests without a key (sessions) spread by their user instead of
	// all meeting on one shard.
	spread := keyID
	if spread == "" {
		spread = userID
	}
	sh := &m.shards[maphash.String(m.seed, spread)&(numShards-1)]
	sh.mu.Lock()
	c := sh.m[k]
	if c == nil {
		if m.held.Load() >= m.max {
			sh.mu.Unlock()
			m.dropped.Add(1)
			return
		}
		c = new(Counts)
		sh.m[k] = c
		if m.held.Add(1) == m.max/2 {
			select {
			case m.kick <- struct{}{}:
			default:
			}
		}
	}
	c.add(o, cost)
	sh.mu.Unlock()
}

// newBatchID returns a random batch id.
func newBatchID() string { return "b_" + rand.Text() }

// take moves every held counter out of the shards into a batch.
func (m *Meter) take() Batch {
	var b Batch
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		if len(sh.m) == 0 {
			sh.mu.Unlock()
			continue
		}
		old := sh.m
		sh.m = make(map[counterKey]*Counts, len(old))
		sh.mu.Unlock()
		for k, c := range old {
			b.Counts = append(b.Counts, Count{UserID: k.user, KeyID: k.key, Start: time.Unix(k.hour, 0).UTC(), Counts: *c})
		}
	}
	if len(b.Counts) > 0 {
		b.ID, b.At = newBatchID(), m.now()
	}
	return b
}

// Flush writes the counts held now to the store. A batch that failed
// before is written first, as it was; on failure the counts stay held,
// to be written by the next Flush.
func (m *Meter) Flush(ctx context.Context) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	if d := m.dropped.Load(); d != m.reported && m.log != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "usage: requests were not counted: too many counters held",
			slog.Uint64("dropped", d-m.reported), slog.Int64("max_counters", m.max))
		m.reported = d
	}
	if m.failed != nil {
		if err := m.write(ctx, *m.failed); err != nil {
			return err
		}
		m.failed = nil
	}
	b := m.take()
	if len(b.Counts) == 0 {
		return nil
	}
	if err := m.write(ctx, b); err != nil {
		m.failed = &b
		return err
	}
	return nil
}

// write writes one batch and keeps the statistics.
func (m *Meter) write(ctx context.Context, b Batch) error {
	err := m.store.AddCounts(ctx, b)
	m.statsMu.Lock()
	m.stats.Flushes++
	if err != nil {
		m.stats.Failures++
	} else {
		m.stats.Written += uint64(len(b.Counts))
	}
	m.statsMu.Unlock()
	if err != nil {
		return fmt.Errorf("usage: writing %d counts: %w", len(b.Counts), err)
	}
	m.held.Add(-int64(len(b.Counts)))
	return nil
}

// Close stops the periodic writes and writes what is held, retrying
// until it succeeds or ctx ends; a ctx without a deadline gets
// [DefaultCloseTimeout], so that a store that is down cannot hold a
// shutdown forever. Requests recorded after Close are held until the next
// Flush. Close is idempotent.
func (m *Meter) Close(ctx context.Context) error {
	m.closed.Do(func() { close(m.stop) })
	<-m.done
	return drain.Flush(ctx, DefaultCloseTimeout, m.Flush)
}

// Stats returns a snapshot of m's counters.
func (m *Meter) Stats() Stats {
	m.statsMu.Lock()
	st := m.stats
	m.statsMu.Unlock()
	st.Pending = int(m.held.Load())
	st.Dropped = m.dropped.Load()
	return st
}
