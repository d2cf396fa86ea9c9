package magiclink_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/magiclink"
)

// The kinds are package audit's (audit.SignIn, …), so that the
// application's audit hook passes them on as they are: compared with
// audit's constants, not with literals, so that a rename on either side
// fails here. EventLinkRequested and EventEmailChangeRequested included.
func TestAuditKindValues(t *testing.T) {
	for got, want := range map[string]string{
		magiclink.EventLinkRequested:        string(audit.SignInLinkRequested),
		magiclink.EventSignedIn:             string(audit.SignIn),
		magiclink.EventSignedOut:            string(audit.SignOut),
		magiclink.EventSignedOutEverywhere:  string(audit.SignOutEverywhere),
		magiclink.EventEmailChangeRequested: string(audit.EmailChangeRequested),
		magiclink.EventEmailChanged:         string(audit.EmailChanged),
		magiclink.ActorUser:                 string(audit.ActorUser),
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

// clientOf is the context key of the test middleware: what the audit hook
// must find in the context it is given (as audit.Middleware's source).
type clientOf struct{}

// auditLog records what Options.Audit is told, with the client the
// context carried.
type auditLog struct {
	mu     sync.Mutex
	events []magiclink.AuditEvent
	client []string
	fail   error
}

func (l *auditLog) hook(ctx context.Context, e magiclink.AuditEvent) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, _ := ctx.Value(clientOf{}).(string)
	l.events = append(l.events, e)
	l.client = append(l.client, c)
	return l.fail
}

// take returns the events recorded since the last take, waiting up to
// 10 seconds for at least n.
func (l *auditLog) take(t *testing.T, n int) ([]magiclink.AuditEvent, []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		if len(l.events) >= n {
			ev, cl := l.events, l.client
			l.events, l.client = nil, nil
			l.mu.Unlock()
			return ev, cl
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%d audit events, want %d", len(l.events), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newAuditHarness(t *testing.T, log *auditLog) *harness {
	return newHarness(t, setup{
		wrap:    withChanges,
		options: func(o *magiclink.Options) { o.Audit = log.hook },
		handler: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := context.WithValue(r.Context(), clientOf{}, r.Header.Get("User-Agent"))
				next.ServeHTTP(w, r.WithContext(ctx))
			})
		},
	})
}

