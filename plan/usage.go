package plan

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apikit/apikit/internal/drain"
)

// Usage is an amount of quota used by one identity in one period.
type Usage struct {
	// Identity is the budget's owner, as [Identity.String] writes it:
	// "user:42", "key:4tQ2x9LmZpB7".
	Identity string
	// Period and Start name the quota period; Start is in UTC.
	Period Period
	Start  time.Time
	// Count is the amount: to add, in [UsageStore].AddUsage.
	Count int64
}

// UsageStore keeps quota usage durably, so that a restart or a lost Redis
// does not give anyone a fresh quota mid-period. The store packages
// implement it over a table keyed by (identity, period, start).
//
// A [Flusher] calls it; implementations must be safe for concurrent use.
// A batch is applied whole or not at all; a failed one is retried. A batch
// that was committed but reported as failed (the connection dropped after
// the commit) is therefore counted twice: quotas err on the side of the
// customer having used more, by at most one flush interval's usage, and
// only on such failures. Usage billed exactly once needs a batch id.
type UsageStore interface {
	// AddUsage adds each Usage's Count to the stored total of its
	// (Identity, Period, Start), creating the total if there is none. It
	// applies the whole batch or nothing (one transaction): the Flusher
	// retries a failed batch, so a batch half applied would count twice.
	// A batch may hold several entries for one key.
	AddUsage(ctx context.Context, batch []Usage) error
	// Usage returns the stored total of (identity, period, start), or 0
	// and a nil error if there is none. The error is for failures only.
	Usage(ctx context.Context, identity string, period Period, start time.Time) (int64, error)
}

// Defaults of [FlusherOptions].
const (
	// DefaultFlushInterval is how often a Flusher writes pending usage.
	DefaultFlushInterval = 10 * time.Second
	// DefaultFlushTimeout bounds one write of pending usage.
	DefaultFlushTimeout = 5 * time.Second
)

// FlusherOptions configures [NewFlusher]. The zero value gives the
// defaults.
type FlusherOptions struct {
	// Interval is how often pending usage is written; 0 means
	// [DefaultFlushInterval]. It bounds what a crash loses: usage recorded
	// since the last successful write.
	Interval time.Duration
	// Timeout bounds each periodic write; 0 means [DefaultFlushTimeout].
	Timeout time.Duration
	// Logger receives a warning when a write fails (the usage is kept and
	// written with the next one); nil means no logging.
	Logger *slog.Logger
	// Trace, if set, is called as each call to the store starts, with its
	// name ([TraceFlush] for a batch write, [TraceRestore] for a read of
	// one counter), and the function it returns when the call ends, with
	// its error. It lets a tracer, such as OpenTelemetry's, time the calls
	// without this package depending on one; the context it returns is
	// the one the store is called with. The name carries no identity. nil
	// costs nothing.
	Trace func(ctx context.Context, name string) (context.Context, func(error))
}

// Names of the store calls given to [FlusherOptions].Trace.
const (
	TraceFlush   = "plan.flush"
	TraceRestore = "plan.restore"
)

// usageKey names one quota counter.
type usageKey struct {
	id     Identity
	period Period
	start  int64 // Unix nanoseconds
}

// Flusher batches quota usage in memory and writes it to a [UsageStore]:
// every Interval, on [Flusher.Flush], and on [Flusher.Close], so that a
// graceful shutdown loses nothing and a crash loses at most one interval.
// Deciders record what they admit with Record (no I/O) and read a
// counter they do not hold with [Flusher.Restore] (the store's total plus
// what is pending here).
//
// A Flusher must be created with NewFlusher and closed with Close; it is
// safe for concurrent use.
type Flusher struct {
	store   UsageStore
	timeout time.Duration
	log     *slog.Logger
	trace   func(ctx context.Context, name string) (context.Context, func(error))

	mu       sync.Mutex
	pending  map[usageKey]int64
	inflight map[usageKey]int64 // being written: still counted by Restore
	// flushing is held for writing by a write to the store, and for
	// reading by Restore, so that Restore never reads the store while a
	// batch may or may not be in it.
	flushing sync.RWMutex
	stats    FlusherStats

	stop   chan struct{}
	done   chan struct{}
	closed sync.Once
}

// FlusherStats is a snapshot of a Flusher's counters.
type FlusherStats struct {
	// Pending is the number of counters with usage not yet written.
	Pending int
	// Flushes and Failures count writes to the store, and the failed ones.
	Flushes, Failures uint64
	// Written is the number of Usage entries written successfully.
	Written uint64
	// Restores counts calls of Restore that read the store.
	Restores uint64
}

