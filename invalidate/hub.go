package invalidate

import (
	"context"
	crand "crypto/rand"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A Transport moves messages between the instances: package
// invalidate/pgbus and invalidate/redisbus implement it.
type Transport interface {
	// Send delivers msg to every Listener of the channel, this process's
	// included.
	Send(ctx context.Context, msg string) error
	// Listen opens a subscription on a connection of its own; when it
	// returns without error, every message sent from then on reaches the
	// Listener.
	Listen(ctx context.Context) (Listener, error)
	// MaxMessage is the longest message Send accepts, in bytes.
	MaxMessage() int
}

// A Listener is one subscription, on one connection.
type Listener interface {
	// Receive returns the next message, or "" for the answer to a Ping.
	// An error other than ctx's means the connection is lost.
	Receive(ctx context.Context) (string, error)
	// Ping asks the server for an answer on the subscription's
	// connection, which Receive returns as ""; it must not block. A
	// failure to send it is returned by the next Receive.
	Ping()
	// Close closes the connection.
	Close() error
}

// Options configures a [Hub]. The zero value is a safe default.
type Options struct {
	// PingInterval is how long a quiet subscription waits before it
	// pings the server; a ping unanswered for another PingInterval means
	// the connection is lost (default 1 second). A connection that is
	// reset or closed is noticed at once.
	PingInterval time.Duration
	// MaxBackoff caps the wait between attempts to re-establish a lost
	// subscription or to resend a failed message; waits start at 50 ms
	// and double (default 5 seconds).
	MaxBackoff time.Duration
	// MaxPending bounds the events waiting to be sent; past it they are
	// collapsed into one [Everything] event (default 10,000).
	MaxPending int
	// SendTimeout bounds one send (default 5 seconds).
	SendTimeout time.Duration
	// Logger receives connection losses and send failures (default:
	// discard).
	Logger *slog.Logger
}

// Hub is a [Bus] over a [Transport]. Publishing needs no subscription: a
// program that only changes things (a command-line tool) publishes and
// closes; the subscription is opened by the first [Hub.Subscribe].
type Hub struct {
	t      Transport
	opts   Options
	log    *slog.Logger
	origin string // this Hub's messages, which it ignores when they come back

	mu      sync.Mutex
	pending map[Event]struct{}
	all     bool // an Everything event is pending
	busy    bool // the sender holds events it has not sent yet
	wake    chan struct{}

	hmu       sync.Mutex // serialises dispatch and Subscribe
	handlers  []Handler
	down      bool // what the handlers were last told
	listening bool
	current   Listener // closed by Close, to stop a Receive at once

	ctx     context.Context
	cancel  context.CancelFunc
	sender  chan struct{} // closed when the sender has stopped
	stopped sync.WaitGroup
	closing chan struct{}
	once    sync.Once

	st struct {
		published, coalesced, overflows, sent, sendErrors atomic.Uint64
		received, events, invalid, connects, disconnects  atomic.Uint64
		subscribed                                        atomic.Bool
	}
}

// New returns a Hub over t and starts its sender.
func New(t Transport, opts Options) *Hub {
	if opts.PingInterval <= 0 {
		opts.PingInterval = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 10_000
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		t: t, opts: opts, log: log, origin: strings.ToLower(crand.Text()[:10]),
		pending: make(map[Event]struct{}), wake: make(chan struct{}, 1),
		down: true, ctx: ctx, cancel: cancel,
		sender: make(chan struct{}), closing: make(chan struct{}),
	}
	go h.send()
	return h
}

// Publish queues events for every other instance, merging duplicates, and
// returns at once. Events that cannot be encoded (an empty or oversized
// id, an unknown kind) are dropped and counted as Invalid.
func (h *Hub) Publish(events ...Event) {
	h.st.published.Add(uint64(len(events)))
	h.enqueue(events)
}

func (h *Hub) enqueue(events []Event) {
	h.mu.Lock()
	for _, e := range events {
		if !valid(e) {
			h.st.invalid.Add(1)
			continue
		}
		if h.all {
			h.st.coalesced.Add(1)
			continue
		}
		if e.Kind == Everything {
			h.all = true
			clear(h.pending)
			continue
		}
		if _, ok := h.pending[e]; ok {
			h.st.coalesced.Add(1)
			continue
		}
		if len(h.pending) >= h.opts.MaxPending {
			h.st.overflows.Add(1)
			h.all = true
			clear(h.pending)
			continue
		}
		h.pending[e] = struct{}{}
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// send is the sender goroutine: it takes what is pending, sends it in as
// few messages as fit, and on failure puts back what was not sent and
// retries with backoff.
func (h *Hub) send() {
	defer close(h.sender)
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			select {
			case <-time.After(jitter(backoff)):
			case <-h.ctx.Done():
				return
			}
		}
		select {
		case <-h.wake:
		case <-h.closing:
		case <-h.ctx.Done():
			return
		}
		h.mu.Lock()
		all, batch := h.all, h.pending
		h.all, h.pending = false, make(map[Event]struct{})
		h.busy = true
		h.mu.Unlock()
		msgs := encode(h.origin, all, batch, h.t.MaxMessage())
		failed := false
		for i, m := range msgs {
			ctx, cancel := context.WithTimeout(h.ctx, h.opts.SendTimeout)
			err := h.t.Send(ctx, m.text)
			cancel()
			if err != nil {
				h.st.sendErrors.Add(1)
				h.log.Warn("invalidate: sending failed; retrying", "events", len(m.events), "error", err)
				h.requeue(msgs[i:])
				failed = true
				break
			}
			h.st.sent.Add(1)
		}
		h.mu.Lock()
		h.busy = false
		h.mu.Unlock()
		if failed {
			backoff = min(max(2*backoff, 50*time.Millisecond), h.opts.MaxBackoff)
			select {
			case h.wake <- struct{}{}:
			default:
			}
			continue
		}
		backoff = 0
		h.mu.Lock()
		empty := !h.all && len(h.pending) == 0
		h.mu.Unlock()
		if !empty {
			select {
			case h.wake <- struct{}{}:
			default:
			}
		} else {
			select {
			case <-h.closing:
				return // closing and nothing left to send
			default:
			}
		}
	}
}

// requeue puts the events of unsent messages back.
func (h *Hub) requeue(msgs []message) {
	var events []Event
	for _, m := range msgs {
		if m.all {
			events = append(events, Event{Kind: Everything})
		}
		events = append(events, m.events...)
	}
	h.enqueue(events)
}

// Subscribe registers a handler and, the first time, starts listening.
func (h *Hub) Subscribe(hd Handler) {
	h.hmu.Lock()
	defer h.hmu.Unlock()
	h.handlers = append(h.handlers, hd)
	if hd.Degraded != nil {
		hd.Degraded(h.down)
	}
	if !h.listening {
		h.listening = true
		h.stopped.Add(1)
		go h.listen()
	}
}

// listen keeps a subscription up until the Hub closes.
func (h *Hub) listen() {
	defer h.stopped.Done()
	backoff := time.Duration(0)
	for h.ctx.Err() == nil {
		if backoff > 0 {
			select {
			case <-time.After(jitter(backoff)):
			case <-h.ctx.Done():
				return
			}
		}
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		l, err := h.t.Listen(ctx)
		cancel()
		if err != nil {
			if h.ctx.Err() == nil {
				h.log.Warn("invalidate: subscribing failed; caches use their fallback TTL", "error", err)
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), h.opts.MaxBackoff)
			continue
		}
		backoff = 0
		h.hmu.Lock()
		h.current = l
		h.hmu.Unlock()
		h.st.connects.Add(1)
		h.st.subscribed.Store(true)
		h.setDown(false)
		err = h.receive(l)
		l.Close()
		h.st.subscribed.Store(false)
		if h.ctx.Err() != nil {
			return
		}
		h.st.disconnects.Add(1)
		h.setDown(true)
		h.log.Warn("invalidate: subscription lost; caches use their fallback TTL until it is back", "error", err)
		backoff = 50 * time.Millisecond
	}
}