// Every event, through the HTTP handlers and the methods, with the
// request's context, and never a token, a code, a session id or a full
// address.
func TestAuditEvents(t *testing.T) {
	log := &auditLog{}
	h := newAuditHarness(t, log)
	ada := h.user("ada@example.com")
	ctx := context.WithValue(context.Background(), clientOf{}, "dashboard")
	laptop, phone := browser(t), browser(t)
	var secrets []string // everything no event may hold

	type want struct {
		kind, actor, client string
		detail              map[string]string
	}
	check := func(t *testing.T, events []magiclink.AuditEvent, clients []string, wants ...want) {
		t.Helper()
		if len(events) != len(wants) {
			t.Fatalf("events = %+v, want %d", events, len(wants))
		}
		for i, w := range wants {
			e := events[i]
			if e.Kind != w.kind || e.UserID != ada || e.Actor != w.actor || clients[i] != w.client || !e.At.Equal(h.clock.Now()) {
				t.Errorf("event %d = %+v (client %q), want %s by %q, user %d, client %q, at %v",
					i, e, clients[i], w.kind, w.actor, ada, w.client, h.clock.Now())
			}
			if fmt.Sprint(e.Detail) != fmt.Sprint(w.detail) {
				t.Errorf("%s: detail = %v, want %v", e.Kind, e.Detail, w.detail)
			}
		}
	}

	steps := []struct {
		name string
		do   func(t *testing.T)
		want []want
	}{
		{"link requested", func(t *testing.T) {
			link, code := h.askCode(laptop, "ada@example.com")
			h.confirm(laptop, link, http.StatusSeeOther)
			secrets = append(secrets, strings.SplitN(link, "token=", 2)[1], code, h.sessionCookie(laptop).Value)
		}, []want{
			{magiclink.EventLinkRequested, "", "Go-http-client/1.1", map[string]string{"email": "a•••@example.com", "method": "link_and_code"}},
			{magiclink.EventSignedIn, magiclink.ActorUser, "Go-http-client/1.1", map[string]string{"first_sign_in": "true", "method": "link", "sessions_ended": "0"}},
		}},
		{"sign-in by code", func(t *testing.T) {
			_, code := h.askCode(phone, "ada@example.com")
			if r := h.postCode(phone, code, "User-Agent", "Phone/1.0"); r.status != http.StatusSeeOther {
				t.Fatalf("code = %d:\n%s", r.status, r.body)
			}
			secrets = append(secrets, code, h.sessionCookie(phone).Value)
		}, []want{
			{magiclink.EventLinkRequested, "", "Go-http-client/1.1", map[string]string{"email": "a•••@example.com", "method": "link_and_code"}},
			{magiclink.EventSignedIn, magiclink.ActorUser, "Phone/1.0", map[string]string{"method": "code"}},
		}},
		{"SendLink", func(t *testing.T) {
			if err := h.svc.SendLink(ctx, "ada@example.com"); err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, strings.SplitN(h.smtp.WaitLink(t, "ada@example.com"), "token=", 2)[1])
		}, []want{
			{magiclink.EventLinkRequested, "", "dashboard", map[string]string{"email": "a•••@example.com", "method": "link"}},
		}},
		{"SignIn", func(t *testing.T) {
			if err := h.svc.SignIn(ctx, httptest.NewRecorder(), ada); err != nil {
				t.Fatal(err)
			}
		}, []want{
			{magiclink.EventSignedIn, magiclink.ActorUser, "dashboard", nil},
		}},
		{"EndOtherSessions", func(t *testing.T) {
			if n, err := h.svc.EndOtherSessions(ctx, h.requestOf(phone), ada); err != nil || n != 2 {
				t.Fatalf("EndOtherSessions = %d, %v", n, err)
			}
		}, []want{
			{magiclink.EventSignedOutEverywhere, magiclink.ActorUser, "dashboard", map[string]string{"kept": "current", "sessions": "2"}},
		}},
		{"logout", func(t *testing.T) {
			if r := postForm(t, phone, h.http.URL+"/logout", nil, "User-Agent", "Phone/1.0"); r.status != http.StatusSeeOther {
				t.Fatalf("logout = %d", r.status)
			}
		}, []want{
			{magiclink.EventSignedOut, magiclink.ActorUser, "Phone/1.0", nil},
		}},
		{"EndSession", func(t *testing.T) {
			h.signInAs(laptop, "ada@example.com", "Laptop/1.0")
			sessions, err := h.svc.Sessions(ctx, nil, ada)
			if err != nil || len(sessions) != 1 {
				t.Fatalf("Sessions = %v, %v", sessions, err)
			}
			log.take(t, 2) // the sign-in
			if found, err := h.svc.EndSession(ctx, ada, sessions[0].Ref); err != nil || !found {
				t.Fatalf("EndSession = %v, %v", found, err)
			}
			// A second ending finds nothing and reports nothing.
			if found, err := h.svc.EndSession(ctx, ada, sessions[0].Ref); err != nil || found {
				t.Fatalf("EndSession again = %v, %v", found, err)
			}
			secrets = append(secrets, sessions[0].Ref)
		}, []want{
			{magiclink.EventSignedOut, magiclink.ActorUser, "dashboard", nil}, // detail checked below
		}},
		{"RevokeSessions", func(t *testing.T) {
			if err := h.svc.RevokeSessions(ctx, ada); err != nil {
				t.Fatal(err)
			}
		}, []want{
			{magiclink.EventSignedOutEverywhere, "", "dashboard", map[string]string{"sessions": "0"}},
		}},
		{"email change", func(t *testing.T) {
			if err := h.svc.RequestEmailChange(ctx, ada, "ada.lovelace@example.org"); err != nil {
				t.Fatal(err)
			}
			link := h.smtp.WaitLink(t, "ada.lovelace@example.org")
			token := h.changeToken(phone, link, ada, "ada@example.com")
			if r := postForm(t, phone, h.http.URL+"/login/email/verify", url.Values{"token": {token}}, "User-Agent", "Phone/1.0"); r.status != http.StatusOK {
				t.Fatalf("confirm = %d:\n%s", r.status, r.body)
			}
			secrets = append(secrets, token)
		}, []want{
			{magiclink.EventEmailChangeRequested, magiclink.ActorUser, "dashboard", map[string]string{"email": "a•••@example.org"}},
			{magiclink.EventEmailChanged, magiclink.ActorUser, "Phone/1.0", map[string]string{"from": "a•••@example.com", "to": "a•••@example.org"}},
		}},
	}
	var all []magiclink.AuditEvent
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			events, clients := log.take(t, len(st.want))
			if st.name == "EndSession" && len(events) == 1 {
				if ref := events[0].Detail["session_ref"]; len(ref) != 8 || len(events[0].Detail) != 1 {
					t.Errorf("detail = %v, want only an 8-character session_ref", events[0].Detail)
				}
				events[0].Detail = nil
			}
			check(t, events, clients, st.want...)
			all = append(all, events...)
		})
	}
	for _, e := range all {
		text := fmt.Sprintf("%+v", e)
		if strings.Contains(text, "ada@example.com") || strings.Contains(text, "lovelace") {
			t.Errorf("event %s holds a full address: %s", e.Kind, text)
		}
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("event %s holds a secret (%q): %s", e.Kind, s, text)
			}
		}
	}
}

