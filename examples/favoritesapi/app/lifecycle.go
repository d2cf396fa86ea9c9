package app

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/secretscan"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store"
)

// A key's life after it is issued: the security log every change goes
// to, the warnings before it expires, and GitHub's reports of keys found
// in public.

// DefaultAuditRetention is how long the security log keeps an event
// unless AUDIT_RETENTION says otherwise.
const DefaultAuditRetention = 365 * 24 * time.Hour

// securityActivityLen is how many events the dashboard's "Security
// activity" shows.
const securityActivityLen = 50

// NewAuditLog returns the security log over st, as the server and the
// operator commands write it: API keys in details and user agents are
// redacted, and events older than retention (default
// DefaultAuditRetention) are pruned by Prune.
func NewAuditLog(st *store.Store, retention time.Duration, now func() time.Time) *audit.Log {
	return audit.New(st, audit.Options{Retention: retention, IsSecret: isAPIKey, Now: now})
}

// isAPIKey reports whether a word is an API key (of any prefix), so that
// the log never stores one, whoever pasted it where.
func isAPIKey(word string) bool {
	_, err := apikey.Parse(word)
	return err == nil
}

// KeyAudit is apikey's audit hook (Manager, LeakResponder,
// ExpiryNotifier): each change to a key, as an event of the log. The
// actor is the component's when it names one (GitHub, the system), and
// otherwise the context's: the signed-in user, or the operator.
func KeyAudit(l *audit.Log) func(context.Context, apikey.Event) error {
	return func(ctx context.Context, e apikey.Event) error {
		ev := audit.Event{Time: e.At, Kind: audit.Kind(e.Kind), UserID: e.UserID, KeyID: e.KeyID, Detail: e.Detail}
		if e.Actor != "" {
			ev.Actor = audit.Actor{Kind: audit.ActorKind(e.Actor)}
		}
		_, err := l.Append(ctx, ev)
		return err
	}
}

// loginAudit is magiclink's audit hook: sign-ins, sign-outs, links
// requested and email changes.
func loginAudit(l *audit.Log) func(context.Context, magiclink.AuditEvent) error {
	return func(ctx context.Context, e magiclink.AuditEvent) error {
		ev := audit.Event{Time: e.At, Kind: audit.Kind(e.Kind), UserID: e.UserID, Detail: e.Detail}
		if e.Actor == magiclink.ActorUser {
			ev.Actor = audit.Actor{Kind: audit.ActorUser, ID: strconv.FormatInt(e.UserID, 10)}
		}
		_, err := l.Append(ctx, ev)
		return err
	}
}

// billingAudit is billing's audit hook: subscription and plan changes,
// by Stripe (webhooks) or by the user (plan changes).
func billingAudit(l *audit.Log) func(context.Context, billing.AuditEvent) error {
	return func(ctx context.Context, e billing.AuditEvent) error {
		ev := audit.Event{Time: e.At, Kind: audit.Kind(e.Kind), UserID: e.UserID, Detail: e.Detail}
		switch e.Actor {
		case billing.ActorStripe:
			ev.Actor = audit.Actor{Kind: audit.ActorStripe}
		case billing.ActorUser:
			ev.Actor = audit.Actor{Kind: audit.ActorUser, ID: strconv.FormatInt(e.UserID, 10)}
		}
		_, err := l.Append(ctx, ev)
		return err
	}
}

// clientIPFunc returns the client's address as every per-client limit
// sees it: the TCP peer's, or with trusted proxies the address they
// report (the full address, also for IPv6). It is what the security log
// records and what a key's allowed networks are checked against.
func clientIPFunc(trusted []netip.Prefix) func(*http.Request) netip.Addr {
	key := ratelimit.ClientKey(ratelimit.IPKeyOptions{TrustedProxies: trusted, IPv6Bits: 128})
	return func(r *http.Request) netip.Addr {
		a, err := netip.ParseAddr(key(r))
		if err != nil {
			return netip.Addr{}
		}
		return a.Unmap()
	}
}

// withActor names the signed-in user, if any, as the actor of the
// request's events. It goes after the session middleware.
func withActor(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := magiclink.UserFrom(r.Context()); ok {
			r = r.WithContext(audit.WithActor(r.Context(), audit.Actor{Kind: audit.ActorUser, ID: strconv.FormatInt(u.ID, 10)}))
		}
		next.ServeHTTP(w, r)
	})
}

