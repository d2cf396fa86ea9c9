package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"testing/fstest"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/store/sqlite"
)

// Open a database file, apply apikit's migrations and then the
// application's own, versioned apart under their own scope.
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
	applied, err := st.Migrate(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range applied {
		fmt.Println("apikit:", m.Name)
	}

	mine := fstest.MapFS{"0001_notes.sql": {Data: []byte(`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);`)}}
	applied, err = st.MigrateScope(ctx, "myapp", mine)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("myapp:", applied[0].Name)

	// Running them again applies nothing.
	again, _ := st.Migrate(ctx)
	fmt.Println("again:", len(again))

	// The store is what apikey, magiclink and billing take.
	keys := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "app_test"})
	uid, _, _ := st.EnsureUser(ctx, "Ada@Example.com")
	k, _, err := keys.Issue(ctx, uid, apikey.IssueOptions{Name: "laptop"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("issued:", k.Name, k.Prefix)
	// Output:
	// apikit: 0001_users_api_keys.sql
	// apikit: 0002_magiclink.sql
	// apikit: 0003_billing.sql
	// apikit: 0004_verified_email.sql
	// myapp: 0001_notes.sql
	// again: 0
	// issued: laptop app_test
}
