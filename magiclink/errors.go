package magiclink

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/internal/emailaddr"
	"github.com/apikit/apikit/problem"
)

// Refusals: the errors the handlers refuse a request with, each wrapped in
// an [*Error] and passed to [Options.ErrorHandler]. Check them with
// [errors.Is]; [StatusCode], [ErrorCode] and [PublicMessage] map them,
// through one table, to the HTTP status, code and sentence of the default
// responses. [ErrQueueFull], [ErrClosed] and [ErrUnavailable] are
// refusals too (503), and so are [ErrEmailTaken] (409) and
// [ErrEmailChangeUnsupported] (501).
var (
	// ErrCrossOrigin refuses a cross-origin browser POST (403), as
	// [http.CrossOriginProtection] detects it.
	ErrCrossOrigin = errors.New("magiclink: cross-origin request refused")
	// ErrMethodNotAllowed refuses a request with a method the route does
	// not serve (405; the Allow header is set).
	ErrMethodNotAllowed = errors.New("magiclink: method not allowed")
	// ErrNotFound refuses a request to a path [Service.Handler] does not
	// serve (404).
	ErrNotFound = errors.New("magiclink: not found")
	// ErrBadRequest refuses a body that is not a form or JSON object, or is
	// too large (400 or 413).
	ErrBadRequest = errors.New("magiclink: malformed request body")
	// ErrInvalidEmail refuses an address that is not one (400).
	ErrInvalidEmail = errors.New("magiclink: not an email address")
	// ErrRateLimited refuses a request over a limit (429; Retry-After is
	// set): too many links for an address or from a client, or too many
	// failed sign-in attempts from a client.
	ErrRateLimited = errors.New("magiclink: rate limited")
	// ErrInvalidToken refuses a login token that is malformed, unknown,
	// used, expired or replaced by a newer one (400).
	ErrInvalidToken = errors.New("magiclink: invalid login token")
	// ErrUnauthenticated refuses a request that [Service.RequireUser] found
	// no valid session for (401; the default response sends browsers to the
	// login page instead).
	ErrUnauthenticated = errors.New("magiclink: not signed in")
	// ErrInvalidCode refuses a sign-in code (POST /login/code) that is
	// malformed or wrong, or that comes without the cookie of the browser
	// that asked for it, or whose sign-in is used, expired, replaced or
	// void after too many attempts (400). It matches [ErrInvalidToken].
	ErrInvalidCode = fmt.Errorf("%w: invalid sign-in code", ErrInvalidToken)
)

// Error is a refusal, as [Options.ErrorHandler] receives it: Err is one of
// the sentinels above (or ErrQueueFull, ErrClosed, ErrUnavailable), Status
// the HTTP status, Code a stable machine-readable name such as
// "rate_limited", and Detail a sentence fit to show the client. None of them
// holds a token, a session id or an address.
type Error struct {
	Status int
	Code   string
	Detail string
	Err    error
	// RetryAfter is, for a 429 or 503, how long the client should wait
	// before trying again; the handlers have set the Retry-After header
	// from it when the ErrorHandler is called.
	RetryAfter time.Duration

	email       string // the address entered, to show again on the login form
	emailChange bool   // an email-change link rather than a sign-in link
}

// Error returns the sentinel's message and the detail.
func (e *Error) Error() string { return e.Err.Error() + ": " + e.Detail }

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// errBodyTooLarge refuses a body over the handlers' cap; it matches
// [ErrBadRequest].
var errBodyTooLarge = fmt.Errorf("%w: body too large", ErrBadRequest)

// errorTable is the one mapping from this package's errors to an HTTP
// status, a stable machine-readable code and a sentence fit to show the
// client. The first row whose error matches ([errors.Is]) wins; an error
// that matches none gets the last row. A handler may replace the message
// with one that fits its situation better (the refusals of a sign-in say
// "signing in", those of a sign-out "signing out"), never the status or
// the code.
var errorTable = []struct {
	err     error
	status  int
	code    string
	message string
}{
	{ErrCrossOrigin, http.StatusForbidden, "cross_origin", "Cross-origin requests are not accepted: use the form on this site."},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed, "method_not_allowed", "This method is not allowed here."},
	{ErrNotFound, http.StatusNotFound, "not_found", "There is no such page."},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, "invalid_body", "The request body is too large."},
	{ErrBadRequest, http.StatusBadRequest, "invalid_body", "The request body is not a form or JSON object."},
	{ErrInvalidEmail, http.StatusBadRequest, "invalid_email", "This is not an email address."},
	{ErrRateLimited, http.StatusTooManyRequests, "rate_limited", "Too many requests. Try again later."},
	{ErrInvalidCode, http.StatusBadRequest, "invalid_code", "The code is wrong, or has expired. Check the email, or ask for a new one."},
	{ErrInvalidToken, http.StatusBadRequest, "invalid_token", "The link has expired, has been used, or was replaced by a newer one. Ask for a new one."},
	{ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated", "Sign in first."},
	{ErrEmailTaken, http.StatusConflict, "email_taken", "This address belongs to another account, so it cannot become yours. Nothing was changed."},
	{ErrEmailChangeUnsupported, http.StatusNotImplemented, "email_change_unsupported", "Changing the sign-in address is not possible here."},
	{ErrQueueFull, http.StatusServiceUnavailable, "unavailable", "Emails cannot be sent right now. Try again shortly."},
	{ErrClosed, http.StatusServiceUnavailable, "unavailable", "The service is shutting down. Try again shortly."},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "The service is unavailable right now. Try again shortly."},
	{nil, http.StatusInternalServerError, "error", "The request could not be served. Try again shortly."},
}

