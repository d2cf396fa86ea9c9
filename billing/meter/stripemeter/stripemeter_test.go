package stripemeter_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/billing/meter/stripemeter"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/internal/testkit/faultproxy"
	"github.com/apikit/apikit/internal/testkit/stripemock"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/usage"
)

// fakeStripe is a Stripe meter event endpoint that deduplicates by
// identifier, as Stripe does, and counts every send: what each identifier
// billed and how often it was sent. It can be down (503) and rejects the
// customer cus_bad (400).
type fakeStripe struct {
	mu     sync.Mutex
	down   bool
	billed map[string]int64 // identifier → units billed (once)
	sends  map[string]int   // identifier → requests received
	idem   map[string]bool  // Idempotency-Key == identifier
	bad    int
}

func newFakeStripe(t *testing.T) (*fakeStripe, string) {
	f := &fakeStripe{billed: map[string]int64{}, sends: map[string]int{}, idem: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve)) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeStripe) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/billing/meter_events" {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"type":"api_error","message":"down"}}`)
		return
	}
	id := r.PostForm.Get("identifier")
	f.sends[id]++
	f.idem[id] = r.Header.Get("Idempotency-Key") == id
	if r.PostForm.Get("payload[stripe_customer_id]") == "cus_bad" {
		f.bad++
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such customer: 'cus_bad'"}}`)
		return
	}
	v, _ := strconv.ParseInt(r.PostForm.Get("payload[value]"), 10, 64)
	if _, dup := f.billed[id]; !dup {
		f.billed[id] = v
	}
	fmt.Fprintf(w, `{"object":"billing.meter_event","identifier":%q,"event_name":%q}`, id, r.PostForm.Get("event_name"))
}

func (f *fakeStripe) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// units returns the units billed per customer (by the identifier's
// events in st).
func (f *fakeStripe) total() (units int64, resent int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, v := range f.billed {
		units += v
		if f.sends[id] > 1 {
			resent++
		}
	}
	return units, resent
}

// forgetfulStore loses the marks of sent events while forget is set: the
// process "crashed" between the send and the mark.
type forgetfulStore struct {
	*store.Store
	mu     sync.Mutex
	forget bool
}

func (s *forgetfulStore) MarkMeterEventSent(ctx context.Context, id string, at time.Time) error {
	s.mu.Lock()
	forget := s.forget
	s.mu.Unlock()
	if forget {
		return errors.New("crashed before the mark")
	}
	return s.Store.MarkMeterEventSent(ctx, id, at)
}

var hour0 = time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC)

// addUsage writes cost units for each user in each of hours hours from
// hour0, as usage Meters flush them.
func addUsage(t *testing.T, st *store.Store, users []string, hours int, cost int64) int64 {
	t.Helper()
	var cs []usage.Count
	var total int64
	for _, u := range users {
		for h := range hours {
			cs = append(cs, usage.Count{UserID: u, KeyID: "k", Start: hour0.Add(time.Duration(h) * time.Hour), Counts: usage.Counts{OK: cost, Cost: cost}})
			total += cost
		}
	}
	if err := st.AddCounts(context.Background(), usage.Batch{ID: fmt.Sprint("b", time.Now().UnixNano()), At: hour0, Counts: cs}); err != nil {
		t.Fatal(err)
	}
	return total
}

func customers(users ...string) func(context.Context) ([]meter.Customer, error) {
	return func(context.Context) ([]meter.Customer, error) {
		var cs []meter.Customer
		for _, u := range users {
			cs = append(cs, meter.Customer{UserID: u, CustomerID: "cus_" + u, EventName: "api_requests"})
		}
		return cs, nil
	}
}

func newReporter(t *testing.T, st meter.Store, url string, clock *fakeclock.Clock, users ...string) *meter.Reporter {
	t.Helper()
	sender, err := stripemeter.New(stripemeter.Options{Key: "sk_test_123", URL: url})
	if err != nil {
		t.Fatal(err)
	}
	return meter.NewReporter(st, meter.Options{Customers: customers(users...), Backend: sender, Now: clock.Now, Batch: 1000})
}