// NewFlusher returns a Flusher over store that writes every
// opts.Interval until closed. It panics, with a message starting "plan: ",
// if store is nil or an option is negative.
func NewFlusher(store UsageStore, opts FlusherOptions) *Flusher {
	if store == nil {
		panic("plan: NewFlusher needs a UsageStore")
	}
	if opts.Interval < 0 || opts.Timeout < 0 {
		panic("plan: FlusherOptions.Interval and Timeout must not be negative")
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultFlushInterval
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultFlushTimeout
	}
	f := &Flusher{
		store:    store,
		timeout:  opts.Timeout,
		log:      opts.Logger,
		trace:    opts.Trace,
		pending:  make(map[usageKey]int64),
		inflight: make(map[usageKey]int64),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go drain.Every(f.stop, nil, f.done, opts.Interval, f.timeout, f.Flush, f.flushFailed)
	return f
}

// flushFailed logs a failed background write; the usage is kept for the
// next.
func (f *Flusher) flushFailed(ctx context.Context, err error) {
	if f.log != nil {
		f.log.LogAttrs(ctx, slog.LevelWarn, "plan: writing quota usage failed; it is kept for the next write",
			slog.String("error", err.Error()))
	}
}

// Record adds n units used by id in the quota period (period, start) to
// what the next write adds to the store. It does no I/O and, for a counter
// already pending, allocates nothing.
func (f *Flusher) Record(id Identity, period Period, start time.Time, n int64) {
	if n == 0 {
		return
	}
	k := usageKey{id, period, start.UnixNano()}
	f.mu.Lock()
	f.pending[k] += n
	f.mu.Unlock()
}

// Restore returns the units id has used in the quota period (period,
// start): the store's total plus what this Flusher has not yet written.
// Deciders call it when they hold no counter for the period (after a
// restart, an eviction or a lost Redis key). Usage recorded by other
// instances and not yet written by them is missing: at most one
// Interval's worth.
func (f *Flusher) Restore(ctx context.Context, id Identity, period Period, start time.Time) (int64, error) {
	k := usageKey{id, period, start.UnixNano()}
	f.flushing.RLock()
	defer f.flushing.RUnlock()
	f.mu.Lock()
	f.stats.Restores++
	f.mu.Unlock()
	var end func(error)
	if f.trace != nil {
		ctx, end = f.trace(ctx, TraceRestore)
	}
	n, err := f.store.Usage(ctx, id.String(), period, start.UTC())
	if end != nil {
		end(err)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: restoring the quota of %v: %w", ErrUnavailable, id, err)
	}
	// No write is under way, so each unit is either in the store or
	// pending here, never both.
	f.mu.Lock()
	n += f.pending[k]
	f.mu.Unlock()
	return n, nil
}

// Flush writes all pending usage to the store now, in one batch. On
// failure the usage stays pending, to be written by the next Flush.
func (f *Flusher) Flush(ctx context.Context) error {
	f.flushing.Lock()
	defer f.flushing.Unlock()
	f.mu.Lock()
	if len(f.pending) == 0 {
		f.mu.Unlock()
		return nil
	}
	f.pending, f.inflight = f.inflight, f.pending // inflight is empty here
	batch := make([]Usage, 0, len(f.inflight))
	for k, n := range f.inflight {
		batch = append(batch, Usage{Identity: k.id.String(), Period: k.period, Start: time.Unix(0, k.start).UTC(), Count: n})
	}
	f.stats.Flushes++
	f.mu.Unlock()

	var end func(error)
	if f.trace != nil {
		ctx, end = f.trace(ctx, TraceFlush)
	}
	err := f.store.AddUsage(ctx, batch)
	if end != nil {
		end(err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.stats.Failures++
		for k, n := range f.inflight {
			f.pending[k] += n
		}
	} else {
		f.stats.Written += uint64(len(batch))
	}
	clear(f.inflight)
	if err != nil {
		return fmt.Errorf("plan: writing quota usage: %w", err)
	}
	return nil
}

// DefaultCloseTimeout bounds [Flusher.Close] when its context has no
// deadline.
const DefaultCloseTimeout = 30 * time.Second

// Close stops the periodic writes and writes what is pending, retrying
// until it succeeds or ctx ends; a ctx without a deadline gets
// DefaultCloseTimeout, so that a store that is down cannot hold a shutdown
// forever. Usage recorded after Close stays pending until the next Flush.
// Close is idempotent.
func (f *Flusher) Close(ctx context.Context) error {
	f.closed.Do(func() { close(f.stop) })
	<-f.done
	return drain.Flush(ctx, DefaultCloseTimeout, f.Flush)
}

// Stats returns a snapshot of f's counters.
func (f *Flusher) Stats() FlusherStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.stats
	st.Pending = len(f.pending)
	return st
}
