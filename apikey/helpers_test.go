package apikey_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
)

// faultyStore wraps a real store; while down, every call fails as an
// unreachable database would. It counts key lookups.
type faultyStore struct {
	apikey.Store
	down    atomic.Bool
	lookups atomic.Int64
}

var errDown = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

func (f *faultyStore) Key(ctx context.Context, id string) (apikey.Key, bool, error) {
	f.lookups.Add(1)
	if f.down.Load() {
		return apikey.Key{}, false, errDown
	}
	return f.Store.Key(ctx, id)
}

func (f *faultyStore) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.TouchKeys(ctx, used)
}

// fixture is a store with one user, a Verifier and a linked Manager.
type fixture struct {
	st     *store.Store
	fs     *faultyStore
	clock  *fakeclock.Clock
	v      *apikey.Verifier
	m      *apikey.Manager
	userID int64
}

func newFixture(t testing.TB, vo apikey.VerifierOptions) *fixture {
	t.Helper()
	st := testdb.SQLite(t)
	f := &fixture{st: st, fs: &faultyStore{Store: st}, clock: fakeclock.New(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))}
	if vo.Now == nil {
		vo.Now = f.clock.Now
	}
	f.v = apikey.NewVerifier(f.fs, vo)
	t.Cleanup(func() { f.v.Close() })
	f.m = apikey.NewManager(f.fs, apikey.ManagerOptions{Prefix: "fav_test", Verifier: f.v, Now: vo.Now})
	id, _, err := st.CreateUser(context.Background(), "ada@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.userID = id
	return f
}

func (f *fixture) issue(t testing.TB, opts apikey.IssueOptions) (apikey.Key, string) {
	t.Helper()
	k, tok, err := f.m.Issue(context.Background(), f.userID, opts)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return k, tok.Reveal()
}