func pass(t *testing.T, r *meter.Reporter) meter.SendResult {
	t.Helper()
	if _, err := r.Enqueue(context.Background()); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	res, err := r.Send(context.Background())
	if err != nil && !errors.Is(err, errCrash) {
		t.Logf("Send: %v", err)
	}
	return res
}

var errCrash = errors.New("crash")

// A crash between the send and the mark sends the event again, with the
// same identifier: Stripe bills it once.
func TestCrashBetweenSendAndMark(t *testing.T) {
	st := testdb.SQLite(t)
	fs := &forgetfulStore{Store: st, forget: true}
	stripe, url := newFakeStripe(t)
	clock := fakeclock.New(hour0.Add(3 * time.Hour))
	want := addUsage(t, st, []string{"1", "2"}, 2, 7)

	r := newReporter(t, fs, url, clock, "1", "2")
	if res := pass(t, r); res.Sent != 4 {
		t.Fatalf("first pass: %+v; want 4 sent (and not marked)", res)
	}
	fs.mu.Lock()
	fs.forget = false
	fs.mu.Unlock()
	if res := pass(t, r); res.Sent != 0 {
		t.Fatalf("within the lease: %+v; want nothing sent again yet", res)
	}
	clock.Advance(meter.DefaultLease)
	again := newReporter(t, fs, url, clock, "1", "2") // the restarted process
	if res := pass(t, again); res.Sent != 4 {
		t.Fatalf("after the lease: %+v; want the 4 events sent again", res)
	}
	units, resent := stripe.total()
	if units != want || resent != 4 || len(stripe.billed) != 4 {
		t.Errorf("billed %d units over %d identifiers, %d resent; want %d units, 4 identifiers each sent twice", units, len(stripe.billed), resent, want)
	}
	for id, ok := range stripe.idem {
		if !ok {
			t.Errorf("event %s was sent without its identifier as idempotency key", id)
		}
	}
	if res := pass(t, again); res.Sent != 0 {
		t.Errorf("after everything was marked: %+v", res)
	}
}

// Two instances enqueue and send at once, over two connection pools:
// every unit is billed once.
func TestTwoSenders(t *testing.T) {
	st := testdb.SQLite(t)
	stripe, url := newFakeStripe(t)
	clock := fakeclock.New(hour0.Add(6 * time.Hour))
	users := []string{"1", "2", "3", "4", "5", "6", "7", "8"}
	want := addUsage(t, st, users, 5, 3)
	a := newReporter(t, st, url, clock, users...)
	b := newReporter(t, st, url, clock, users...)
	var wg sync.WaitGroup
	for range 3 {
		for _, r := range []*meter.Reporter{a, b} {
			wg.Go(func() {
				if _, err := r.Enqueue(context.Background()); err != nil {
					t.Errorf("Enqueue: %v", err)
				}
				if _, err := r.Send(context.Background()); err != nil {
					t.Errorf("Send: %v", err)
				}
			})
		}
	}
	wg.Wait()
	// Late usage of an hour already billed is billed as the slice's next event.
	want += addUsage(t, st, []string{"1"}, 1, 4)
	for _, r := range []*meter.Reporter{a, b} {
		pass(t, r)
	}
	units, _ := stripe.total()
	if units != want || len(stripe.billed) != len(users)*5+1 {
		t.Errorf("billed %d units in %d events; want %d units in %d", units, len(stripe.billed), want, len(users)*5+1)
	}
}

