package apikey_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
)

// gateStore's first Key call blocks until its context ends; later ones
// answer at once.
type gateStore struct {
	*apikeytest.MemoryStore
	entered chan struct{}
	calls   chan struct{}
}

func (g *gateStore) Key(ctx context.Context, id string) (apikey.Key, bool, error) {
	select {
	case g.calls <- struct{}{}:
		close(g.entered)
		<-ctx.Done()
		return apikey.Key{}, false, ctx.Err()
	default:
	}
	return g.MemoryStore.Key(ctx, id)
}

// The first caller of a miss runs the query under its own context: when it
// gives up, it gets its context's error, and a caller that joined the
// query asks again instead of failing with it.
func TestMissLeaderGivesUp(t *testing.T) {
	mem := apikeytest.NewMemoryStore()
	g := &gateStore{MemoryStore: mem, entered: make(chan struct{}), calls: make(chan struct{}, 1)}
	v := apikey.NewVerifier(g, apikey.VerifierOptions{})
	defer v.Close()
	m := apikey.NewManager(mem, apikey.ManagerOptions{Prefix: "sk_test"})
	user, _, _ := mem.CreateUser(context.Background(), "ada@example.com", time.Now())
	_, tok, err := m.Issue(context.Background(), user, apikey.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}

	leaderCtx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() { _, err := v.Verify(leaderCtx, tok.Reveal()); leader <- err }()
	<-g.entered
	follower := make(chan error, 1)
	go func() { _, err := v.Verify(context.Background(), tok.Reveal()); follower <- err }()
	waitMisses(t, v, 2) // the follower missed too: it joins the query in flight
	cancel()

	if err := <-leader; !errors.Is(err, context.Canceled) || !errors.Is(err, apikey.ErrUnavailable) {
		t.Errorf("the caller that gave up got %v, want ErrUnavailable wrapping context.Canceled", err)
	}
	select {
	case err := <-follower:
		if err != nil {
			t.Errorf("the caller that joined got %v, want the key verified", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller that joined is still waiting")
	}
}

// A store that panics on the query fails its caller (net/http recovers a
// handler's panic) and does not leave the callers that joined waiting.
func TestMissLeaderPanics(t *testing.T) {
	mem := apikeytest.NewMemoryStore()
	p := &panicStore{MemoryStore: mem, entered: make(chan struct{}), release: make(chan struct{})}
	v := apikey.NewVerifier(p, apikey.VerifierOptions{})
	defer v.Close()
	m := apikey.NewManager(mem, apikey.ManagerOptions{Prefix: "sk_test"})
	user, _, _ := mem.CreateUser(context.Background(), "ada@example.com", time.Now())
	_, tok, err := m.Issue(context.Background(), user, apikey.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer func() { _ = recover() }()
		_, _ = v.Verify(context.Background(), tok.Reveal())
	}()
	<-p.entered
	follower := make(chan error, 1)
	go func() { _, err := v.Verify(context.Background(), tok.Reveal()); follower <- err }()
	waitMisses(t, v, 2)
	close(p.release)
	select {
	case err := <-follower:
		if err != nil {
			t.Errorf("the caller that joined got %v, want the key verified (asked again)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller that joined a panicked query is still waiting")
	}
}

// panicStore's first Key call panics once released; later ones answer.
type panicStore struct {
	*apikeytest.MemoryStore
	entered, release chan struct{}
	once             bool
}

func (p *panicStore) Key(ctx context.Context, id string) (apikey.Key, bool, error) {
	if !p.once {
		p.once = true
		close(p.entered)
		<-p.release
		panic("store bug")
	}
	return p.MemoryStore.Key(ctx, id)
}

// waitMisses waits until v has counted n cache misses: a caller that
// missed goes on to join the query in flight (or, if it already ended, to
// run its own, which the tests accept too).
func waitMisses(t *testing.T, v *apikey.Verifier, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for v.Stats().CacheMisses < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d cache misses, want %d", v.Stats().CacheMisses, n)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond) // from the miss to the wait on the query
}
