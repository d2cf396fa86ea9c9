package meter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Customer is a user whose usage is billed through a Stripe meter: their
// Stripe customer and the meter's event name.
type Customer struct {
	UserID     string
	CustomerID string // "cus_…"
	EventName  string // the event_name of the meter, such as "api_requests"
}

// Backend sends one meter event to Stripe. Package
// billing/meter/stripemeter implements it with stripe-go. Send must use
// e.Identifier as the event's identifier (and idempotency key), so that
// sending an event again is harmless. An error wrapping [ErrRejected]
// means Stripe refused the event for good (stripemeter: a 4xx other than
// 401, 403, 409 and 429); any other error is retried.
type Backend interface {
	Send(ctx context.Context, e Event) error
}

// ErrRejected is wrapped by a [Backend]'s error for an event Stripe
// refused for good; the event becomes [Rejected].
var ErrRejected = errors.New("meter: event rejected")

// Defaults of [Options].
const (
	DefaultInterval    = 30 * time.Second
	DefaultSettle      = 2 * time.Minute
	DefaultLookback    = 48 * time.Hour
	DefaultLease       = time.Minute
	DefaultConcurrency = 4
	DefaultMinBackoff  = 10 * time.Second
	DefaultMaxBackoff  = time.Hour
	DefaultBatch       = 100
)

// Options configures [NewReporter]. Customers and Backend are required.
type Options struct {
	// Customers returns the users whose usage is billed by the unit now
	// (those on a metered plan), with their customer and meter. It is
	// called once per pass. What was reported is looked up by customer
	// and meter, not by user: a user whose CustomerID or EventName
	// changes has the hours within Lookback reported again, to the new
	// pair, so a meter should be switched only with a new subscription
	// whose period starts after those hours (or with Lookback shortened).
	Customers func(ctx context.Context) ([]Customer, error)
	// Backend sends the events.
	Backend Backend
	// Interval is the time between passes of the background loop; 0
	// means [DefaultInterval].
	Interval time.Duration
	// Settle is how long after an hour ends its usage is first reported;
	// 0 means [DefaultSettle]. Make it longer than the usage Meters'
	// FlushInterval plus FlushTimeout, so that every instance has
	// written the hour by then; usage written later is reported as an
	// additional event for the slice (Seq 2, 3…) while the hour is within
	// Lookback.
	Settle time.Duration
	// Lookback is how far back hours are compared with what was
	// reported; 0 means [DefaultLookback]. Keep usage by the hour, and
	// sent events, at least this long; Stripe accepts events of the past
	// 35 days.
	Lookback time.Duration
	// Lease is how long a sender holds an event it is sending; another
	// sender (or this one, after a crash) sends it again after that. 0
	// means [DefaultLease].
	Lease time.Duration
	// Concurrency bounds the sends in flight; 0 means
	// [DefaultConcurrency].
	Concurrency int
	// MinBackoff and MaxBackoff bound the wait before an event that
	// failed is sent again: MinBackoff doubled with each attempt, at most
	// MaxBackoff. 0 means [DefaultMinBackoff] and [DefaultMaxBackoff].
	MinBackoff, MaxBackoff time.Duration
	// Batch is the most events one pass claims; 0 means [DefaultBatch].
	Batch int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives failures and rejections; nil means none.
	Logger *slog.Logger
}

// Reporter turns metered users' usage into meter events and sends them
// to Stripe through the outbox in a [Store], exactly once per unit:
//
//   - [Reporter.Enqueue] compares, for each metered customer and each
//     closed hour within Lookback, the cost counted (usage_hourly) with
//     what the outbox holds for that slice, and enqueues the difference
//     as the slice's next event. Its identifier is derived from
//     (customer, meter, slice, seq) and is the outbox's primary key, so
//     two instances enqueueing at once insert it once; a unit is never
//     enqueued twice.
//   - [Reporter.Send] leases due events, sends them with bounded
//     concurrency, and marks them Sent; a failure is retried with
//     exponential backoff; a rejection ([ErrRejected]) is kept as
//     [Rejected] with its error, listed by [Store].MeterEvents.
//
// A crash between a send and its mark, or two senders sending one event,
// sends it again with the same identifier, which Stripe deduplicates (for
// at least 24 hours): the unit is billed once as long as a lost mark is
// retried within that window, which the Lease (a minute by default)
// ensures unless every sender stays down for a day.
//
// Start runs both every Interval in the background; Close stops it. A
// Reporter is safe for concurrent use.
type Reporter struct {
	store Store
	o     Options

	stop   chan struct{}
	done   chan struct{}
	start  sync.Once
	closed sync.Once
}