var errNoAnswer = errors.New("invalidate: no answer to a ping")

// receive reads messages until the connection fails or the Hub closes.
func (h *Hub) receive(l Listener) error {
	pinged := false
	for {
		ctx, cancel := context.WithTimeout(h.ctx, h.opts.PingInterval)
		msg, err := l.Receive(ctx)
		cancel()
		switch {
		case err == nil:
			pinged = false
			if msg != "" {
				h.deliver(msg)
			}
		case h.ctx.Err() != nil:
			return h.ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			if pinged {
				return errNoAnswer
			}
			l.Ping()
			pinged = true
		default:
			return err
		}
	}
}

// deliver decodes a message and hands its events to the handlers.
func (h *Hub) deliver(msg string) {
	origin, events, ok := decode(msg)
	if !ok {
		h.st.invalid.Add(1)
		return
	}
	if origin == h.origin {
		return
	}
	h.st.received.Add(1)
	h.hmu.Lock()
	defer h.hmu.Unlock()
	for _, e := range events {
		if !valid(e) {
			h.st.invalid.Add(1)
			continue
		}
		h.st.events.Add(1)
		for _, hd := range h.handlers {
			if hd.Event != nil {
				hd.Event(e)
			}
		}
	}
}

func (h *Hub) setDown(down bool) {
	h.hmu.Lock()
	defer h.hmu.Unlock()
	if h.down == down {
		return
	}
	h.down = down
	for _, hd := range h.handlers {
		if hd.Degraded != nil {
			hd.Degraded(down)
		}
	}
}

// Flush waits until every event published so far has been sent, or ctx is
// done.
func (h *Hub) Flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		h.mu.Lock()
		empty := !h.all && len(h.pending) == 0 && !h.busy
		h.mu.Unlock()
		if empty {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close sends what is pending (until ctx is done), then stops listening
// and sending. It is safe to call more than once.
func (h *Hub) Close(ctx context.Context) error {
	var err error
	h.once.Do(func() {
		close(h.closing)
		select {
		case <-h.sender:
		case <-ctx.Done():
			err = ctx.Err()
		}
		h.cancel()
		h.hmu.Lock()
		if h.current != nil {
			h.current.Close()
		}
		h.hmu.Unlock()
		<-h.sender
		h.stopped.Wait()
	})
	return err
}

// Stats returns the Hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	pending := len(h.pending)
	if h.all {
		pending++
	}
	h.mu.Unlock()
	h.hmu.Lock()
	down := h.down && h.listening
	h.hmu.Unlock()
	s := Stats{
		Published: h.st.published.Load(), Coalesced: h.st.coalesced.Load(), Overflows: h.st.overflows.Load(),
		Sent: h.st.sent.Load(), SendErrors: h.st.sendErrors.Load(),
		Received: h.st.received.Load(), Events: h.st.events.Load(), Invalid: h.st.invalid.Load(),
		Connects: h.st.connects.Load(), Disconnects: h.st.disconnects.Load(),
		Pending: pending,
	}
	if h.st.subscribed.Load() {
		s.Subscribed = 1
	}
	if down {
		s.Degraded = 1
	}
	return s
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}
