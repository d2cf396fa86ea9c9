package apikey_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/apikeytest"
)

// Time the store behind a Verifier and a Manager: a tracer such as
// OpenTelemetry's starts a span in Trace and ends it in the function Trace
// returns. Here the spans are printed; a cache hit reaches no store and
// starts none, and Close writes the last-use times.
func ExampleVerifierOptions_trace() {
	ctx := context.Background()
	trace := func(ctx context.Context, name string) (context.Context, func(error)) {
		// With OpenTelemetry: ctx, span := tracer.Start(ctx, name)
		return ctx, func(err error) { fmt.Println("span", name, "error:", err) }
	}
	st := apikeytest.NewMemoryStore()
	v := apikey.NewVerifier(st, apikey.VerifierOptions{Trace: trace})
	defer v.Close()
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "sk_live", Verifier: v, Trace: trace})
	user, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())

	_, tok, err := m.Issue(ctx, user, apikey.IssueOptions{Name: "ci"})
	if err != nil {
		log.Fatal(err)
	}
	for range 2 { // a miss, then a hit
		if _, err := v.Verify(ctx, tok.Reveal()); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// span apikey.CreateKey error: <nil>
	// span apikey.Key error: <nil>
	// span apikey.TouchKeys error: <nil>
}
