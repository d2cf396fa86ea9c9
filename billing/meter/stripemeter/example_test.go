package stripemeter_test

import (
	"context"
	"time"

	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/billing/meter/stripemeter"
)

// The Stripe sender of a meter.Reporter, for the customers on the
// metered plan.
func ExampleNew() {
	sender, err := stripemeter.New(stripemeter.Options{Key: "sk_test_…"}) // in an application: from the environment
	if err != nil {
		panic(err)
	}
	var st meter.Store // a *store.Store, migrated with store.Usage
	if st == nil {
		return
	}
	r := meter.NewReporter(st, meter.Options{
		Customers: func(ctx context.Context) ([]meter.Customer, error) {
			// The users subscribed to the metered plan's price, such as
			// store.SubscriptionsWithPrices mapped to meter.Customer.
			return nil, nil
		},
		Backend:  sender,
		Interval: time.Minute,
	})
	r.Start()
	defer r.Close()
}
