package apikey_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
)

// tracer records the spans a Trace hook was asked for, with their errors.
type tracer struct {
	mu    sync.Mutex
	spans []string
	errs  []error
}

type spanKey struct{}

func (tr *tracer) trace(ctx context.Context, name string) (context.Context, func(error)) {
	return context.WithValue(ctx, spanKey{}, name), func(err error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		tr.spans = append(tr.spans, name)
		tr.errs = append(tr.errs, err)
	}
}

func (tr *tracer) take() ([]string, []error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s, e := tr.spans, tr.errs
	tr.spans, tr.errs = nil, nil
	return s, e
}

// spanStore records the span of the context its Key runs in, which must be
// the one the hook returned.
type spanStore struct {
	*apikeytest.MemoryStore
	span *any
}

func (s spanStore) Key(ctx context.Context, id string) (apikey.Key, bool, error) {
	*s.span = ctx.Value(spanKey{})
	return s.MemoryStore.Key(ctx, id)
}

func TestTrace(t *testing.T) {
	ctx := context.Background()
	mem := apikeytest.NewMemoryStore()
	var keySpan any
	st := spanStore{mem, &keySpan}
	var tr tracer
	v := apikey.NewVerifier(st, apikey.VerifierOptions{Trace: tr.trace, TouchInterval: time.Hour})
	defer v.Close()
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "sk_test", Verifier: v, Trace: tr.trace})
	user, _, _ := mem.CreateUser(ctx, "ada@example.com", time.Now())

	k, _, err := m.Issue(ctx, user, apikey.IssueOptions{Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Rename(ctx, k.ID, "ci 2"); err != nil {
		t.Fatal(err)
	}
	if err := m.Deactivate(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.Activate(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	_, tok, err := m.Roll(ctx, k.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	spans, _ := tr.take()
	want := []string{"apikey.CreateKey", "apikey.RenameKey", "apikey.SetKeyActive", "apikey.SetKeyActive", "apikey.RollKey"}
	if !slices.Equal(spans, want) {
		t.Errorf("Manager spans = %q, want %q", spans, want)
	}

	// A miss is traced, a hit is not.
	for range 3 {
		if _, err := v.Verify(ctx, tok.Reveal()); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	spans, errs := tr.take()
	if want := []string{"apikey.Key", "apikey.TouchKeys"}; !slices.Equal(spans, want) {
		t.Errorf("Verifier spans = %q, want %q", spans, want)
	}
	if keySpan != "apikey.Key" {
		t.Errorf("the lookup ran in the context of span %v, want apikey.Key's", keySpan)
	}
	if errs[0] != nil || errs[1] != nil {
		t.Errorf("span errors = %v, want none", errs)
	}

	// A failure ends the span with the store's error.
	boom := errors.New("boom")
	mem.Fail(boom)
	v.InvalidateAll()
	if _, err := v.Verify(ctx, tok.Reveal()); !errors.Is(err, apikey.ErrUnavailable) {
		t.Fatalf("Verify with the store down = %v, want ErrUnavailable", err)
	}
	if err := m.Revoke(ctx, k.ID); err == nil {
		t.Fatal("Revoke with the store down succeeded")
	}
	spans, errs = tr.take()
	if want := []string{"apikey.Key", "apikey.RevokeKey"}; !slices.Equal(spans, want) {
		t.Errorf("spans with the store down = %q, want %q", spans, want)
	}
	for i, err := range errs {
		if !errors.Is(err, boom) {
			t.Errorf("span %s ended with %v, want the store's error", spans[i], err)
		}
	}
}
