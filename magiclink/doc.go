// Package magiclink is passwordless sign-in for a website: a visitor enters
// an email address, receives a link that works once for a short time, and
// following it signs them in with a session cookie.
//
// # Flow
//
//	POST /login {email}   → 200 "check your email" (the same for every
//	                        address); the link is emailed off the request path
//	GET  /login/verify?token=…  → a page with a "Sign in" button, nothing more
//	POST /login/verify    → the token is spent, a session starts, 303 to the app
//	POST /login/code {code} → from the browser that asked only (its
//	                        __Host-login cookie): the same token is spent by
//	                        the 8-digit code in the email, a session starts
//	POST /logout          → the session is deleted, 303 to AfterLogoutPath
//
// # Sign-in codes
//
// The login email carries an 8-digit code beside the link, for whoever
// reads mail on another device. POST /login gives the asking browser a
// short-lived HttpOnly cookie holding a random nonce, and the store keeps
// the SHA-256 of that nonce and of the code with the token: the code works
// only with the cookie, so a code alone is useless in any other browser.
// Link and code spend the same token, so using one kills the other. A
// requested sign-in allows [MaxCodeAttempts] codes (counted atomically by
// the store), then it is void, link included; failures also count against
// the client's [Options.VerifyLimiter]. See [Service.CodeHandler].
//
// # Sessions
//
// Sessions record the client's User-Agent and address when they start;
// [Service.Sessions] lists a user's sessions for an account page,
// [Service.EndSession] ends one by its opaque [SessionInfo].Ref and
// [Service.EndOtherSessions] all but the current one. [User].SignedInAt
// lets an application demand a recent sign-in before a grave step.
//
// # Changing the address
//
// A signed-in user changes their address with [Service.RequestEmailChange]:
// a link goes to the new address, and only following it (a confirmation
// page, then a POST to /login/email/verify, [Service.EmailChangeHandler])
// replaces the old address, which is then told by email. A new address
// that belongs to another account is refused only to whoever follows its
// link ([ErrEmailTaken]); the requester learns nothing. It needs a Store
// that also implements [EmailChangeStore]. [Options.OnEmailChanged] tells
// the application (to update a payment provider's customer email).
//
// # Errors
//
// Every refusal maps, through one table, to an HTTP status, a stable code
// and a sentence fit to show ([StatusCode], [ErrorCode], [PublicMessage]).
//
// [New] builds a [Service] over a [Store] (store/sqlite and store/postgres
// provide one) and a [Mailer] ([SMTPMailer], or [ConsoleMailer] during
// development); [Service.Register] mounts the handlers on an
// [http.ServeMux], [Service.Handler] serves them for any other router (such
// as chi's r.Mount("/login", login.Handler())), and [Service.RequireUser]
// and [Service.LoadUser] authenticate other routes, which find the user
// with [UserFrom]. [Service.SendLink] sends a link from the application's
// own code. Every refusal goes through [Options.ErrorHandler] as an
// [*Error], so an application can render its own JSON or HTML.
//
// # Security
//
//   - Login tokens and session ids are 32 bytes from crypto/rand, base64url;
//     the store keeps only their SHA-256. A token is spent by one atomic
//     statement, so it works once, and only before it expires (15 minutes by
//     default); asking for a new link invalidates the earlier ones.
//   - Following a link only shows a confirmation page (served with
//     Referrer-Policy: no-referrer and no scripts): mail scanners that fetch
//     links, even those that run JavaScript, do not sign anyone in or spend
//     the token. Only the POST does.
//   - The login response does not reveal whether an account exists: it is
//     the same page, with the same headers, produced by the same code path,
//     because the account is looked up by the mail worker after the
//     response. Sending is limited per address ([Options.SendLimiter],
//     whether or not the address has an account or was ever proven) and
//     per client ([Options.SendClientLimiter], and at most
//     [Options.QueuePerClient] emails of one client waiting in the queue),
//     so that one client can neither fill the mail queue nor spend many
//     addresses' budgets; a full queue answers the same for every address.
//   - Failed sign-in attempts are limited per client
//     ([Options.VerifyLimiter]): only failures count, so people behind one
//     proxy do not lock each other out, and a client over its budget is
//     refused before its token is looked up.
//   - The in-memory limiters never forget a key that has spent part of its
//     budget to make room for new ones: a flood of new keys is refused
//     instead, so nobody can reset an address's limit.
//   - Links are built from [Options.BaseURL], never from the request's Host.
//   - Sessions last [Options.SessionTTL] (10 days) from sign-in, however
//     active, with an optional idle timeout. Signing in always creates a new
//     session id; a cookie planted before sign-in is never adopted. Logging
//     out deletes the session in the store, so the old cookie stops working;
//     [Service.RevokeSessions] signs a user out everywhere.
//   - Every handler refuses cross-origin browser POSTs itself, with
//     [http.CrossOriginProtection], whatever router mounts it (403,
//     [ErrCrossOrigin]).
//   - Tokens, session ids and full addresses never appear in logs.
//
// # Cookies and local development
//
// The session cookie is "__Host-session", with Secure, HttpOnly,
// SameSite=Lax and Path=/. Browsers keep Secure cookies only from secure
// origins. Chromium counts http://localhost, http://127.0.0.1 and
// http://[::1] as secure and stores and sends the cookie there over plain
// HTTP (recent Firefox does too), so local development and browser tests
// need no TLS. Browsers that do not (Safari), and every other host name
// over plain HTTP (a LAN address, a container name), drop it: use https
// there, or, for development only, set [Options.InsecureCookies], which
// names the cookie "session" and drops Secure.
//
// # Observability
//
// [Service.Stats] counts what the service did (links requested, mail sent,
// failed and queued, verifications, sessions); [Options.Trace] is called
// around the handling of each queued email, in the context of the request
// that queued it, so that a tracer such as OpenTelemetry's can time the
// mail path without this package depending on one.
//
// # Audit trail
//
// [Options.Audit] is told of the security events of an account
// ([AuditEvent]): sign-in links requested, sign-ins (by link, code or
// [Service.SignIn]), sign-outs of one session or of all, and email changes
// requested and made, with the context of the request, so that an audit
// log (package audit) records the client's address and user agent. The
// kinds have the values of package audit's kinds; this package does not
// import it. Events never hold a token, a code, a session id or a full
// address, and a request for an address with no account is reported to no
// one, so that the login response still tells nothing. A failing hook is
// logged and counted ([Stats].AuditErrors) and changes no response.
package magiclink
