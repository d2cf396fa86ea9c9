package usage

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Alert is a quota alert to send: a user crossed Threshold percent of
// their quota in the period that started at PeriodStart.
type Alert struct {
	UserID                 string
	Threshold              int // percent, such as 80 or 100
	Used, Limit            int64
	PeriodStart, PeriodEnd time.Time
	// Subject and Body are the message, as [AlertOptions].Message wrote
	// them.
	Subject, Body string
}

// DefaultThresholds are the percentages of a quota at which [Alerts]
// sends an alert.
var DefaultThresholds = []int{80, 100}

// AlertOptions configures [NewAlerts]. Send is required.
type AlertOptions struct {
	// Send delivers an alert: typically it finds the user's address and
	// queues a mail. An error releases the alert's claim, so that a
	// later observation sends it again. It runs in the background, never
	// on a request's path.
	Send func(ctx context.Context, a Alert) error
	// Thresholds are the percentages that alert, each from 1 to 1000;
	// nil means [DefaultThresholds] (80 and 100).
	Thresholds []int
	// Message writes an alert's subject and body; nil means
	// [DefaultMessage].
	Message func(a Alert) (subject, body string)
	// QueueSize bounds the observations waiting for the background
	// sender; 0 means 1024. Observations beyond it are dropped: a later
	// request observes the quota again.
	QueueSize int
	// Timeout bounds the claim and the send of one alert; 0 means 30 s.
	Timeout time.Duration
	// Logger receives failures; nil means none.
	Logger *slog.Logger
}

// DefaultMessage writes an alert in plain English.
func DefaultMessage(a Alert) (subject, body string) {
	if a.Threshold >= 100 {
		subject = "You have used all of your API quota"
	} else {
		subject = fmt.Sprintf("You have used %d%% of your API quota", a.Threshold)
	}
	body = fmt.Sprintf("Your API keys have used %d of the %d units your plan includes in the period from %s to %s.\n",
		a.Used, a.Limit, a.PeriodStart.UTC().Format(time.DateOnly), a.PeriodEnd.UTC().Format(time.DateOnly))
	if a.Threshold >= 100 {
		body += "Further requests are refused until the quota refills at the end of the period, unless you upgrade your plan.\n"
	} else {
		body += "Once the quota is used up, requests are refused until it refills, unless you upgrade your plan.\n"
	}
	return subject, body
}

// Alerts sends quota alerts: at each threshold (80 % and 100 % by
// default), once per user and period. Requests report the quota they see
// with [Alerts.Observe], which never waits; a background goroutine claims
// the alert in an [AlertStore] (so that only one instance of a fleet
// sends it) and calls Send. A Send that fails releases the claim; a crash
// between the claim and the send loses that alert (at most once).
//
// Create Alerts with NewAlerts and stop them with Close. They are safe
// for concurrent use.
type Alerts struct {
	store   AlertStore
	o       AlertOptions
	queue   chan observation
	pending atomic.Int64 // observations queued or being handled
	mu      sync.Mutex
	done    map[alertKey]int // thresholds already claimed (index+1)
	stop    chan struct{}
	stopped chan struct{}
	closed  sync.Once
}

type alertKey struct {
	user  string
	start int64
}

type observation struct {
	user        string
	start, end  time.Time
	used, limit int64
}

// maxRemembered bounds the (user, period) pairs Alerts remembers having
// alerted; beyond it they are forgotten, and the store's claims (which
// answer false) stop repeated alerts.
const maxRemembered = 100_000

