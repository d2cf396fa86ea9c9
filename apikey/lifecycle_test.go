package apikey_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
)

// recorder collects notices and events, safe for concurrent use.
type recorder struct {
	mu      sync.Mutex
	notices []apikey.Notice
	events  []apikey.Event
	fail    error
}

func (r *recorder) notify(_ context.Context, n apikey.Notice) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.notices = append(r.notices, n)
	return nil
}

func (r *recorder) audit(_ context.Context, e apikey.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) setFail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

// counts returns how many notices (or events) each "kind key" got.
func (r *recorder) counts() (notices, events map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	notices, events = map[string]int{}, map[string]int{}
	for _, n := range r.notices {
		notices[n.Kind+" "+n.KeyID]++
	}
	for _, e := range r.events {
		events[e.Kind+" "+e.KeyID]++
	}
	return notices, events
}

const day = 24 * time.Hour

// Two instances run the notifier every hour over the same store for 40
// days: each notice goes out exactly once, at its time, and each expired
// key is audited once.
func TestExpiryNotifierTwoInstances(t *testing.T) {
	ctx := context.Background()
	f := newMemFixture(t, apikey.ManagerOptions{})
	issue := func(in time.Duration) string {
		k, _, err := f.m.Issue(ctx, f.user, apikey.IssueOptions{ExpiresIn: in})
		if err != nil {
			t.Fatal(err)
		}
		return k.ID
	}
	k30, k3, k12h, never := issue(30*day), issue(3*day), issue(12*time.Hour), issue(0)
	revoked := issue(5 * day)
	if err := f.m.Revoke(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	rolled := issue(0)
	if _, _, err := f.m.Roll(ctx, rolled, 2*time.Hour); err != nil {
		t.Fatal(err)
	}

	rec := &recorder{}
	var ns []*apikey.ExpiryNotifier
	for range 2 {
		ns = append(ns, apikey.NewExpiryNotifier(f.st, apikey.ExpiryOptions{
			Notify: rec.notify, Audit: rec.audit, Now: f.clock.Now, BatchSize: 2}))
	}
	sentAt := map[string]time.Time{}
	start := f.clock.Now()
	for f.clock.Now().Before(start.Add(40 * day)) {
		var wg sync.WaitGroup
		for _, n := range ns {
			wg.Go(func() {
				if _, err := n.RunOnce(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		notices, _ := rec.counts()
		for k := range notices {
			if _, ok := sentAt[k]; !ok {
				sentAt[k] = f.clock.Now()
			}
		}
		f.clock.Advance(time.Hour)
	}

	notices, events := rec.counts()
	want := map[string]int{
		apikey.NoticeExpiresSoon + " " + k30:     1,
		apikey.NoticeExpiresTomorrow + " " + k30: 1,
		apikey.NoticeExpired + " " + k30:         1,
		apikey.NoticeExpiresTomorrow + " " + k3:  1,
		apikey.NoticeExpired + " " + k3:          1,
		apikey.NoticeExpired + " " + k12h:        1,
		apikey.NoticeGraceEnded + " " + rolled:   1,
	}
	if !maps.Equal(notices, want) {
		t.Errorf("notices:\n got  %v\n want %v", notices, want)
	}
	for k, at := range map[string]time.Time{
		apikey.NoticeExpiresSoon + " " + k30:     start.Add(23 * day),
		apikey.NoticeExpiresTomorrow + " " + k30: start.Add(29 * day),
		apikey.NoticeExpired + " " + k30:         start.Add(30 * day),
		apikey.NoticeGraceEnded + " " + rolled:   start.Add(2 * time.Hour),
	} {
		if !sentAt[k].Equal(at) {
			t.Errorf("%s sent at %v, want %v", k, sentAt[k].Sub(start), at.Sub(start))
		}
	}
	for _, id := range []string{k30, k3, k12h} {
		if n := events[apikey.EventExpired+" "+id]; n != 1 {
			t.Errorf("key %s: %d expired events, want 1", id, n)
		}
	}
	for _, id := range []string{never, revoked} {
		for k := range notices {
			if k[len(k)-len(id):] == id {
				t.Errorf("notice %s for a key that never expires or was revoked", k)
			}
		}
	}
	for _, e := range rec.events {
		if e.Kind == apikey.EventExpired && e.Actor != apikey.ActorSystem {
			t.Errorf("expired event actor %q, want system", e.Actor)
		}
	}
}

// A notice whose sending failed is released and sent at the next run; a
// notifier that restarts does not send it again.
func TestExpiryNotifierRetriesFailedNotices(t *testing.T) {
	ctx := context.Background()
	f := newMemFixture(t, apikey.ManagerOptions{})
	k, _, err := f.m.Issue(ctx, f.user, apikey.IssueOptions{ExpiresIn: 10 * day})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	opts := apikey.ExpiryOptions{Notify: rec.notify, Now: f.clock.Now}
	f.clock.Advance(4 * day)
	rec.setFail(errors.New("smtp: 451 try again"))
	if sent, err := apikey.NewExpiryNotifier(f.st, opts).RunOnce(ctx); err == nil || sent != 0 {
		t.Fatalf("RunOnce with a failing mailer = %d, %v; want 0 and an error", sent, err)
	}
	rec.setFail(nil)
	f.clock.Advance(time.Hour)
	if sent, err := apikey.NewExpiryNotifier(f.st, opts).RunOnce(ctx); err != nil || sent != 1 {
		t.Fatalf("RunOnce after the mailer recovered = %d, %v; want 1", sent, err)
	}
	if sent, err := apikey.NewExpiryNotifier(f.st, opts).RunOnce(ctx); err != nil || sent != 0 {
		t.Fatalf("RunOnce after a restart = %d, %v; want 0", sent, err)
	}
	if len(rec.notices) != 1 || rec.notices[0].Kind != apikey.NoticeExpiresSoon || rec.notices[0].KeyID != k.ID ||
		!rec.notices[0].Due.Equal(k.ExpiresAt) || rec.notices[0].Key.UserID != f.user {
		t.Errorf("notices = %+v", rec.notices)
	}
}

// Run checks at once and then every Interval, until its context ends.
func TestExpiryNotifierRun(t *testing.T) {
	f := newMemFixture(t, apikey.ManagerOptions{})
	if _, _, err := f.m.Issue(context.Background(), f.user, apikey.IssueOptions{ExpiresIn: 3 * day}); err != nil {
		t.Fatal(err)
	}
	got := make(chan apikey.Notice, 1)
	n := apikey.NewExpiryNotifier(f.st, apikey.ExpiryOptions{Now: f.clock.Now, Interval: time.Millisecond,
		Notify: func(_ context.Context, n apikey.Notice) error { got <- n; return nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.Run(ctx) }()
	f.clock.Advance(2*day + time.Hour)
	if n := <-got; n.Kind != apikey.NoticeExpiresTomorrow {
		t.Errorf("notice %s, want %s", n.Kind, apikey.NoticeExpiresTomorrow)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

// The Manager reports each change once to its audit hook, with the
// caller's context.
func TestManagerAudit(t *testing.T) {
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "req-1")
	var events []apikey.Event
	f := newMemFixture(t, apikey.ManagerOptions{Audit: func(ctx context.Context, e apikey.Event) error {
		if ctx.Value(ctxKey{}) != "req-1" {
			t.Errorf("%s: audit hook did not get the caller's context", e.Kind)
		}
		events = append(events, e)
		return errors.New("audit store down") // logged, not returned
	}})
	k, _, err := f.m.Issue(ctx, f.user, apikey.IssueOptions{Name: "ci", Scopes: []string{"read"}, ExpiresIn: day})
	if err != nil {
		t.Fatalf("Issue with a failing audit hook = %v, want the key", err)
	}
	if _, _, err := f.m.Roll(ctx, k.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func(context.Context, string) error{f.m.Deactivate, f.m.Activate, f.m.Revoke, f.m.Revoke} {
		if err := op(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
	}
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind)
		if e.KeyID != k.ID || e.UserID != f.user || e.At.IsZero() {
			t.Errorf("event %+v lacks the key, user or time", e)
		}
		for name, v := range e.Detail {
			if len(v) > 100 {
				t.Errorf("%s detail %s is suspiciously long: %q", e.Kind, name, v)
			}
		}
	}
	want := []string{apikey.EventIssued, apikey.EventRolled, apikey.EventDeactivated, apikey.EventActivated, apikey.EventRevoked}
	if !slices.Equal(kinds, want) {
		t.Errorf("events %v, want %v (one revocation)", kinds, want)
	}
	if d := events[0].Detail; d["name"] != "ci" || d["scopes"] != "read" || d["environment"] != apikey.EnvLive || d["expires_at"] == "" {
		t.Errorf("issued detail = %v", d)
	}
	if d := events[1].Detail; d["grace"] != "1h0m0s" {
		t.Errorf("rolled detail = %v", d)
	}
}

// leakFixture is a LeakResponder over a memory store.
type leakFixture struct {
	*memFixture
	rec *recorder
	l   *apikey.LeakResponder
}

func newLeakFixture(t *testing.T) *leakFixture {
	rec := &recorder{}
	f := newMemFixture(t, apikey.ManagerOptions{Audit: rec.audit})
	return &leakFixture{f, rec, apikey.NewLeakResponder(f.m, apikey.LeakOptions{Notices: f.st, Notify: rec.notify, Audit: rec.audit})}
}

func TestLeakResponder(t *testing.T) {
	ctx := context.Background()
	f := newLeakFixture(t)
	k, tok, err := f.m.Issue(ctx, f.user, apikey.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := f.m.Issue(ctx, f.user, apikey.IssueOptions{})
	leak := apikey.Leak{Token: tok.Reveal(), URL: "https://github.com/acme/app/blob/main/.env", Source: "content", Reporter: apikey.ActorGitHub}

	t.Run("NotOurs", func(t *testing.T) {
		forged, _ := apikey.Generate("fav_live")
		wrongSecret := tok.Reveal()[:len("fav_live_")+apikey.IDLen+1] + forged.Reveal()[len("fav_live_")+apikey.IDLen+1:]
		for _, token := range []string{"", "ghp_notours", forged.Reveal(), wrongSecret} {
			res, err := f.l.Respond(ctx, apikey.Leak{Token: token})
			if err != nil || res.Ours {
				t.Errorf("Respond(%.20q) = %+v, %v; want not ours", token, res, err)
			}
		}
		if got, _ := f.m.Get(ctx, k.ID); !got.RevokedAt.IsZero() {
			t.Fatal("a report of a token that is not ours revoked the key")
		}
	})

	res, err := f.l.Respond(ctx, leak)
	if err != nil || !res.Ours || !res.Live || !res.Notified || res.KeyID != k.ID || res.UserID != f.user {
		t.Fatalf("Respond = %+v, %v", res, err)
	}
	if _, err := f.v.Verify(ctx, tok.Reveal()); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Verify after the leak = %v, want ErrRevoked", err)
	}
	for range 2 { // redelivered
		res, err := f.l.Respond(ctx, leak)
		if err != nil || !res.Ours || res.Live || res.Notified {
			t.Errorf("Respond again = %+v, %v; want ours, not live, not notified", res, err)
		}
	}
	notices, events := f.rec.counts()
	if want := map[string]int{apikey.NoticeLeaked + " " + k.ID: 1}; !maps.Equal(notices, want) {
		t.Errorf("notices %v, want %v", notices, want)
	}
	if n := f.rec.notices[0]; n.URL != leak.URL || n.Source != "content" {
		t.Errorf("notice %+v lacks where the key was found", n)
	}
	for _, kind := range []string{apikey.EventRevoked, apikey.EventLeaked} {
		if events[kind+" "+k.ID] != 1 {
			t.Errorf("%d %s events, want 1 (events %v)", events[kind+" "+k.ID], kind, events)
		}
	}
	for _, e := range f.rec.events {
		if e.KeyID == k.ID && (e.Kind == apikey.EventRevoked || e.Kind == apikey.EventLeaked) &&
			(e.Actor != apikey.ActorGitHub || e.Detail["url"] != leak.URL) {
			t.Errorf("event %+v: want actor github and the url", e)
		}
	}
	if got, _ := f.m.Get(ctx, other.ID); !got.RevokedAt.IsZero() {
		t.Error("another key of the same user was revoked")
	}
}

// A failed notification fails the report (so that the reporter delivers
// it again) but keeps the key revoked; the next delivery notifies.
func TestLeakResponderRetriesNotice(t *testing.T) {
	ctx := context.Background()
	f := newLeakFixture(t)
	_, tok, _ := f.m.Issue(ctx, f.user, apikey.IssueOptions{})
	f.rec.setFail(errors.New("smtp down"))
	if _, err := f.l.Respond(ctx, apikey.Leak{Token: tok.Reveal()}); err == nil {
		t.Fatal("Respond with a failing mailer succeeded")
	}
	if _, err := f.v.Verify(ctx, tok.Reveal()); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Verify = %v, want ErrRevoked although the mail failed", err)
	}
	f.rec.setFail(nil)
	if res, err := f.l.Respond(ctx, apikey.Leak{Token: tok.Reveal()}); err != nil || !res.Notified {
		t.Errorf("Respond after the mailer recovered = %+v, %v; want notified", res, err)
	}
}

// The previous secret of a rolled key is live during its grace period: a
// leak of it revokes the key. After the grace it is ours but harmless.
func TestLeakResponderRolledKey(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		after   time.Duration
		revoked bool
	}{{"in grace", time.Minute, true}, {"after grace", 2 * time.Hour, false}} {
		t.Run(tt.name, func(t *testing.T) {
			f := newLeakFixture(t)
			k, old, _ := f.m.Issue(ctx, f.user, apikey.IssueOptions{})
			if _, _, err := f.m.Roll(ctx, k.ID, time.Hour); err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(tt.after)
			res, err := f.l.Respond(ctx, apikey.Leak{Token: old.Reveal()})
			if err != nil || !res.Ours || res.Live != tt.revoked || res.Notified != tt.revoked {
				t.Errorf("Respond = %+v, %v", res, err)
			}
			got, _ := f.m.Get(ctx, k.ID)
			if revoked := !got.RevokedAt.IsZero(); revoked != tt.revoked {
				t.Errorf("revoked = %v, want %v", revoked, tt.revoked)
			}
		})
	}
}

// Concurrent deliveries of one report (two instances behind a load
// balancer) notify once.
func TestLeakResponderConcurrent(t *testing.T) {
	ctx := context.Background()
	f := newLeakFixture(t)
	k, tok, _ := f.m.Issue(ctx, f.user, apikey.IssueOptions{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if res, err := f.l.Respond(ctx, apikey.Leak{Token: tok.Reveal()}); err != nil || !res.Ours {
				t.Errorf("Respond = %+v, %v", res, err)
			}
		})
	}
	wg.Wait()
	notices, _ := f.rec.counts()
	if n := notices[apikey.NoticeLeaked+" "+k.ID]; n != 1 {
		t.Errorf("%d notices, want 1", n)
	}
}