// newSecretScan builds the endpoint of GitHub's secret scanning partner
// program: a key GitHub finds in public is revoked through the server's
// Manager (so every instance drops it, through the invalidation bus), its
// owner mailed where it was found, and the leak audited.
func (s *Server) newSecretScan() *secretscan.Handler {
	responder := apikey.NewLeakResponder(s.keys, apikey.LeakOptions{
		Notices: s.store,
		Notify:  s.sendKeyNotice,
		Audit:   KeyAudit(s.audit),
		Logger:  s.logger,
	})
	return secretscan.New(secretscan.Options{
		Responder: responder,
		KeysURL:   s.cfg.GitHubKeysURL,
		Now:       s.now,
		Logger:    s.logger,
	})
}

// startExpiry runs the expiry notifier until Close: warnings 7 days and 1
// day before a key expires, and a note when a rolled key's old token stops
// working. Every instance runs one; the notices' claims in the database
// make each go out once.
func (s *Server) startExpiry(interval time.Duration) {
	n := apikey.NewExpiryNotifier(s.store, apikey.ExpiryOptions{
		Notify:   s.sendKeyNotice,
		Audit:    KeyAudit(s.audit),
		Interval: interval,
		Now:      s.now,
		Logger:   s.logger,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx)
	}()
	s.stopExpiry = func() { cancel(); <-done }
}

// sendKeyNotice mails a key's owner about it: an expiry warning, the end
// of a rolled key's grace period, or a leak. Expired keys get no mail of
// their own (their owner was warned twice), only the audit entry.
func (s *Server) sendKeyNotice(ctx context.Context, n apikey.Notice) error {
	var subject, body string
	k := n.Key
	name := fmt.Sprintf("%q (%s_%s)", k.Name, k.Prefix, k.ID)
	switch n.Kind {
	case apikey.NoticeExpiresSoon, apikey.NoticeExpiresTomorrow:
		left := "in 7 days"
		if n.Kind == apikey.NoticeExpiresTomorrow {
			left = "within a day"
		}
		subject = "Your FavoritesAPI key expires " + left
		body = fmt.Sprintf("Your API key %s expires %s, at %s.\n\nCreate a new key on your dashboard and move your programs to it before then: %s/app\n",
			name, left, k.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"), s.cfg.BaseURL)
	case apikey.NoticeGraceEnded:
		subject = "The old token of your rolled FavoritesAPI key stopped working"
		body = fmt.Sprintf("You rolled your API key %s; its previous token stopped working at %s. Requests still using it are refused.\n\nSee your keys at %s/app\n",
			name, k.PreviousExpiresAt.UTC().Format("2006-01-02 15:04 UTC"), s.cfg.BaseURL)
	case apikey.NoticeLeaked:
		subject = "Your FavoritesAPI key was found in public and revoked"
		body = fmt.Sprintf("GitHub found your API key %s in public, at:\n\n  %s\n\n"+
			"We revoked it at once: requests with it are refused. Create a new key on your dashboard, update your programs, "+
			"and remove the old one from where it was published (and from its history): %s/app\n",
			name, oneLine(n.URL), s.cfg.BaseURL)
	default:
		return nil
	}
	email, found, err := s.store.UserEmail(ctx, k.UserID)
	if err != nil {
		return err
	}
	if !found {
		return nil // the account was deleted meanwhile
	}
	s.logger.Info("key notice", "kind", n.Kind, "user", k.UserID, "key", k.ID)
	return s.mailer.Send(ctx, magiclink.Message{From: s.cfg.MailFrom, To: email, Subject: subject, Text: body})
}

// oneLine keeps a reporter's URL on one line of a mail, at most 500 bytes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}

// pruneAudit drops the events older than the retention, from the
// housekeeping loop.
func (s *Server) pruneAudit(ctx context.Context) {
	if n, err := s.audit.Prune(ctx); err != nil {
		s.logger.Warn("pruning the security log", "error", err)
	} else if n > 0 {
		s.logger.Info("pruned the security log", "events", n)
	}
}

// AuditLog returns the server's security log.
func (s *Server) AuditLog() *audit.Log { return s.audit }
