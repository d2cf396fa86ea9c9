package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
)

// The store keeps a key's metadata, tags and networks, and the notices
// sent about it: two instances looking for keys about to expire at the
// same time mail the owner once.
func ExampleStore_KeysExpiring() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "apikit")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	open := func() *store.Store { // one handle per instance
		st, err := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
		if err != nil {
			log.Fatal(err)
		}
		if _, err := st.Migrate(ctx, store.Keys); err != nil {
			log.Fatal(err)
		}
		return st
	}
	a, b := open(), open()
	defer a.Close()
	defer b.Close()

	issued := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	user, _, err := a.CreateUser(ctx, "ada@example.com", issued)
	if err != nil {
		log.Fatal(err)
	}
	m := apikey.NewManager(a, apikey.ManagerOptions{Prefix: "app_live", Now: func() time.Time { return issued }})
	k, _, err := m.Issue(ctx, user, apikey.IssueOptions{Name: "ci", ExpiresIn: 30 * 24 * time.Hour,
		Metadata: json.RawMessage(`{"team":"billing"}`), Tags: []string{"ci"},
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	if err != nil {
		log.Fatal(err)
	}
	stored, _, err := b.Key(ctx, k.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(stored.Metadata), stored.Tags, stored.AllowedCIDRs)

	// Six days before the key expires, both instances run.
	now := func() time.Time { return issued.Add(24 * 24 * time.Hour) }
	notify := func(ctx context.Context, n apikey.Notice) error {
		fmt.Println("mail to user", n.Key.UserID, "about", n.Kind)
		return nil
	}
	for _, st := range []*store.Store{a, b} {
		n := apikey.NewExpiryNotifier(st, apikey.ExpiryOptions{Notify: notify, Now: now})
		if _, err := n.RunOnce(ctx); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// {"team":"billing"} [ci] [203.0.113.0/24]
	// mail to user 1 about key.expires_in_7_days
}

// The security log, in the store: append events as they happen, list a
// user's newest first, and keep them after the account is deleted.
func ExampleStore_AppendAuditEvent() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Keys, store.Audit); err != nil {
		log.Fatal(err)
	}
	t := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	clock := func() time.Time { t = t.Add(time.Minute); return t }
	l := audit.New(st, audit.Options{Now: clock})

	user, _, err := st.CreateUser(ctx, "ada@example.com", t)
	if err != nil {
		log.Fatal(err)
	}
	// A request's context carries who acted and from where (see
	// audit.Middleware and audit.WithActor).
	rctx := audit.WithSource(ctx, audit.Source{Actor: audit.Actor{Kind: audit.ActorUser, ID: fmt.Sprint(user)},
		IP: netip.MustParseAddr("203.0.113.7"), UserAgent: "Firefox"})
	for _, kind := range []audit.Kind{audit.SignIn, audit.KeyIssued} {
		if _, err := l.Append(rctx, audit.Event{Kind: kind, UserID: user}); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := st.DeleteUser(ctx, user, store.DeleteUserOptions{}); err != nil {
		log.Fatal(err)
	}
	if _, err := l.Append(rctx, audit.Event{Kind: audit.AccountDeleted, UserID: user}); err != nil {
		log.Fatal(err)
	}

	events, _, err := l.List(ctx, user, audit.Page{Limit: 50})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range events {
		fmt.Println(e.Time.Format(time.TimeOnly), e.Kind, e.Actor.Kind, e.IP)
	}
	// Output:
	// 15:12:26 account.deleted user 203.0.113.7
	// 15:11:26 key.issued user 203.0.113.7
	// 15:10:26 session.signed_in user 203.0.113.7
}
