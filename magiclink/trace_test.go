package magiclink_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/magiclink"
)

type traceKey struct{}

// traced records the calls of Options.Trace.
type traced struct {
	mu    sync.Mutex
	calls []traceCall
}

type traceCall struct {
	name   string
	parent any // the request's traceKey value, seen by Trace
	err    error
	ended  bool
}

func (tr *traced) trace(ctx context.Context, name string) (context.Context, func(error)) {
	tr.mu.Lock()
	i := len(tr.calls)
	tr.calls = append(tr.calls, traceCall{name: name, parent: ctx.Value(traceKey{})})
	tr.mu.Unlock()
	return context.WithValue(ctx, traceKey{}, "span"), func(err error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		tr.calls[i].err, tr.calls[i].ended = err, true
	}
}

func (tr *traced) ended() []traceCall {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []traceCall
	for _, c := range tr.calls {
		if c.ended {
			out = append(out, c)
		}
	}
	return out
}

// seenBy records the traceKey value of the contexts a Mailer receives.
type seenBy struct {
	magiclink.Mailer
	mu   sync.Mutex
	seen []any
}

func (m *seenBy) Send(ctx context.Context, msg magiclink.Message) error {
	m.mu.Lock()
	m.seen = append(m.seen, ctx.Value(traceKey{}))
	m.mu.Unlock()
	return m.Mailer.Send(ctx, msg)
}

// Options.Trace spans each queued email, in the context of the request
// that queued it, and the Mailer sends in the context Trace returned.
func TestTraceMail(t *testing.T) {
	tr := &traced{}
	var m *seenBy
	h := newHarness(t, setup{
		options: func(o *magiclink.Options) { o.Trace = tr.trace },
		mailer:  func(inner magiclink.Mailer) magiclink.Mailer { m = &seenBy{Mailer: inner}; return m },
	})
	h.user("traced@example.com")
	ctx := context.WithValue(context.Background(), traceKey{}, "request")
	if err := h.svc.SendLink(ctx, "traced@example.com"); err != nil {
		t.Fatal(err)
	}
	// An address with no account: handled (no email due), not an error.
	if err := h.svc.SendLink(ctx, "nobody@example.com"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(tr.ended()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	calls := tr.ended()
	if len(calls) != 2 {
		t.Fatalf("Trace ended %d times, want 2: %+v", len(calls), calls)
	}
	for _, c := range calls {
		if c.name != "magiclink.mail" || c.parent != "request" || c.err != nil {
			t.Errorf("Trace call %+v; want magiclink.mail in the request's context, no error", c)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.seen) != 1 || m.seen[0] != "span" {
		t.Errorf("the Mailer saw contexts %v; want one, Trace's", m.seen)
	}
}
