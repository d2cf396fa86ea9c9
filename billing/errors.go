package billing

import (
	"errors"
	"net/http"

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
	// ErrStripe means a call to the Stripe API failed (502 Bad Gateway).
	ErrStripe = errors.New("billing: the payment provider could not be reached")
	// ErrUnavailable means the store failed (503).
	ErrUnavailable = errors.New("billing: store unavailable")
	// ErrCheckoutInvalid means a success page was visited with a session
	// id that is unknown, not complete, too old, not ours, or already used.
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
)

// StatusCode maps an error from this package to an HTTP status: 400 for an
// invalid email, request or webhook, 401 for no signed-in user, 404 for no
// billing account, 410 for a used or invalid checkout session, 502 when
// Stripe failed and 503 for anything else (the store failed).
func StatusCode(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrInvalidEmail), errors.Is(err, emailaddr.ErrInvalid),
		errors.Is(err, ErrBadRequest), errors.Is(err, ErrInvalidSignature):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotSignedIn):
		return http.StatusUnauthorized
	case errors.Is(err, ErrNoCustomer):
		return http.StatusNotFound
	case errors.Is(err, ErrCheckoutInvalid):
		return http.StatusGone
	case errors.Is(err, ErrStripe):
		return http.StatusBadGateway
	default:
		return http.StatusServiceUnavailable
	}
}

// publicMessage is what the user is told about err: the email's reason, or
// a fixed sentence per sentinel, never the wrapped system error.
func publicMessage(err error) string {
	var ee *emailaddr.Error
	switch {
	case errors.As(err, &ee):
		return "That email address cannot be used: " + ee.Reason + "."
	case errors.Is(err, ErrInvalidEmail):
		return "Please enter your email address."
	case errors.Is(err, ErrBadRequest):
		return "The request could not be understood."
	case errors.Is(err, ErrInvalidSignature):
		return "The webhook was refused."
	case errors.Is(err, ErrNotSignedIn):
		return "Please sign in first."
	case errors.Is(err, ErrNoCustomer):
		return "There is no billing account for you yet: subscribe first."
	case errors.Is(err, ErrCheckoutInvalid):
		return "This checkout link has already been used or is not valid. Sign in with your email address to continue."
	case errors.Is(err, ErrStripe):
		return "The payment provider could not be reached. Nothing was charged; please try again in a moment."
	default:
		return "The service is temporarily unavailable. Please try again in a moment."
	}
}

func errorCode(err error) string {
	switch {
	case errors.Is(err, emailaddr.ErrInvalid), errors.Is(err, ErrInvalidEmail):
		return "invalid_email"
	case errors.Is(err, ErrBadRequest):
		return "bad_request"
	case errors.Is(err, ErrInvalidSignature):
		return "invalid_webhook"
	case errors.Is(err, ErrNotSignedIn):
		return "not_signed_in"
	case errors.Is(err, ErrNoCustomer):
		return "no_billing_account"
	case errors.Is(err, ErrCheckoutInvalid):
		return "checkout_invalid"
	case errors.Is(err, ErrStripe):
		return "payment_provider_error"
	default:
		return "unavailable"
	}
}