// lookupError returns err's row of errorTable.
func lookupError(err error) int {
	for i, row := range errorTable[:len(errorTable)-1] {
		if errors.Is(err, row.err) {
			return i
		}
	}
	return len(errorTable) - 1
}

// StatusCode returns the HTTP status for an error of this package: the
// Status of an [*Error], and otherwise its sentinel's: 400 for
// [ErrBadRequest] (413 for a body too large), [ErrInvalidEmail] and
// [ErrInvalidToken], 401 for [ErrUnauthenticated], 403 for
// [ErrCrossOrigin], 404 for [ErrNotFound], 405 for [ErrMethodNotAllowed],
// 409 for [ErrEmailTaken], 429 for [ErrRateLimited], 501 for
// [ErrEmailChangeUnsupported], 503 for [ErrQueueFull], [ErrClosed] and
// [ErrUnavailable], and 500 for anything else. nil is 200.
func StatusCode(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return errorTable[lookupError(err)].status
}

// ErrorCode returns the stable, machine-readable code of an error of this
// package ("rate_limited", "invalid_token", …): the Code of an [*Error],
// and otherwise its sentinel's; "error" for anything else.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return errorTable[lookupError(err)].code
}

// PublicMessage returns what the client may be told about err: the Detail
// of an [*Error], and otherwise its sentinel's fixed sentence; never the
// text of a wrapped system error.
func PublicMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Detail
	}
	return errorTable[lookupError(err)].message
}

// refusal returns the [*Error] for a sentinel, with the status and code of
// its row of errorTable and detail, or the row's message if detail is "".
func refusal(sentinel error, detail string) *Error {
	row := errorTable[lookupError(sentinel)]
	if detail == "" {
		detail = row.message
	}
	return &Error{Status: row.status, Code: row.code, Detail: detail, Err: sentinel}
}

// after sets e's RetryAfter and returns e.
func (e *Error) after(d time.Duration) *Error {
	e.RetryAfter = d
	return e
}

// refuse answers r with err through the ErrorHandler, after setting
// Retry-After from err.RetryAfter.
func (s *Service) refuse(w http.ResponseWriter, r *http.Request, err *Error) {
	if err.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((err.RetryAfter+time.Second-1)/time.Second), 10))
	}
	s.opts.ErrorHandler(w, r, err)
}

// WriteError is the default [Options.ErrorHandler]: it answers a refusal
// as the package always has, with an RFC 9457 problem document for JSON
// clients (a JSON body, or an Accept header that prefers JSON), and
// otherwise with a page from the templates: the login form again for
// [ErrInvalidEmail], the "link not valid" page for [ErrInvalidToken], a
// redirect to LoginPath for [ErrUnauthenticated], and the error page for
// the rest. An application's own ErrorHandler can call it for the errors
// it does not render itself.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = refusal(err, "")
	}
	if wantsJSON(r) {
		p := problem.New(e.Status, e.Code, e.Detail)
		if errors.Is(e, ErrInvalidEmail) {
			p.InvalidParams = []problem.InvalidParam{{Name: "email", Reason: e.Detail}}
		}
		problem.Write(w, p)
		return
	}
	switch {
	case errors.Is(e, ErrUnauthenticated):
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, s.opts.LoginPath, http.StatusSeeOther)
	case errors.Is(e, ErrInvalidEmail):
		shown := e.email
		if len(shown) > emailaddr.MaxLen || strings.ContainsAny(shown, "\r\n") {
			shown = ""
		}
		s.page(w, e.Status, tmplLogin, PageData{Title: "Sign in", Error: e.Detail, Email: shown})
	case errors.Is(e, ErrInvalidCode):
		s.page(w, e.Status, tmplSent, PageData{Title: "Check your email", Error: e.Detail})
	case errors.Is(e, ErrInvalidToken) && e.emailChange:
		s.page(w, e.Status, tmplError, PageData{Title: "Link not valid", Error: e.Detail})
	case errors.Is(e, ErrInvalidToken):
		s.page(w, e.Status, tmplInvalid, PageData{Title: "Link not valid"})
	case errors.Is(e, ErrEmailTaken):
		s.page(w, e.Status, tmplError, PageData{Title: "Address not changed", Error: e.Detail})
	default:
		s.page(w, e.Status, tmplError, PageData{Title: http.StatusText(e.Status), Error: e.Detail})
	}
}

// Errors of this package. Check them with [errors.Is].
var (
	// ErrClosed means the [Service] has been closed and sends no more
	// email.
	ErrClosed = errors.New("magiclink: service closed")
	// ErrQueueFull means the mail queue is full; the request is refused
	// with 503 and may be retried.
	ErrQueueFull = errors.New("magiclink: mail queue full")
	// ErrUnavailable means the store failed; the request is refused with
	// 503 (fail closed).
	ErrUnavailable = errors.New("magiclink: store unavailable")
	// ErrUnknownUser means [Service.SignIn] was given a user id that does
	// not exist.
	ErrUnknownUser = errors.New("magiclink: unknown user")
)
