package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"testing/fstest"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
)

// Open a database file, apply the migrations of the apikit features the
// application uses, and then the application's own, versioned apart under
// their own scope.
func ExampleOpen() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "apikit-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	st, err := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	applied, err := st.Migrate(ctx, store.Keys, store.Login)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range applied {
		fmt.Println(m.Scope, m.Name)
	}

	mine := fstest.MapFS{"0001_notes.sql": {Data: []byte(`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);`)}}
	applied, err = st.MigrateScope(ctx, "myapp", mine)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(applied[0].Scope, applied[0].Name)

	// Running them again applies nothing.
	again, err := st.Migrate(ctx, store.Keys, store.Login)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("again:", len(again))

	// The store is what apikey and magiclink take (and billing, with
	// store.Billing migrated).
	keys := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "app_test"})
	uid, _, _ := st.CreateUser(ctx, "Ada@Example.com", time.Now())
	k, _, err := keys.Issue(ctx, uid, apikey.IssueOptions{Name: "laptop"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("issued:", k.Name, k.Prefix)
	// Output:
	// apikit/users 0001_users.sql
	// apikit/keys 0001_api_keys.sql
	// apikit/keys 0002_key_lifecycle.sql
	// apikit/login 0001_login.sql
	// apikit/login 0002_email_changes.sql
	// apikit/login 0003_login_codes.sql
	// apikit/login 0004_session_details.sql
	// myapp 0001_notes.sql
	// again: 0
	// issued: laptop app_test
}

// Trace the store's operations, for OpenTelemetry or a log of slow
// queries: Trace starts a span named after the operation, and the function
// it returns ends it with the operation's error.
func ExampleOpenWith() {
	ctx := context.Background()
	st, err := sqlite.OpenWith(ctx, ":memory:", sqlite.Options{
		Trace: func(ctx context.Context, name string) (context.Context, func(error)) {
			// With OpenTelemetry: ctx, span := tracer.Start(ctx, name)
			return ctx, func(err error) { fmt.Println(name, err) }
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Keys); err != nil {
		log.Fatal(err)
	}
	if _, found, err := st.Key(ctx, "4tQ2x9LmZpB7"); err != nil || found {
		log.Fatal(found, err)
	}
	// Output:
	// store.Key <nil>
}
