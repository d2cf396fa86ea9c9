// Command postgres is the smallest program that uses API keys and rate limits
// on store/postgres: TestPayOnlyForWhatYouImport checks what it links.
package main

import (
	"context"
	"log"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/postgres"
)

func main() {
	ctx := context.Background()
	st, err := postgres.Open(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := st.Migrate(ctx, store.Keys); err != nil {
		log.Fatal(err)
	}
	_ = apikey.NewManager(st, apikey.ManagerOptions{Prefix: "app_live"})
	_ = ratelimit.NewMemory(ratelimit.MemoryOptions{})
}
