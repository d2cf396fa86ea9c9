package billing

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/apikit/apikit/internal/emailaddr"
)

// Errors that the handlers pass to [Options.ErrorHandler]. Check them with
// [errors.Is]; [StatusCode] maps them to HTTP statuses.
var (
	// ErrInvalidEmail means the sign-up address was missing or invalid.
	// The error wraps an explanation fit to show the user.
	ErrInvalidEmail = errors.New("billing: invalid email address")
	// ErrBadRequest means the request was malformed: wrong method, body
	// too large, unreadable JSON.
	ErrBadRequest = errors.New("billing: bad request")
	// ErrCrossOrigin means a browser sent a cross-origin POST (or other
	// unsafe request) to a form handler (403); nothing was done.
	ErrCrossOrigin = errors.New("billing: cross-origin request refused")
	// ErrRateLimited means the client made too many sign-ups or dev
	// checkouts ([Options.Limiter]), or the limiter failed (429, with
	// Retry-After).
	ErrRateLimited = errors.New("billing: too many requests")
	// ErrStripe means a call to the Stripe API failed (502 Bad Gateway).
	ErrStripe = errors.New("billing: the payment provider could not be reached")
	// ErrUnavailable means the store failed (503).
	ErrUnavailable = errors.New("billing: store unavailable")
	// ErrCheckoutInvalid means a success page was visited with a session
	// id that is unknown, not complete, too old or not ours, or a dev
	// checkout that is unknown, expired or already completed (410).
	ErrCheckoutInvalid = errors.New("billing: checkout session invalid or already used")
	// ErrNotSignedIn means the portal was asked for without a signed-in
	// user.
	ErrNotSignedIn = errors.New("billing: not signed in")
	// ErrNoCustomer means the signed-in user has never completed a
	// checkout, so there is no billing account to manage.
	ErrNoCustomer = errors.New("billing: no billing account")
	// ErrInvalidSignature means a webhook's signature, timestamp, API
	// version or payload was refused (400); nothing was changed.
	ErrInvalidSignature = errors.New("billing: invalid webhook")
	// ErrNoPlan means the user has no plan ([Service.Plan]): no entitling
	// subscription, and [Options.Plans] has no free plan (or is not set).
	// The API answers 403.
	ErrNoPlan = errors.New("billing: no plan for this user")
	// ErrUnknownPlan means a sign-up or plan change named a plan that
	// [Options.Plans] does not have (400). The error's message, and
	// [PublicMessage], name it.
	ErrUnknownPlan = errors.New("billing: unknown plan")
)

// unknownPlanError is an [ErrUnknownPlan] for one name.
type unknownPlanError struct{ name string }

func (e *unknownPlanError) Error() string {
	return fmt.Sprintf("%v %q", ErrUnknownPlan, e.name)
}

func (e *unknownPlanError) Is(target error) bool { return target == ErrUnknownPlan }

// publicMessage names the plan, shortened: it is the client's own input.
func (e *unknownPlanError) publicMessage() string {
	name := e.name
	if len(name) > 64 {
		name = strings.ToValidUTF8(name[:64], "") + "…"
	}
	return fmt.Sprintf("There is no plan called %q: choose one of the plans offered.", name)
}

// errorTable is the one mapping from this package's errors to an HTTP
// status, a stable machine-readable code and a sentence fit to show the
// user. The first row whose error matches (errors.Is) wins; an error that
// matches none is the last row's (the store failed).
var errorTable = []struct {
	err     error
	status  int
	code    string
	message string
}{
	{emailaddr.ErrInvalid, http.StatusBadRequest, "invalid_email", ""}, // message: the address's reason
	{ErrInvalidEmail, http.StatusBadRequest, "invalid_email", "Please enter your email address."},
	{ErrBadRequest, http.StatusBadRequest, "bad_request", "The request could not be understood."},
	{ErrInvalidSignature, http.StatusBadRequest, "invalid_webhook", "The webhook was refused."},
	{ErrCrossOrigin, http.StatusForbidden, "cross_origin", "Cross-origin requests are not allowed. Go back to the site and submit the form from there."},
	{ErrRateLimited, http.StatusTooManyRequests, "rate_limited", "Too many attempts from your network. Wait a while and try again."},
	{ErrNotSignedIn, http.StatusUnauthorized, "not_signed_in", "Please sign in first."},
	{ErrNoCustomer, http.StatusNotFound, "no_billing_account", "There is no billing account for you yet: subscribe first."},
	{ErrUnknownPlan, http.StatusBadRequest, "unknown_plan", "There is no such plan: choose one of the plans offered."},
	{ErrNoPlan, http.StatusForbidden, "no_plan", "Your account has no plan that includes this: subscribe to continue."},
	{ErrCheckoutInvalid, http.StatusGone, "checkout_invalid", "This checkout link is not valid any more. Sign in with your email address to continue."},
	{ErrStripe, http.StatusBadGateway, "payment_provider_error", "The payment provider could not be reached. Nothing was charged; please try again in a moment."},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "The service is temporarily unavailable. Please try again in a moment."},
}

func lookupError(err error) int {
	for i, row := range errorTable {
		if errors.Is(err, row.err) {
			return i
		}
	}
	return len(errorTable) - 1
}

// StatusCode maps an error from this package to an HTTP status: 400 for an
// invalid email, request, webhook or plan name, 401 for no signed-in user,
// 403 for a cross-origin request or a user without a plan, 404 for no
// billing account, 410 for an invalid checkout session, 429 when rate
// limited, 502 when Stripe failed and 503 for anything else (the store
// failed). nil is 200.
func StatusCode(err error) int {
	if err == nil {
		return http.StatusOK
	}
	return errorTable[lookupError(err)].status
}

// ErrorCode is the stable, machine-readable code of an error from this
// package ("invalid_email", "cross_origin", "rate_limited", …), as the
// default error responses carry it.
func ErrorCode(err error) string { return errorTable[lookupError(err)].code }

// PublicMessage is what the user may be told about err: a fixed sentence
// per error (or the reason an address was refused), never the wrapped
// system error.
func PublicMessage(err error) string {
	var ee *emailaddr.Error
	if errors.As(err, &ee) {
		return "That email address cannot be used: " + ee.Reason + "."
	}
	var pe *unknownPlanError
	if errors.As(err, &pe) {
		return pe.publicMessage()
	}
	row := errorTable[lookupError(err)]
	if row.message == "" {
		return errorTable[1].message
	}
	return row.message
}
