package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
)

// A stored network that does not parse fails the read: dropping it would
// serve the key from everywhere.
func TestKeyWithACorruptNetworkIsAnError(t *testing.T) {
	backends(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		user, _, err := st.CreateUser(ctx, "ada@example.com", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if err := st.CreateKey(ctx, apikey.Key{ID: "4tQ2x9LmZpB7", UserID: user, Prefix: "fav_live", SecretHash: make([]byte, 32),
			Active: true, CreatedAt: now, UpdatedAt: now}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := st.DB().ExecContext(ctx, `UPDATE api_keys SET allowed_cidrs = '203.0.113.0/24 not-a-network'`); err != nil {
			t.Fatal(err)
		}
		if k, found, err := st.Key(ctx, "4tQ2x9LmZpB7"); err == nil {
			t.Errorf("Key = %+v, %v, nil; want an error", k, found)
		}
		if ks, err := st.KeysByUser(ctx, user); err == nil {
			t.Errorf("KeysByUser = %+v, nil; want an error", ks)
		}
	})
}

// Tags are stored space-separated: one with a space is refused, not split.
func TestCreateKeyRefusesATagWithASpace(t *testing.T) {
	st := testdb.SQLite(t)
	ctx := context.Background()
	user, _, err := st.CreateUser(ctx, "ada@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"two words", "", "tab\there"} {
		now := time.Now()
		if err := st.CreateKey(ctx, apikey.Key{ID: "4tQ2x9LmZpB7", UserID: user, Prefix: "fav_live", SecretHash: make([]byte, 32),
			Active: true, CreatedAt: now, UpdatedAt: now, Tags: []string{"ci", tag}}, 0); err == nil {
			t.Errorf("CreateKey with tag %q succeeded", tag)
		}
	}
}
