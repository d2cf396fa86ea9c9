package magiclink

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"
)

// Options configures a [Service]. BaseURL and Mailer are required; every
// other zero value is a safe default.
type Options struct {
	// BaseURL is the public origin of the site, such as
	// "https://api.example.com" (optionally with a path prefix). Login
	// links are BaseURL + "/login/verify?token=…"; they are never built
	// from the request's Host header, which a client controls.
	BaseURL string

	// Mailer sends the login emails (required). See [SMTPMailer] and
	// [ConsoleMailer].
	Mailer Mailer

	// From is the sender of the login emails, such as
	// "FavoritesAPI <login@example.com>" (default AppName
	// <noreply@BaseURL's host>).
	From string

	// AppName is shown in emails and pages (default "apikit").
	AppName string

	// TokenTTL is how long a login link works (default 15 minutes).
	TokenTTL time.Duration

	// SessionTTL is how long a session lasts from sign-in (default 10
	// days). It is absolute: activity never extends it.
	SessionTTL time.Duration

	// IdleTimeout, if positive, ends a session that has not been used for
	// that long. Last use is written at most once a minute per session
	// (or once per IdleTimeout/10, if shorter). Zero means no idle
	// timeout.
	IdleTimeout time.Duration

	// AllowSignup lets a login request for an unknown email create the
	// account (default false: unknown emails get no mail, and the response
	// is the same either way).
	AllowSignup bool

	// SendLimiter limits login emails per address; it is asked with the
	// normalised address as the key, for POST /login and
	// [Service.SendLink] alike, whether or not the address has an account
	// or has ever been proven (default: in memory, 5 per hour). A refused
	// request gets 429, whether or not the account exists.
	SendLimiter Limiter

	// SendClientLimiter limits login emails per client, keyed by ClientKey,
	// so that one client cannot spend the mail queue, nor the SendLimiter
	// budgets of many addresses (default: in memory, 30 per hour). It is
	// asked before SendLimiter; a refused request gets 429. It does not
	// apply to [Service.SendLink], which has no client.
	SendClientLimiter Limiter

	// QueuePerClient bounds the login emails of one client (by ClientKey)
	// waiting in the queue at once (default QueueSize/10, at least 1):
	// even with a SendClientLimiter that fails open, one client cannot fill
	// the queue for everyone. A request over it gets 429.
	QueuePerClient int

	// VerifyLimiter limits failed sign-in attempts (POST /login/verify)
	// per client, keyed by ClientKey (default: in memory, 20 per minute).
	// Only failures are counted — a malformed, unknown, used or expired
	// token, or an unreadable body — by one call of Allow each, so that
	// many people behind one proxy are not locked out by one of them
	// mistyping or replaying links. When Allow refuses a failure (or
	// fails), the client is blocked for VerifyBlock: its attempts are
	// refused with 429 and Retry-After before their token is looked up.
	//
	// The block is kept in this process, since Limiter can only spend, not
	// peek. With a limiter shared by N instances, a client over its budget
	// gets at most one more failed attempt per instance per VerifyBlock
	// (plus those it has in flight at once) before each instance blocks it
	// too. At most 100,000 clients are blocked at once per process; past
	// that, a newly blocked client's attempts are still refused, but after
	// their token is looked up.
	VerifyLimiter Limiter

	// VerifyBlock is how long a client whose failure VerifyLimiter refused
	// stays refused before VerifyLimiter is asked again (default 1
	// minute).
	VerifyBlock time.Duration

	// ClientKey returns the key a client's requests are limited by, for
	// SendClientLimiter, QueuePerClient and VerifyLimiter (default: the
	// host of r.RemoteAddr). Behind a reverse proxy, return the client
	// address the proxy reports, such as ratelimit.ClientKey with the
	// proxies' networks.
	ClientKey func(r *http.Request) string

	// TrustedOrigins are origins ("https://www.example.com") other than
	// the site's own whose pages may post to the handlers, such as a
	// marketing site with a login form. Every other cross-origin browser
	// POST is refused with 403 ([ErrCrossOrigin]).
	TrustedOrigins []string

	// ErrorHandler writes the response to every refused request: the
	// error is an [*Error] wrapping one of the refusal sentinels
	// ([ErrCrossOrigin], [ErrRateLimited], [ErrInvalidToken], ...), whose
	// Status, Code and Detail say what to answer; headers such as
	// Retry-After and Allow are already set. The default is
	// [Service.WriteError]: problem documents for JSON clients, pages for
	// browsers. An application renders its own JSON or HTML with it, and
	// may call Service.WriteError for the rest.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	// InsecureCookies names the cookie "session" and drops its Secure
	// attribute, for plain-HTTP development on a host other than
	// localhost. Off by default, and not needed on localhost with
	// Chromium, which treats http://localhost, 127.0.0.1 and [::1] as
	// secure and keeps the default Secure "__Host-session" cookie there
	// (see the package documentation). Never set it in production.
	InsecureCookies bool

	// LoginPath is where the login form is (default "/login"):
	// [Service.Register] mounts it there, and RequireUser sends signed-out
	// browsers there. The links always point to "/login/verify" and
	// logging out is "POST /logout".
	LoginPath string

	// AfterLoginPath is where a browser goes after signing in (default
	// "/app").
	AfterLoginPath string

	// AfterLogoutPath is where a browser goes after signing out (default
	// "/").
	AfterLogoutPath string

	// Templates, if set, overrides some or all of the embedded templates,
	// each by name: the pages "login.html", "sent.html", "verify.html",
	// "invalid.html" and "error.html"; "head" and "foot", which frame every
	// default page (redefine just these two to restyle the pages as your
	// site); and the email parts "email_subject.txt", "email.txt" and
	// "email.html" (an HTML part that renders empty is left out). They are
	// added to the defaults' template set, so they may call each other and
	// the defaults, but not functions the set does not have. See [PageData] and
	// [EmailData] for what they are given. The plain-text parts are
	// rendered with html/template too and then HTML-unescaped, so they hold
	// the values as they are.
	Templates *template.Template

	// QueueSize bounds the number of login emails waiting to be sent
	// (default 1,000). When it is full, login requests get 503.
	QueueSize int

	// Workers is how many emails are sent at once (default 2).
	Workers int

	// SendAttempts is how many times an email is tried before it is given
	// up (default 3); attempts are spaced by RetryBackoff, doubling.
	SendAttempts int

	// SendTimeout bounds one attempt (default 30 seconds).
	SendTimeout time.Duration

	// RetryBackoff is the wait before the second attempt (default 2
	// seconds); each further wait doubles.
	RetryBackoff time.Duration

	// CleanupInterval is how often used and expired tokens and expired
	// sessions are deleted from the store (default 1 hour; negative
	// disables it).
	CleanupInterval time.Duration

	// OnEmailChanged, if set, is called after a confirmed email change
	// ([Service.EmailChangeHandler]) has replaced a user's address, with
	// the request's context: to update the address elsewhere (a payment
	// provider's customer record). It runs on the request path; it should
	// be quick, handle its own failures, and be safe to repeat. The
	// change has happened whatever it does.
	OnEmailChanged func(ctx context.Context, userID int64, oldEmail, newEmail string)

	// Audit, if set, is told of security events ([AuditEvent]): sign-in
	// links requested, sign-ins, sign-outs (one session, or all of a
	// user's), and email changes requested and made. It is called after
	// the change was written, with the context of the request (or of the
	// method's caller), so that it can read who acted and from where
	// (package audit: audit.Middleware, audit.WithActor), and on the
	// request's goroutine, except for EventLinkRequested (below). An error
	// from it is logged and changes nothing: a sign-out must stand and a
	// response must not depend on the audit store. Wire it to an audit log
	// that writes synchronously, so that the entry exists when the
	// response is sent.
	//
	// EventLinkRequested is reported by the mail worker, once the account
	// has been looked up and the link stored, with the request's context
	// values (not its cancellation): the login response stays the same,
	// in content and timing, whether or not the address has an account.
	// It is reported only for an address that has an account; a request
	// for any other address is reported to no one (with AllowSignup too:
	// no account exists until the link is followed, and the sign-in that
	// creates it is reported), so that strangers cannot fill the log with
	// addresses of their choosing. [Stats].NoAccount counts those.
	Audit func(ctx context.Context, e AuditEvent) error

	// Trace, if set, is called as each queued email is handled (the
	// account looked up, the token stored, the message sent with its
	// retries), with the context of the request that queued it (its
	// values only: the handling outlives the request) and the name
	// "magiclink.mail"; the function it returns is called when the
	// handling ends, with its error (nil when the email was sent, or when
	// none was due). It lets a tracer, such as OpenTelemetry's, time the
	// mail path without this package depending on one. The context Trace
	// returns is the one the Mailer and the store receive. Neither the
	// name nor anything this package passes carries an address or a token.
	Trace func(ctx context.Context, name string) (context.Context, func(error))

	// Logger receives failures (default: discard). Tokens, session ids and
	// full email addresses are never logged: addresses appear as
	// "…@domain".
	Logger *slog.Logger

	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// ErrInvalidOptions is wrapped by the errors [New] returns for unusable
// [Options].
var ErrInvalidOptions = errors.New("magiclink: invalid options")

func optionsError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Mailer == nil {
		return o, optionsError("Mailer is required")
	}
	base, err := url.Parse(o.BaseURL)
	switch {
	case o.BaseURL == "":
		return o, optionsError("BaseURL is required, such as https://api.example.com")
	case err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" ||
		base.User != nil || base.RawQuery != "" || base.Fragment != "" || base.Opaque != "":
		return o, optionsError("BaseURL %q must be an absolute http(s) URL without user, query or fragment, such as https://api.example.com", o.BaseURL)
	}
	o.BaseURL = strings.TrimRight(base.String(), "/")
	if o.AppName == "" {
		o.AppName = "apikit"
	}
	if strings.ContainsAny(o.AppName, "\r\n") {
		return o, optionsError("AppName contains a line break")
	}
	if o.From == "" {
		o.From = mime1522(o.AppName) + " <noreply@" + base.Hostname() + ">"
	}
	if _, err := mail.ParseAddress(o.From); err != nil || strings.ContainsAny(o.From, "\r\n") {
		return o, optionsError("From %q is not an address such as \"App <login@example.com>\"", o.From)
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 15 * time.Minute
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 10 * 24 * time.Hour
	}
	if o.IdleTimeout < 0 {
		return o, optionsError("IdleTimeout is negative")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SendLimiter == nil {
		o.SendLimiter = NewMemoryLimiter(5, time.Hour, o.Now)
	}
	if o.VerifyLimiter == nil {
		o.VerifyLimiter = NewMemoryLimiter(20, time.Minute, o.Now)
	}
	if o.SendClientLimiter == nil {
		o.SendClientLimiter = NewMemoryLimiter(30, time.Hour, o.Now)
	}
	if o.VerifyBlock < 0 {
		return o, optionsError("VerifyBlock is negative")
	}
	if o.VerifyBlock == 0 {
		o.VerifyBlock = time.Minute
	}
	if o.ClientKey == nil {
		o.ClientKey = remoteHost
	}
	for _, p := range []*string{&o.LoginPath, &o.AfterLoginPath, &o.AfterLogoutPath} {
		if *p != "" && (!strings.HasPrefix(*p, "/") || strings.HasPrefix(*p, "//") || strings.ContainsAny(*p, "\\\r\n")) {
			return o, optionsError("path %q must be a local path starting with a single /", *p)
		}
	}
	if o.LoginPath == "" {
		o.LoginPath = "/login"
	}
	if o.AfterLoginPath == "" {
		o.AfterLoginPath = "/app"
	}
	if o.AfterLogoutPath == "" {
		o.AfterLogoutPath = "/"
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1000
	}
	if o.QueuePerClient <= 0 {
		o.QueuePerClient = max(1, o.QueueSize/10)
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.SendAttempts <= 0 {
		o.SendAttempts = 3
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 30 * time.Second
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 2 * time.Second
	}
	if o.CleanupInterval == 0 {
		o.CleanupInterval = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// mime1522 quotes a display name for an address header when it needs it.
func mime1522(name string) string {
	if strings.ContainsAny(name, "()<>[]:;@\\,.\"") {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
	}
	return name
}

// remoteHost is the default ClientKey: the IP address of the peer.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