// NewReporter returns a Reporter over store. It panics, with a message
// starting "meter: ", if store, opts.Customers or opts.Backend is nil or
// an option is negative.
func NewReporter(store Store, opts Options) *Reporter {
	if store == nil || opts.Customers == nil || opts.Backend == nil {
		panic("meter: NewReporter needs a Store, Options.Customers and Options.Backend")
	}
	if opts.Interval < 0 || opts.Settle < 0 || opts.Lookback < 0 || opts.Lease < 0 || opts.Concurrency < 0 ||
		opts.MinBackoff < 0 || opts.MaxBackoff < 0 || opts.Batch < 0 {
		panic("meter: Options must not be negative")
	}
	set := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	set(&opts.Interval, DefaultInterval)
	set(&opts.Settle, DefaultSettle)
	set(&opts.Lookback, DefaultLookback)
	set(&opts.Lease, DefaultLease)
	set(&opts.MinBackoff, DefaultMinBackoff)
	set(&opts.MaxBackoff, DefaultMaxBackoff)
	if opts.Concurrency == 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Batch == 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Reporter{store: store, o: opts, stop: make(chan struct{}), done: make(chan struct{})}
}

// Enqueue adds to the outbox the metered usage not yet in it, and
// returns how many events it added. An hour is reported once it ended
// Settle ago; hours up to Lookback back are compared again. A customer
// that lacks a user, customer or event name is skipped, and named in the
// error, while the others are enqueued.
func (r *Reporter) Enqueue(ctx context.Context) (n int, err error) {
	now := r.o.Now().UTC()
	to := now.Add(-r.o.Settle).Truncate(time.Hour) // hours before it are closed
	from := to.Add(-r.o.Lookback).Truncate(time.Hour)
	if !to.After(from) {
		return 0, nil
	}
	customers, err := r.o.Customers(ctx)
	if err != nil {
		return 0, fmt.Errorf("meter: listing metered customers: %w", err)
	}
	if len(customers) == 0 {
		return 0, nil
	}
	byUser := make(map[string]Customer, len(customers))
	users := make([]string, 0, len(customers))
	// A malformed customer is skipped, not the pass: the others' hours
	// would otherwise go unbilled once they fall out of Lookback.
	var malformed error
	defer func() { err = errors.Join(err, malformed) }()
	for _, c := range customers {
		if c.UserID == "" || c.CustomerID == "" || c.EventName == "" {
			malformed = errors.Join(malformed, fmt.Errorf("meter: metered customer %+v lacks a user, customer or event name; not billed", c))
			continue
		}
		if _, dup := byUser[c.UserID]; !dup {
			users = append(users, c.UserID)
		}
		byUser[c.UserID] = c
	}
	if len(users) == 0 {
		return 0, nil
	}
	// What is billed is read before the costs: a cost read later is
	// never less, so the difference never bills a unit twice.
	billed, err := r.store.BilledMeterUsage(ctx, from, to)
	if err != nil {
		return 0, fmt.Errorf("meter: reading the outbox: %w", err)
	}
	type sliceKey struct {
		customer, event string
		slice           int64
	}
	have := make(map[sliceKey]Billed, len(billed))
	for _, b := range billed {
		have[sliceKey{b.CustomerID, b.EventName, b.Slice.Unix()}] = b
	}
	costs, err := r.store.HourlyCost(ctx, users, from, to)
	if err != nil {
		return 0, fmt.Errorf("meter: reading usage: %w", err)
	}
	var events []Event
	for _, c := range costs {
		cu, ok := byUser[c.UserID]
		if !ok {
			continue
		}
		b := have[sliceKey{cu.CustomerID, cu.EventName, c.Slice.Unix()}]
		if c.Cost <= b.Value {
			continue
		}
		seq := b.Events + 1
		events = append(events, Event{
			Identifier: Identifier(cu.CustomerID, cu.EventName, c.Slice, seq),
			UserID:     c.UserID, CustomerID: cu.CustomerID, EventName: cu.EventName,
			Slice: c.Slice.UTC(), Seq: seq, Value: c.Cost - b.Value,
			Timestamp:   c.Slice.Add(time.Hour - time.Second).UTC(),
			State:       Pending,
			NextAttempt: now, CreatedAt: now,
		})
	}
	if len(events) == 0 {
		return 0, nil
	}
	n, err = r.store.EnqueueMeterEvents(ctx, events)
	if err != nil {
		return n, fmt.Errorf("meter: enqueueing %d events: %w", len(events), err)
	}
	return n, nil
}