// Stripe is down for an hour — answering 503 for half of it, unreachable
// (connections refused) for the other half: events wait and back off,
// then every unit is billed once.
func TestStripeDownForAnHour(t *testing.T) {
	st := testdb.SQLite(t)
	stripe, url := newFakeStripe(t)
	proxy := faultproxy.Start(t, strings.TrimPrefix(url, "http://"))
	clock := fakeclock.New(hour0.Add(2 * time.Hour))
	want := addUsage(t, st, []string{"1", "2", "3"}, 2, 5)
	r := newReporter(t, st, "http://"+proxy.Addr(), clock, "1", "2", "3")
	stripe.setDown(true)
	for i := range 60 {
		if i == 30 {
			stripe.setDown(false)
			proxy.Down()
		}
		if res := pass(t, r); res.Sent != 0 {
			t.Fatalf("sent while Stripe was down: %+v", res)
		}
		clock.Advance(time.Minute)
	}
	want += addUsage(t, st, []string{"1"}, 1, 2) // usage goes on meanwhile
	proxy.Up()
	for range 120 { // the backoff is at most an hour
		pass(t, r)
		clock.Advance(time.Minute)
	}
	units, _ := stripe.total()
	if units != want {
		t.Errorf("billed %d units; want %d", units, want)
	}
	pending, _ := st.MeterEvents(context.Background(), meter.Pending, 100)
	if len(pending) != 0 {
		t.Errorf("%d events still pending", len(pending))
	}
	sent, _ := st.MeterEvents(context.Background(), meter.Sent, 100)
	for _, e := range sent {
		if e.Seq == 1 && e.Attempts < 2 { // Seq 2 is the usage added when Stripe was up again
			t.Errorf("event %s sent at its first attempt though Stripe was down", e.Identifier)
		}
	}
}

// An event Stripe rejects is kept with its error, not retried, and can be
// requeued.
func TestRejectedIsKept(t *testing.T) {
	st := testdb.SQLite(t)
	stripe, url := newFakeStripe(t)
	clock := fakeclock.New(hour0.Add(2 * time.Hour))
	addUsage(t, st, []string{"bad", "1"}, 1, 3)
	r := newReporter(t, st, url, clock, "bad", "1")
	if res := pass(t, r); res.Sent != 1 || res.Rejected != 1 {
		t.Fatalf("pass = %+v; want 1 sent, 1 rejected", res)
	}
	clock.Advance(24 * time.Hour)
	pass(t, r)
	if stripe.bad != 1 {
		t.Errorf("the rejected event was sent %d times; want once", stripe.bad)
	}
	rej, err := st.MeterEvents(context.Background(), meter.Rejected, 10)
	if err != nil || len(rej) != 1 || rej[0].CustomerID != "cus_bad" || rej[0].Value != 3 {
		t.Fatalf("rejected events = %+v, %v", rej, err)
	}
	if want := "No such customer"; !strings.Contains(rej[0].LastError, want) {
		t.Errorf("rejected event's error %q lacks %q", rej[0].LastError, want)
	}
	if ok, err := st.RequeueMeterEvent(context.Background(), rej[0].Identifier, clock.Now()); !ok || err != nil {
		t.Fatalf("RequeueMeterEvent = %v, %v", ok, err)
	}
	pass(t, r)
	if stripe.bad != 2 {
		t.Errorf("after requeueing: sent %d times; want 2", stripe.bad)
	}
}

// The real request shape, checked by stripe-mock against Stripe's
// OpenAPI specification.
func TestStripeMock(t *testing.T) {
	url := stripemock.Start(t)
	sender, err := stripemeter.New(stripemeter.Options{Key: "sk_test_123", URL: url})
	if err != nil {
		t.Fatal(err)
	}
	e := meter.Event{Identifier: meter.Identifier("cus_1", "api_requests", hour0, 1), CustomerID: "cus_1", EventName: "api_requests",
		Slice: hour0, Seq: 1, Value: 42, Timestamp: hour0.Add(time.Hour - time.Second)}
	if err := sender.Send(context.Background(), e); err != nil {
		t.Fatalf("Send to stripe-mock: %v", err)
	}
	// Through the whole outbox.
	st := testdb.SQLite(t)
	clock := fakeclock.New(hour0.Add(2 * time.Hour))
	addUsage(t, st, []string{"1"}, 1, 9)
	r := meter.NewReporter(st, meter.Options{Customers: customers("1"), Backend: sender, Now: clock.Now})
	if res := pass(t, r); res.Sent != 1 {
		t.Fatalf("pass against stripe-mock = %+v", res)
	}
}

func TestNew(t *testing.T) {
	for _, o := range []stripemeter.Options{{}, {Key: "pk_test_1"}, {Key: "sk_test_1", URL: "ftp://x"}} {
		if _, err := stripemeter.New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}
