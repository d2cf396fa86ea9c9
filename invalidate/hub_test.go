package invalidate_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/invalidate"
)

// fake is an in-memory Transport: every listener gets every message, a
// listener can be made silent (no answers, as behind a dead network), and
// sends can be made to fail.
type fake struct {
	mu        sync.Mutex
	listeners []*fakeListener
	failSend  atomic.Bool
	silent    atomic.Bool
	sent      atomic.Int64
}

type fakeListener struct {
	f      *fake
	msgs   chan string
	closed chan struct{}
	once   sync.Once
}

func (f *fake) MaxMessage() int { return 100 }

func (f *fake) Send(_ context.Context, msg string) error {
	if f.failSend.Load() {
		return errors.New("fake: send failed")
	}
	f.sent.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.listeners {
		select {
		case l.msgs <- msg:
		case <-l.closed:
		}
	}
	return nil
}

func (f *fake) Listen(context.Context) (invalidate.Listener, error) {
	l := &fakeListener{f: f, msgs: make(chan string, 1000), closed: make(chan struct{})}
	f.mu.Lock()
	f.listeners = append(f.listeners, l)
	f.mu.Unlock()
	return l, nil
}

func (l *fakeListener) Receive(ctx context.Context) (string, error) {
	select {
	case m := <-l.msgs:
		return m, nil
	case <-l.closed:
		return "", errors.New("fake: closed")
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (l *fakeListener) Ping() {
	if l.f.silent.Load() {
		return
	}
	select {
	case l.msgs <- "":
	default:
	}
}

func (l *fakeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func closeHub(t *testing.T, h *invalidate.Hub) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		h.Close(ctx)
	})
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A listener that stops answering (a network that drops packets without
// resetting) is found out by its unanswered ping, within two ping
// intervals, and replaced.
func TestSilentConnection(t *testing.T) {
	f := &fake{}
	h := invalidate.New(f, invalidate.Options{PingInterval: 50 * time.Millisecond})
	closeHub(t, h)
	var down atomic.Int32
	var states []bool
	var mu sync.Mutex
	h.Subscribe(invalidate.Handler{Degraded: func(d bool) {
		mu.Lock()
		states = append(states, d)
		mu.Unlock()
		if d {
			down.Add(1)
		}
	}})
	eventually(t, "subscribed", func() bool { return h.Stats().Subscribed == 1 })
	time.Sleep(200 * time.Millisecond) // answered pings keep it up
	if s := h.Stats(); s.Disconnects != 0 {
		t.Fatalf("a connection that answers its pings was dropped: %+v", s)
	}
	f.silent.Store(true)
	start := time.Now()
	eventually(t, "silent connection noticed", func() bool { return h.Stats().Disconnects == 1 })
	t.Logf("silent connection noticed after %v (ping interval 50ms)", time.Since(start))
	f.silent.Store(false)
	eventually(t, "subscribed again", func() bool { return h.Stats().Connects >= 2 && h.Stats().Subscribed == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(states) < 4 || !states[0] || states[1] || !states[2] || states[3] {
		t.Errorf("handler told %v, want [true false true false …]", states)
	}
}

// Failed sends are retried with backoff, and nothing published is lost;
// duplicates merge; a full outbox collapses into one Everything.
func TestSendRetryAndBounds(t *testing.T) {
	f := &fake{}
	pub := invalidate.New(f, invalidate.Options{MaxPending: 10, MaxBackoff: 50 * time.Millisecond})
	closeHub(t, pub)
	sub := invalidate.New(f, invalidate.Options{})
	closeHub(t, sub)
	var mu sync.Mutex
	got := map[invalidate.Event]int{}
	sub.Subscribe(invalidate.Handler{Event: func(e invalidate.Event) {
		mu.Lock()
		got[e]++
		mu.Unlock()
	}})
	eventually(t, "subscribed", func() bool { return sub.Stats().Subscribed == 1 })

	f.failSend.Store(true)
	pub.Publish(invalidate.Key("aaaaaaaaaaaa"), invalidate.Key("aaaaaaaaaaaa"), invalidate.User(7))
	eventually(t, "a failed send", func() bool { return pub.Stats().SendErrors > 0 })
	f.failSend.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivered after the retry", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got[invalidate.Key("aaaaaaaaaaaa")] == 1 && got[invalidate.User(7)] == 1
	})
	if s := pub.Stats(); s.Coalesced != 1 || s.Published != 3 {
		t.Errorf("stats %+v, want 3 published, 1 coalesced", s)
	}

	// Eleven distinct events while sends fail: the outbox never holds
	// more than MaxPending, and collapses into Everything. Sends fail
	// until it has: a sender that took some of the events before they
	// were all published holds them until its send fails and puts them
	// back.
	f.failSend.Store(true)
	for i := range 11 {
		pub.Publish(invalidate.User(int64(100 + i)))
		if p := pub.Stats().Pending; p > 10 {
			t.Errorf("%d events pending, more than MaxPending 10", p)
		}
	}
	eventually(t, "the outbox collapsed", func() bool { return pub.Stats().Overflows > 0 })
	f.failSend.Store(false)
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Everything delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got[invalidate.Event{Kind: invalidate.Everything}] == 1
	})
	if s := pub.Stats(); s.Overflows != 1 {
		t.Errorf("overflows %d, want 1", s.Overflows)
	}
}

// Events that cannot be carried (ids with spaces or of the wrong form) are
// refused at Publish, so nothing a caller passes can forge other events in
// a message; messages of another format are counted and ignored.
func TestInvalid(t *testing.T) {
	f := &fake{}
	pub := invalidate.New(f, invalidate.Options{})
	closeHub(t, pub)
	sub := invalidate.New(f, invalidate.Options{})
	closeHub(t, sub)
	var n atomic.Int32
	sub.Subscribe(invalidate.Handler{Event: func(invalidate.Event) { n.Add(1) }})
	eventually(t, "subscribed", func() bool { return sub.Stats().Subscribed == 1 })
	pub.Publish(invalidate.Key("a u:1"), invalidate.Key(""), invalidate.Event{Kind: invalidate.UserChanged, ID: "007"}, invalidate.Event{Kind: 'x', ID: "1"})
	if s := pub.Stats(); s.Invalid != 4 {
		t.Errorf("Invalid = %d, want 4", s.Invalid)
	}
	f.Send(context.Background(), "something else")
	f.Send(context.Background(), "apikit1 someone k:bad/id u:-1")
	eventually(t, "garbage counted", func() bool { return sub.Stats().Invalid == 3 })
	if n.Load() != 0 {
		t.Errorf("%d events delivered from garbage", n.Load())
	}
}

// A Nop bus is a single instance's: nothing is sent, nothing degrades.
func TestNop(t *testing.T) {
	var b invalidate.Bus = &invalidate.Nop{}
	called := false
	b.Subscribe(invalidate.Handler{Degraded: func(bool) { called = true }})
	b.Publish(invalidate.Key("aaaaaaaaaaaa"))
	if called || b.Stats().Published != 1 {
		t.Errorf("Nop: degraded called %v, stats %+v", called, b.Stats())
	}
}
