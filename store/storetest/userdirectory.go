package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/billing/subscription"
	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/store"
)

// UserDirectory is the account administration package store offers
// ([store.Store.User], [store.Store.Users], [store.Store.DeleteUser]). It is
// optional: [Run] tests it when the backend implements it.
type UserDirectory interface {
	User(ctx context.Context, id int64) (u store.User, found bool, err error)
	Users(ctx context.Context, after int64, limit int) ([]store.User, error)
	DeleteUser(ctx context.Context, id int64, opts store.DeleteUserOptions) (found bool, err error)
}

var _ UserDirectory = (*store.Store)(nil)

func testUserDirectory(t *testing.T, newBackend func(t *testing.T) Backend) {
	dir := func(t *testing.T) (Backend, UserDirectory) {
		b := newBackend(t)
		return b, implements[UserDirectory](t, b)
	}

	t.Run("GetAndPage", func(t *testing.T) {
		b, d := dir(t)
		ctx := conformance.Context(t)
		var ids []int64
		for i, email := range []string{"A@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"} {
			id, _, err := b.CreateUser(ctx, email, epoch.Add(time.Duration(i)*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		u, found, err := d.User(ctx, ids[0])
		want := store.User{ID: ids[0], Email: "a@example.com", CreatedAt: epoch, UpdatedAt: epoch}
		if err != nil || !found || u != want {
			t.Fatalf("User = %+v, %v, %v; want %+v", u, found, err, want)
		}
		proven := epoch.Add(time.Hour)
		if _, _, _, err := b.ConfirmEmail(ctx, "a@example.com", false, proven); err != nil {
			t.Fatal(err)
		}
		if u, _, _ := d.User(ctx, ids[0]); !u.VerifiedAt.Equal(proven) {
			t.Errorf("VerifiedAt after ConfirmEmail = %v; want %v", u.VerifiedAt, proven)
		}
		if u, found, err := d.User(ctx, 424242); err != nil || found || u != (store.User{}) {
			t.Errorf("User(unknown) = %+v, %v, %v; want zero, false, nil", u, found, err)
		}

		var got []int64
		pages := 0
		for after := int64(0); ; pages++ {
			page, err := d.Users(ctx, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 2 {
				t.Fatalf("Users(limit 2) returned %d users", len(page))
			}
			if len(page) == 0 {
				break
			}
			for _, u := range page {
				got = append(got, u.ID)
			}
			after = page[len(page)-1].ID
		}
		if len(got) != len(ids) || pages != 3 {
			t.Fatalf("paging by 2 gave ids %v in %d pages; want %v in 3", got, pages, ids)
		}
		for i := range ids {
			if got[i] != ids[i] {
				t.Fatalf("paging gave ids %v; want %v, in id order", got, ids)
			}
		}
		if all, err := d.Users(ctx, 0, 0); err != nil || len(all) != len(ids) {
			t.Errorf("Users(0, 0) = %d users, %v; want all %d (the default page)", len(all), err, len(ids))
		}
	})

	t.Run("DeleteCascades", func(t *testing.T) {
		for _, purge := range []bool{false, true} {
			b, d := dir(t)
			ctx := conformance.Context(t)
			type account struct {
				id    int64
				email string
			}
			var accs []account
			for i, email := range []string{"gone@example.com", "stays@example.com"} {
				id := mustUser(t, b, email)
				accs = append(accs, account{id, email})
				n := string(rune('a' + i))
				if err := b.CreateKey(ctx, apikey.Key{ID: "key" + n, UserID: id, Prefix: "t", SecretHash: mlHash("k" + n),
					Active: true, CreatedAt: epoch, UpdatedAt: epoch}, 0); err != nil {
					t.Fatal(err)
				}
				mustSession(t, b, "session"+n, id, epoch, time.Hour)
				mustLoginToken(t, b, "token"+n, email, epoch, time.Hour)
				if ec, ok := b.(magiclink.EmailChangeStore); ok {
					if err := ec.CreateEmailChange(ctx, magiclink.EmailChange{Hash: mlHash("change" + n), UserID: id,
						NewEmail: "new" + n + "@example.com", CreatedAt: epoch, ExpiresAt: epoch.Add(time.Hour)}); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := b.ApplyEvent(ctx, subscription.Event{ID: "evt_" + n, Type: "checkout.session.completed", ReceivedAt: epoch},
					subscription.Change{UserID: id, CustomerID: "cus_" + n, Subscription: subscription.Subscription{
						SubscriptionID: "sub_" + n, CustomerID: "cus_" + n, Status: "active", EventCreated: epoch.Truncate(time.Second)}}); err != nil {
					t.Fatal(err)
				}
				if _, err := b.ConsumeCheckoutSession(ctx, "cs_"+n, id, epoch); err != nil {
					t.Fatal(err)
				}
			}
			gone := accs[0].id
			found, err := d.DeleteUser(ctx, gone, store.DeleteUserOptions{DeleteSubscriptions: purge})
			if err != nil || !found {
				t.Fatalf("DeleteUser = %v, %v; want true, nil", found, err)
			}
			if found, err := d.DeleteUser(ctx, gone, store.DeleteUserOptions{}); err != nil || found {
				t.Errorf("DeleteUser again = %v, %v; want false, nil", found, err)
			}
			for i, a := range accs {
				n := string(rune('a' + i))
				want := i == 1 // the other account keeps everything
				if _, ok, err := d.User(ctx, a.id); err != nil || ok != want {
					t.Errorf("%s: User found = %v, %v; want %v", a.email, ok, err, want)
				}
				if _, ok, err := b.Key(ctx, "key"+n); err != nil || ok != want {
					t.Errorf("%s: Key found = %v, %v; want %v", a.email, ok, err, want)
				}
				if _, ok, err := b.Session(ctx, mlHash("session"+n)); err != nil || ok != want {
					t.Errorf("%s: Session found = %v, %v; want %v", a.email, ok, err, want)
				}
				if _, ok, err := b.ConsumeLoginToken(ctx, mlHash("token"+n), epoch); err != nil || ok != want {
					t.Errorf("%s: ConsumeLoginToken ok = %v, %v; want %v", a.email, ok, err, want)
				}
				if ec, ok := b.(magiclink.EmailChangeStore); ok {
					if _, _, _, ok, err := ec.ConsumeEmailChange(ctx, mlHash("change"+n), epoch); err != nil || ok != want {
						t.Errorf("%s: ConsumeEmailChange ok = %v, %v; want %v", a.email, ok, err, want)
					}
				}
				if cs, err := b.Customers(ctx, a.id); err != nil || (len(cs) == 1) != want {
					t.Errorf("%s: Customers = %v, %v; want linked: %v", a.email, cs, err, want)
				}
				sub, ok, err := b.SubscriptionByID(ctx, "sub_"+n)
				switch {
				case err != nil:
					t.Fatal(err)
				case want && (!ok || sub.UserID != a.id):
					t.Errorf("%s: subscription = %+v, %v; want it linked to %d", a.email, sub, ok, a.id)
				case !want && purge && ok:
					t.Errorf("%s: subscription kept with DeleteSubscriptions", a.email)
				case !want && !purge && (!ok || sub.UserID != 0):
					t.Errorf("%s: subscription = %+v, %v; want it kept as history, linked to no user", a.email, sub, ok)
				}
			}
			// The address is free again, for a new account with a new id.
			if id, created, err := b.CreateUser(ctx, "gone@example.com", epoch); err != nil || !created || id == gone {
				t.Errorf("CreateUser after DeleteUser = %d, %v, %v; want a new account", id, created, err)
			}
		}
	})
}
