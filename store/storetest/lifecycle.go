package storetest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/audit/audittest"
	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/store"
)

// KeyLifecycleStore is package apikey's optional store interfaces: a key's
// attributes ([apikey.AttributeStore]), the expiry windows and notice
// claims ([apikey.ExpiryStore], [apikey.NoticePruner]). It is optional:
// [Run] tests it (with apikeytest) when the backend implements it.
type KeyLifecycleStore = apikeytest.Backend

var (
	_ KeyLifecycleStore = (*store.Store)(nil)
	_ audit.Store       = (*store.Store)(nil)
)

func testKeyLifecycle(t *testing.T, newBackend func(t *testing.T) Backend) {
	apikeytest.Run(t, func(t *testing.T) apikeytest.Backend { return implements[KeyLifecycleStore](t, newBackend(t)) })

	// A deleted account's keys take their notice claims with them: a key
	// of the same id later (ids are random, but nothing forbids it) starts
	// with no notice sent.
	t.Run("DeleteUserForgetsNotices", func(t *testing.T) {
		b := newBackend(t)
		k, d := implements[KeyLifecycleStore](t, b), implements[UserDirectory](t, b)
		ctx := conformance.Context(t)
		gone, stays := mustUser(t, b, "gone@example.com"), mustUser(t, b, "stays@example.com")
		mustCreateKey(t, b, newKey(gone, keyID(1), epoch))
		mustCreateKey(t, b, newKey(stays, keyID(2), epoch))
		claim := func(id string) apikey.NoticeClaim {
			return apikey.NoticeClaim{Kind: apikey.NoticeExpiresSoon, KeyID: id, Due: epoch.Add(90 * 24 * time.Hour)}
		}
		for _, id := range []string{keyID(1), keyID(2)} {
			if won, err := k.ClaimNotice(ctx, claim(id), epoch); err != nil || !won {
				t.Fatalf("ClaimNotice(%s) = %v, %v", id, won, err)
			}
		}
		if found, err := d.DeleteUser(ctx, gone, store.DeleteUserOptions{}); err != nil || !found {
			t.Fatalf("DeleteUser = %v, %v", found, err)
		}
		mustCreateKey(t, b, newKey(stays, keyID(1), epoch))
		if won, err := k.ClaimNotice(ctx, claim(keyID(1)), epoch); err != nil || !won {
			t.Errorf("a claim of the deleted account's key survived it: ClaimNotice = %v, %v", won, err)
		}
		if won, err := k.ClaimNotice(ctx, claim(keyID(2)), epoch); err != nil || won {
			t.Errorf("the other account's claim was deleted: ClaimNotice = %v, %v", won, err)
		}
	})
}

func testAudit(t *testing.T, newBackend func(t *testing.T) Backend) {
	audittest.Run(t, func(t *testing.T) audit.Store { return implements[audit.Store](t, newBackend(t)) })

	// The log outlives the account, so that its deletion is on record.
	t.Run("DeleteUserKeepsTheLog", func(t *testing.T) {
		b := newBackend(t)
		a, d := implements[audit.Store](t, b), implements[UserDirectory](t, b)
		ctx := conformance.Context(t)
		gone := mustUser(t, b, "gone@example.com")
		user := audit.Actor{Kind: audit.ActorUser}
		if _, err := a.AppendAuditEvent(ctx, audit.Event{Time: epoch, Kind: audit.SignIn, UserID: gone, Actor: user}); err != nil {
			t.Fatal(err)
		}
		if found, err := d.DeleteUser(ctx, gone, store.DeleteUserOptions{}); err != nil || !found {
			t.Fatalf("DeleteUser = %v, %v", found, err)
		}
		if _, err := a.AppendAuditEvent(ctx, audit.Event{Time: epoch.Add(time.Second), Kind: audit.AccountDeleted, UserID: gone, Actor: user}); err != nil {
			t.Fatalf("appending the account's deletion after DeleteUser: %v", err)
		}
		es, err := a.AuditEventsByUser(ctx, gone, 0, 10)
		if err != nil || len(es) != 2 || es[0].Kind != audit.AccountDeleted || es[1].Kind != audit.SignIn {
			t.Errorf("the deleted account's log = %+v, %v; want its deletion and sign-in", es, err)
		}
	})
}

// RunNoticeInstances checks that two handles on one database, as two
// instances of a service have, share notice claims: of concurrent claims
// of one notice through both, exactly one is won. newPair returns two
// handles on one fresh, migrated database.
func RunNoticeInstances(t *testing.T, newPair func(t *testing.T) (apikeytest.NoticeBackend, apikeytest.NoticeBackend)) {
	a, b := newPair(t)
	ctx := conformance.Context(t)
	user, _, err := a.CreateUser(ctx, "ada@example.com", epoch)
	if err != nil {
		t.Fatal(err)
	}
	const keys = 20
	for i := range keys {
		if err := a.CreateKey(ctx, newKey(user, keyID(i), epoch), 0); err != nil {
			t.Fatal(err)
		}
	}
	var wins [keys]atomic.Int32
	handles := []apikeytest.NoticeBackend{a, b, a, b}
	conformance.Together(len(handles), func(h int) {
		for i := range keys {
			won, err := handles[h].ClaimNotice(ctx, apikey.NoticeClaim{Kind: apikey.NoticeExpiresTomorrow, KeyID: keyID(i), Due: epoch}, epoch)
			if err != nil {
				t.Errorf("ClaimNotice: %v", err)
				return
			}
			if won {
				wins[i].Add(1)
			}
		}
	})
	for i := range keys {
		if n := wins[i].Load(); n != 1 {
			t.Errorf("key %s: %d of 4 concurrent claims through two handles won, want exactly 1", keyID(i), n)
		}
	}
}