// SendResult counts what one [Reporter.Send] did.
type SendResult struct {
	Sent, Failed, Rejected int
}

// Send sends the events due now, up to Batch of them, Concurrency at a
// time, and records each outcome.
func (r *Reporter) Send(ctx context.Context) (SendResult, error) {
	var res SendResult
	now := r.o.Now()
	events, err := r.store.ClaimMeterEvents(ctx, now, now.Add(r.o.Lease), r.o.Batch)
	if err != nil {
		return res, fmt.Errorf("meter: claiming due events: %w", err)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, r.o.Concurrency)
	)
	for _, e := range events {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			outcome, err := r.sendOne(ctx, e)
			mu.Lock()
			defer mu.Unlock()
			switch outcome {
			case Sent:
				res.Sent++
			case Rejected:
				res.Rejected++
			default:
				res.Failed++
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return res, errors.Join(errs...)
}

// sendOne sends e and records the outcome; the error is the store's.
func (r *Reporter) sendOne(ctx context.Context, e Event) (State, error) {
	err := r.o.Backend.Send(ctx, e)
	at := r.o.Now()
	if err == nil {
		if err := r.store.MarkMeterEventSent(ctx, e.Identifier, at); err != nil {
			// Sent but not marked: the lease ends and it is sent again,
			// with the same identifier, which Stripe deduplicates.
			return Sent, fmt.Errorf("meter: marking %s sent: %w", e.Identifier, err)
		}
		return Sent, nil
	}
	f := Failure{Error: err.Error(), Permanent: errors.Is(err, ErrRejected)}
	if !f.Permanent {
		f.NextAttempt = at.Add(r.backoff(e.Attempts))
	} else {
		f.NextAttempt = at
	}
	if r.o.Logger != nil {
		level, msg := slog.LevelWarn, "meter: sending a meter event failed; it will be sent again"
		if f.Permanent {
			level, msg = slog.LevelError, "meter: Stripe rejected a meter event; it is kept as rejected"
		}
		r.o.Logger.LogAttrs(ctx, level, msg, slog.String("identifier", e.Identifier), slog.String("customer", e.CustomerID),
			slog.Int64("value", e.Value), slog.Int("attempts", e.Attempts), slog.String("error", err.Error()))
	}
	state := Pending
	if f.Permanent {
		state = Rejected
	}
	if err := r.store.MarkMeterEventFailed(ctx, e.Identifier, f); err != nil {
		return state, fmt.Errorf("meter: recording the failure of %s: %w", e.Identifier, err)
	}
	return state, nil
}

// backoff returns the wait after the attempts-th failed attempt.
func (r *Reporter) backoff(attempts int) time.Duration {
	d := r.o.MinBackoff
	for i := 1; i < attempts && d < r.o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.o.MaxBackoff)
}

// Start runs Enqueue and Send every Interval in a goroutine until Close.
// Calling it again does nothing.
func (r *Reporter) Start() {
	r.start.Do(func() { go r.loop() })
}

func (r *Reporter) loop() {
	defer close(r.done)
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), r.o.Interval+r.o.Lease)
		if _, err := r.Enqueue(ctx); err != nil && r.o.Logger != nil {
			r.o.Logger.LogAttrs(ctx, slog.LevelWarn, "meter: enqueueing meter events failed", slog.String("error", err.Error()))
		}
		for {
			res, err := r.Send(ctx)
			if err != nil && r.o.Logger != nil {
				r.o.Logger.LogAttrs(ctx, slog.LevelWarn, "meter: sending meter events failed", slog.String("error", err.Error()))
			}
			if err != nil || res.Sent+res.Failed+res.Rejected < r.o.Batch {
				break
			}
		}
		cancel()
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

// Close stops the background loop started by Start, after the pass under
// way. Events leased by that pass and not marked are sent again after
// their lease. Close is idempotent.
func (r *Reporter) Close() {
	r.closed.Do(func() {
		close(r.stop)
		r.start.Do(func() { close(r.done) }) // never started
	})
	<-r.done
}
