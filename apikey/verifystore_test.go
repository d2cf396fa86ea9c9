package apikey_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
)

// lightStore implements apikey.VerifyStore: its KeyForVerify leaves out
// the three timestamps, and its Key fails, so that a Verifier that asked
// Key, or read what KeyForVerify leaves out, would be caught.
type lightStore struct {
	*apikeytest.MemoryStore
	light int
}

var errNotLight = errors.New("Key called on a verification")

func (s *lightStore) Key(context.Context, string) (apikey.Key, bool, error) {
	return apikey.Key{}, false, errNotLight
}

func (s *lightStore) KeyForVerify(ctx context.Context, id string) (apikey.Key, bool, error) {
	s.light++
	k, found, err := s.MemoryStore.Key(ctx, id)
	k.CreatedAt, k.UpdatedAt, k.LastUsedAt = time.Time{}, time.Time{}, time.Time{}
	return k, found, err
}

// A Verifier over a VerifyStore looks keys up with KeyForVerify, and
// verifies, refuses and reports them as it does with Key: it reads none
// of the timestamps KeyForVerify may leave out.
func TestVerifierUsesVerifyStore(t *testing.T) {
	ctx := context.Background()
	mem := apikeytest.NewMemoryStore()
	s := &lightStore{MemoryStore: mem}
	v := apikey.NewVerifier(s, apikey.VerifierOptions{})
	defer v.Close()
	m := apikey.NewManager(mem, apikey.ManagerOptions{Prefix: "sk_test", Verifier: v})
	user, _, _ := mem.CreateUser(ctx, "ada@example.com", time.Now())
	k, tok, err := m.Issue(ctx, user, apikey.IssueOptions{Name: "ci", Scopes: []string{"favorites:read"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(ctx, tok.Reveal())
	if err != nil || p.KeyID != k.ID || p.UserID != user || p.Name != "ci" || len(p.Scopes) != 1 {
		t.Fatalf("Verify = %+v, %v; want the key's principal", p, err)
	}
	if s.light != 1 {
		t.Errorf("KeyForVerify called %d times, want 1", s.light)
	}
	if err := m.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok.Reveal()); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Verify after Revoke = %v, want ErrRevoked", err)
	}
	if s.light != 2 {
		t.Errorf("KeyForVerify called %d times, want 2 (Revoke invalidates the cache)", s.light)
	}
}
