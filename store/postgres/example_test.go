package postgres_test

import (
	"context"
	"log"
	"os"

	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/postgres"
)

// Open a PostgreSQL database by URL and apply the migrations of the apikit
// features the service uses. Several instances may start at once:
// migrations take an advisory lock.
func ExampleOpen() {
	ctx := context.Background()
	st, err := postgres.Open(ctx, os.Getenv("DATABASE_URL")) // postgres://user:pass@host:5432/db?sslmode=require
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Keys, store.Login, store.Billing); err != nil {
		log.Fatal(err)
	}
	st.DB().SetMaxOpenConns(50) // tune the pool (default 25)
}
