// Package bustest is the conformance suite of invalidation buses
// (invalidate/pgbus, invalidate/redisbus) against a real server: delivery
// of every kind of event to other instances only, a flood that stays
// bounded, and a subscription cut mid-test that degrades its subscriber
// and comes back.
package bustest

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/faultproxy"
	"github.com/apikit/apikit/invalidate"
)

// NewHub returns a Hub on channel whose listening connection goes to addr
// (host:port: the server, or a proxy in front of it). It is closed when
// the test ends.
type NewHub func(t *testing.T, channel, addr string) *invalidate.Hub

// Channel returns a channel name of the test's own: channels are shared
// by every database (PostgreSQL) or the whole server (Redis).
func Channel() string { return "apikit_test_" + strings.ToLower(rand.Text()[:12]) }

// recorder is a Handler that keeps what it hears.
type recorder struct {
	mu     sync.Mutex
	events []invalidate.Event
	states []bool
	cond   chan struct{}
}

func newRecorder() *recorder { return &recorder{cond: make(chan struct{}, 1)} }

func (r *recorder) handler() invalidate.Handler {
	return invalidate.Handler{
		Event: func(e invalidate.Event) {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
			r.signal()
		},
		Degraded: func(down bool) {
			r.mu.Lock()
			r.states = append(r.states, down)
			r.mu.Unlock()
			r.signal()
		},
	}
}

func (r *recorder) signal() {
	select {
	case r.cond <- struct{}{}:
	default:
	}
}

// wait waits up to d for ok to hold.
func (r *recorder) wait(t *testing.T, d time.Duration, what string, ok func(events []invalidate.Event, states []bool) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		done := ok(r.events, r.states)
		r.mu.Unlock()
		if done {
			return time.Since(start)
		}
		select {
		case <-r.cond:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("%s: not within %v (events %v, states %v)", what, d, r.events, r.states)
		}
	}
}

func lastState(states []bool) (down, ok bool) {
	if len(states) == 0 {
		return false, false
	}
	return states[len(states)-1], true
}

func up(_ []invalidate.Event, s []bool) bool   { d, ok := lastState(s); return ok && !d }
func down(_ []invalidate.Event, s []bool) bool { d, ok := lastState(s); return ok && d }

// Run runs the suite against the server at addr (host:port).
func Run(t *testing.T, addr string, newHub NewHub) {
	t.Run("Delivery", func(t *testing.T) {
		ch := Channel()
		a, b := newHub(t, ch, addr), newHub(t, ch, addr)
		ra, rb := newRecorder(), newRecorder()
		a.Subscribe(ra.handler())
		b.Subscribe(rb.handler())
		ra.wait(t, 10*time.Second, "A subscribed", up)
		rb.wait(t, 10*time.Second, "B subscribed", up)
		want := []invalidate.Event{invalidate.Key("4tQ2x9LmZpB7"), invalidate.User(42), invalidate.Sessions(42)}
		a.Publish(want...)
		took := rb.wait(t, 5*time.Second, "B receives A's events", func(ev []invalidate.Event, _ []bool) bool { return len(ev) >= 3 })
		t.Logf("three events from A to B in %v", took)
		rb.mu.Lock()
		got := map[invalidate.Event]bool{}
		for _, e := range rb.events {
			got[e] = true
		}
		rb.mu.Unlock()
		for _, e := range want {
			if !got[e] {
				t.Errorf("B did not receive %v (got %v)", e, got)
			}
		}
		// A hears B, never itself.
		b.Publish(invalidate.Key("fromBfromBfr"))
		ra.wait(t, 5*time.Second, "A receives B's event", func(ev []invalidate.Event, _ []bool) bool { return len(ev) >= 1 })
		ra.mu.Lock()
		if len(ra.events) != 1 || ra.events[0] != invalidate.Key("fromBfromBfr") {
			t.Errorf("A received %v, want only B's event (never its own)", ra.events)
		}
		ra.mu.Unlock()
		// A counts a send once its transport returns, which may be after
		// B has already received it: wait for the count, bounded.
		var s invalidate.Stats
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if s = a.Stats(); s.Sent > 0 || time.Now().After(deadline) {
				break
			}
		}
		if s.Published != 3 || s.Sent == 0 || s.Subscribed != 1 || s.Degraded != 0 {
			t.Errorf("A's stats %+v", s)
		}
		if s := b.Stats(); s.Events != 3 || s.Received == 0 {
			t.Errorf("B's stats %+v", s)
		}
	})

	t.Run("Flood", func(t *testing.T) {
		ch := Channel()
		a, b := newHub(t, ch, addr), newHub(t, ch, addr)
		rb := newRecorder()
		b.Subscribe(rb.handler())
		rb.wait(t, 10*time.Second, "B subscribed", up)
		// 30,000 distinct events at once, against a MaxPending of 1,000
		// (the Hubs are built with it): the waiting set never grows past
		// it, and B hears either every event or an Everything.
		const n = 30_000
		for i := range n {
			a.Publish(invalidate.Key(fmt.Sprintf("key%09d", i)))
			if p := a.Stats().Pending; i%1000 == 0 && p > 1001 {
				t.Fatalf("%d events waiting, more than MaxPending", p)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		rb.wait(t, 10*time.Second, "B hears the flood", func(ev []invalidate.Event, _ []bool) bool {
			keys := 0
			for _, e := range ev {
				if e.Kind == invalidate.Everything {
					return true
				}
				keys++
			}
			return keys == n
		})
		s := a.Stats()
		t.Logf("flood of %d: %d messages, %d overflows; B: %d events", n, s.Sent, s.Overflows, b.Stats().Events)
	})

	t.Run("Reconnect", func(t *testing.T) {
		ch := Channel()
		proxy := faultproxy.Start(t, addr)
		a, b := newHub(t, ch, addr), newHub(t, ch, proxy.Addr())
		rb := newRecorder()
		b.Subscribe(rb.handler())
		rb.wait(t, 10*time.Second, "B subscribed", up)

		proxy.Down() // B's listening connection is cut
		took := rb.wait(t, 5*time.Second, "B degraded after its connection was cut", down)
		t.Logf("B degraded %v after the cut", took)
		if s := b.Stats(); s.Degraded != 1 || s.Subscribed != 0 || s.Disconnects != 1 {
			t.Errorf("B's stats while down: %+v", s)
		}
		a.Publish(invalidate.Key("lostlostlost")) // missed: B's caches run on the fallback TTL
		time.Sleep(300 * time.Millisecond)

		proxy.Up()
		took = rb.wait(t, 15*time.Second, "B subscribed again", up)
		t.Logf("B subscribed again %v after the proxy came back", took)
		a.Publish(invalidate.Key("afterafterab"))
		rb.wait(t, 5*time.Second, "B receives after reconnecting", func(ev []invalidate.Event, _ []bool) bool {
			for _, e := range ev {
				if e == invalidate.Key("afterafterab") {
					return true
				}
			}
			return false
		})
		if s := b.Stats(); s.Connects != 2 || s.Disconnects != 1 || s.Degraded != 0 {
			t.Errorf("B's stats after reconnecting: %+v", s)
		}
		rb.mu.Lock()
		if fmt.Sprint(rb.states) != "[true false true false]" {
			t.Errorf("B was told %v, want [true false true false] (down at Subscribe, up, down at the cut, up)", rb.states)
		}
		rb.mu.Unlock()
	})
}
