package store_test

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log"
	"path"
	"time"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
)

// An application that uses only API keys migrates only the users and
// API key tables; adding sign-in later migrates the login tables then.
func ExampleStore_Migrate() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	applied, err := st.Migrate(ctx, store.Keys)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range applied {
		fmt.Println(m.Scope, m.Name)
	}

	// A later release adds magic-link sign-in.
	applied, err = st.Migrate(ctx, store.Keys, store.Login)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range applied {
		fmt.Println(m.Scope, m.Name)
	}
	// Output:
	// apikit/users 0001_users.sql
	// apikit/keys 0001_api_keys.sql
	// apikit/keys 0002_key_lifecycle.sql
	// apikit/login 0001_login.sql
	// apikit/login 0002_email_changes.sql
	// apikit/login 0003_login_codes.sql
	// apikit/login 0004_session_details.sql
}

// The application's own migrations, one directory per dialect in one
// embed: testdata/migrations/sqlite and testdata/migrations/postgres.
//
//go:embed testdata/migrations
var appMigrations embed.FS

// An application keeps its own tables next to apikit's, versioned apart
// under its own scope, and ships the SQL of each dialect it runs on: the
// store's dialect name picks the directory.
func ExampleStore_MigrateScope() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:") // or postgres.Open: the same code runs the postgres directory
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Keys); err != nil {
		log.Fatal(err)
	}

	mine, err := fs.Sub(appMigrations, path.Join("testdata/migrations", st.Dialect().Name))
	if err != nil {
		log.Fatal(err)
	}
	applied, err := st.MigrateScope(ctx, "notes", mine)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Dialect().Name, applied[0].Scope, applied[0].Name)

	// Without fs.Sub, the error says what is missing.
	_, err = st.MigrateScope(ctx, "notes", appMigrations)
	fmt.Println(err)
	// Output:
	// sqlite notes 0001_notes.sql
	// store: migrations of scope "notes": no <version>_<name>.sql files at the root of the fs.FS (it holds the directories testdata: pass fs.Sub of one)
}

// Users are created by sign-in and sign-up, and administered by the
// application: read, listed a page at a time, deleted with what they own.
func ExampleStore_Users() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil { // every feature
		log.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, email := range []string{"Ada@Example.com", "grace@example.com", "alan@example.com"} {
		if _, _, err := st.CreateUser(ctx, email, now); err != nil {
			log.Fatal(err)
		}
	}

	// Page through all users, two at a time, by id.
	for after := int64(0); ; {
		page, err := st.Users(ctx, after, 2)
		if err != nil {
			log.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, u := range page {
			fmt.Println(u.ID, u.Email, u.CreatedAt.Format(time.DateOnly))
		}
		after = page[len(page)-1].ID
	}

	// Delete one, with its keys, sessions and login tokens; its billing
	// history stays unless DeleteSubscriptions is set.
	found, err := st.DeleteUser(ctx, 2, store.DeleteUserOptions{})
	fmt.Println("deleted:", found, err)
	_, found, _ = st.User(ctx, 2)
	fmt.Println("still there:", found)
	// Output:
	// 1 ada@example.com 2026-01-02
	// 2 grace@example.com 2026-01-02
	// 3 alan@example.com 2026-01-02
	// deleted: true <nil>
	// still there: false
}

// Quotas survive restarts: a plan.Flusher writes the usage deciders admit
// to the store in batches (additive, so instances add up), and deciders
// restore a counter they do not hold from it. Overrides of a customer's
// limits are stored too, and loaded for the decider.
func ExampleStore_AddUsage() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Keys, store.Plans); err != nil {
		log.Fatal(err)
	}

	// A negotiated deal for user 42: 50 requests a second.
	vip := plan.Identity{Budget: plan.PerUser, ID: "42"}
	if err := st.SetOverride(ctx, vip, plan.Override{Limits: []ratelimit.Limit{ratelimit.PerSecond(50)}}, time.Now()); err != nil {
		log.Fatal(err)
	}
	// Deciders read overrides from memory; the cache reloads them every
	// minute, so that a change made by the operator's CLI applies.
	overrides, err := st.OverrideCache(ctx, time.Minute, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer overrides.Close()

	usage := plan.NewFlusher(st, plan.FlusherOptions{})
	decider := plan.NewMemory(plan.MemoryOptions{Usage: usage, Overrides: overrides})
	hobby := &plan.Plan{Name: "hobby", Limits: []ratelimit.Limit{ratelimit.PerSecond(10)},
		Quota: plan.Quota{Count: 10_000, Period: plan.Month}}
	now := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	for range 3 {
		if _, err := decider.Decide(ctx, plan.Request{Plan: hobby, User: "42", Cost: 5, Now: now}); err != nil {
			log.Fatal(err)
		}
	}
	if err := usage.Close(ctx); err != nil { // at shutdown: nothing is lost
		log.Fatal(err)
	}

	start, _ := plan.Month.Bounds(now, time.Time{})
	used, err := st.Usage(ctx, vip.String(), plan.Month, start)
	vipOverride, _ := overrides.Override(vip)
	fmt.Println(used, err, vipOverride.Limits)
	// Output:
	// 15 <nil> [50/s]
}