// A login request for an address with no account is reported to no one,
// and the response does not tell the difference.
func TestAuditUnknownAddress(t *testing.T) {
	for _, signup := range []bool{false, true} {
		t.Run(fmt.Sprintf("AllowSignup=%v", signup), func(t *testing.T) {
			log := &auditLog{}
			h := newHarness(t, setup{options: func(o *magiclink.Options) { o.Audit = log.hook; o.AllowSignup = signup }})
			h.user("ada@example.com")
			c := browser(t)
			known := postForm(t, c, h.http.URL+"/login", url.Values{"email": {"ada@example.com"}})
			unknown := postForm(t, c, h.http.URL+"/login", url.Values{"email": {"nobody@example.com"}})
			if known.status != unknown.status || strings.ReplaceAll(known.body, "ada@", "nobody@") != unknown.body {
				t.Fatalf("responses differ: %d %q / %d %q", known.status, known.body, unknown.status, unknown.body)
			}
			if signup {
				h.smtp.WaitLink(t, "nobody@example.com")
			} else {
				h.waitStats(func(s magiclink.Stats) bool { return s.NoAccount == 1 })
			}
			h.smtp.WaitLink(t, "ada@example.com")
			events, _ := log.take(t, 1)
			if len(events) != 1 || events[0].Kind != magiclink.EventLinkRequested || events[0].Detail["email"] != "a•••@example.com" {
				t.Fatalf("events = %+v, want the known address's request only", events)
			}
		})
	}
}

// A failing audit hook is logged and counted, and changes no response:
// the sign-in and the sign-out happen.
func TestAuditFailureChangesNothing(t *testing.T) {
	log := &auditLog{fail: errors.New("audit store down")}
	h := newAuditHarness(t, log)
	h.user("ada@example.com")
	c := browser(t)
	h.signIn(c, "ada@example.com")
	if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != http.StatusOK {
		t.Fatalf("/app after sign-in = %d", r.status)
	}
	if r := postForm(t, c, h.http.URL+"/logout", nil); r.status != http.StatusSeeOther {
		t.Fatalf("logout = %d", r.status)
	}
	if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status == http.StatusOK {
		t.Fatal("still signed in after logout")
	}
	log.take(t, 3)
	if st := h.svc.Stats(); st.AuditErrors != 3 {
		t.Errorf("AuditErrors = %d, want 3", st.AuditErrors)
	}
	if !strings.Contains(h.logs.String(), "audit hook failed") || strings.Contains(h.logs.String(), "ada@example.com") {
		t.Errorf("logs:\n%s", h.logs.String())
	}
}