// NewAlerts returns Alerts claiming in store and sending with opts.Send.
// It panics, with a message starting "usage: ", if store or Send is nil
// or a threshold is out of range.
func NewAlerts(store AlertStore, opts AlertOptions) *Alerts {
	if store == nil || opts.Send == nil {
		panic("usage: NewAlerts needs an AlertStore and AlertOptions.Send")
	}
	if opts.Thresholds == nil {
		opts.Thresholds = DefaultThresholds
	}
	opts.Thresholds = slices.Clone(opts.Thresholds)
	slices.Sort(opts.Thresholds)
	opts.Thresholds = slices.Compact(opts.Thresholds)
	if len(opts.Thresholds) == 0 || opts.Thresholds[0] < 1 || opts.Thresholds[len(opts.Thresholds)-1] > 1000 {
		panic("usage: AlertOptions.Thresholds must be percentages from 1 to 1000")
	}
	if opts.Message == nil {
		opts.Message = DefaultMessage
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1024
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	a := &Alerts{
		store: store, o: opts,
		queue:   make(chan observation, opts.QueueSize),
		done:    map[alertKey]int{},
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go a.loop()
	return a
}

// crossed returns how many thresholds used of limit has reached.
func (a *Alerts) crossed(used, limit int64) int {
	n := 0
	for _, t := range a.o.Thresholds {
		if used*100 >= int64(t)*limit {
			n++
		}
	}
	return n
}

// Observe reports that userID has used used of limit units in the quota
// period [periodStart, periodEnd). If that crosses a threshold not yet
// alerted, the alert is queued for the background sender. Observe never
// blocks and does no I/O; call it on every request with a quota, or
// periodically. A limit of 0 or less (no quota) is ignored.
func (a *Alerts) Observe(userID string, periodStart, periodEnd time.Time, used, limit int64) {
	if limit <= 0 || used*100 < int64(a.o.Thresholds[0])*limit {
		return
	}
	n := a.crossed(used, limit)
	k := alertKey{userID, periodStart.Unix()}
	a.mu.Lock()
	seen := a.done[k]
	a.mu.Unlock()
	if seen >= n {
		return
	}
	a.pending.Add(1)
	select {
	case a.queue <- observation{userID, periodStart.UTC(), periodEnd.UTC(), used, limit}:
	default:
		a.pending.Add(-1)
	}
}

func (a *Alerts) loop() {
	defer close(a.stopped)
	for {
		select {
		case <-a.stop:
			return
		case o := <-a.queue:
			a.handle(o)
			a.pending.Add(-1)
		}
	}
}

// handle claims and sends the alerts o crosses.
func (a *Alerts) handle(o observation) {
	k := alertKey{o.user, o.start.Unix()}
	n := a.crossed(o.used, o.limit)
	a.mu.Lock()
	seen := a.done[k]
	a.mu.Unlock()
	for i := seen; i < n; i++ {
		if !a.send(o, a.o.Thresholds[i]) {
			return
		}
		a.mu.Lock()
		if len(a.done) >= maxRemembered {
			clear(a.done)
		}
		a.done[k] = max(a.done[k], i+1)
		a.mu.Unlock()
	}
}

// send claims and sends one alert; it reports whether the alert is done
// (sent now, or claimed before).
func (a *Alerts) send(o observation, threshold int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), a.o.Timeout)
	defer cancel()
	claimed, err := a.store.ClaimAlert(ctx, o.user, o.start, threshold)
	if err != nil {
		a.warn(ctx, "usage: claiming a quota alert failed", o, threshold, err)
		return false
	}
	if !claimed {
		return true
	}
	al := Alert{UserID: o.user, Threshold: threshold, Used: o.used, Limit: o.limit, PeriodStart: o.start, PeriodEnd: o.end}
	al.Subject, al.Body = a.o.Message(al)
	if err := a.o.Send(ctx, al); err != nil {
		a.warn(ctx, "usage: sending a quota alert failed; it will be sent again", o, threshold, err)
		if err := a.store.ReleaseAlert(ctx, o.user, o.start, threshold); err != nil {
			a.warn(ctx, "usage: releasing a quota alert failed; it is lost", o, threshold, err)
		}
		return false
	}
	return true
}

func (a *Alerts) warn(ctx context.Context, msg string, o observation, threshold int, err error) {
	if a.o.Logger != nil {
		a.o.Logger.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("user", o.user),
			slog.Int("threshold", threshold), slog.String("error", err.Error()))
	}
}

// Close stops the background sender after the alert it is sending, if
// any; observations still queued are dropped (they are observed again
// after a restart). Close is idempotent.
func (a *Alerts) Close() {
	a.closed.Do(func() { close(a.stop) })
	<-a.stopped
}

// Drain handles the observations queued, partly in the caller's
// goroutine, and returns when none is queued or being handled: for tests,
// and for a graceful shutdown before Close.
func (a *Alerts) Drain() {
	for {
		select {
		case o := <-a.queue:
			a.handle(o)
			a.pending.Add(-1)
			continue
		default:
		}
		if a.pending.Load() <= 0 {
			return
		}
		time.Sleep(time.Millisecond) // the background goroutine is handling one
	}
}
