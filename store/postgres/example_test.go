package postgres_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"time"

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

// Behind PgBouncer in transaction mode, with the store's operations traced
// (here into a log; an OpenTelemetry tracer starts a span in Trace and
// ends it in the function Trace returns).
func ExampleOpenWith() {
	ctx := context.Background()
	logger := slog.Default()
	st, err := postgres.OpenWith(ctx, os.Getenv("DATABASE_URL"), postgres.Options{
		TransactionPooling: true, // no prepared statements, one round trip a statement
		Trace: func(ctx context.Context, name string) (context.Context, func(error)) {
			start := time.Now()
			return ctx, func(err error) {
				logger.DebugContext(ctx, "store", "op", name, "took", time.Since(start), "err", err)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
}
